package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/meter"
)

// BenchmarkHandler measures a paid request through the handler on the
// memory store, with a token the cache has seen: the handler's own cost.
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
	// Baseline is the same request without the handler, to subtract.
	for _, c := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request) error
	}{
		{"Baseline", next.ServeHTTP},
		{"Paid", func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, next) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", "/v1/x", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				w := httptest.NewRecorder()
				req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
				if err := c.serve(w, req); err != nil || w.Code != http.StatusOK {
					b.Fatalf("status %d, %v", w.Code, err)
				}
			}
		})
	}
}
