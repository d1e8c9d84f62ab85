package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
)

// BenchmarkHandler measures a paid request through the handler on the
// memory store, with a token the cache has seen: the handler's own cost,
// with a charge of its own and paid from a lease.
func BenchmarkHandler(b *testing.B) {
	secret := []byte("bench-handler-secret-0123456789-abc")
	v, err := auth.New(auth.Config{HMACSecret: secret})
	if err != nil {
		b.Fatal(err)
	}
	store := meter.NewMemory(meter.Config{})
	if _, err := store.Credit(context.Background(), meter.Transfer{Account: "alice", ID: "f", Amount: meter.MaxAmount}); err != nil {
		b.Fatal(err)
	}
	h := &Handler{
		Prices:   []Price{{Amount: 1}},
		app:      &App{store: store, verifier: v, OnStoreError: OnStoreErrorDeny},
		refundOn: refundSet{class5: true},
	}
	h.logger = caddy.Log()
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	// Leased pays from a lease on the same store.
	leasing := &Handler{
		Prices:   h.Prices,
		app:      &App{store: store, verifier: v, OnStoreError: OnStoreErrorDeny},
		refundOn: h.refundOn,
		logger:   h.logger,
	}
	leasing.app.leases = lease.New(store, lease.Config{MinBalance: lease.DefaultMinBalance, TTL: DefaultHoldExpiry})
	b.Cleanup(func() { _ = leasing.app.leases.Close(context.Background()) })
	request := func(serve func(w http.ResponseWriter, r *http.Request) error) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/v1/x", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if err := serve(w, req); err != nil || w.Code != http.StatusOK {
			b.Fatalf("status %d, %v", w.Code, err)
		}
		return w
	}
	leased := func(w http.ResponseWriter, r *http.Request) error { return leasing.ServeHTTP(w, r, next) }
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(request(leased).Header().Get("Tollgate-Op"), "-l"); {
		if time.Now().After(deadline) {
			b.Fatal("no request paid from a lease within 5s")
		}
	}
	// Baseline is the same request without the handler, to subtract.
	for _, c := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request) error
	}{
		{"Baseline", next.ServeHTTP},
		{"Paid", func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, next) }},
		{"Leased", leased},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				request(c.serve)
			}
		})
	}
}
