package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"go.uber.org/zap"
)

// TestJWKSWaits counts the requests that wait on the key set: a known kid
// never does, and a flood of unknown kids costs one fetch at most.
func TestJWKSWaits(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgES256}})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwk.Marshal()}})
	}))
	defer srv.Close()
	c := newJWKSClient(srv.URL, time.Hour, time.Second, zap.NewNop())
	defer c.Destruct()

	// The first fetch may take longer than a request waits; poll for it.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := c.key("k1", "ES256", DefaultJWKSWait); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key set was never fetched")
		}
	}
	c.waits.Store(0)
	before := fetches.Load()
	for range 1000 {
		if _, err := c.key("k1", "ES256", DefaultJWKSWait); err != nil {
			t.Fatal(err)
		}
	}
	if w := c.waits.Load(); w != 0 {
		t.Errorf("a known kid waited %d times, want never", w)
	}
	for i := range 1000 {
		if _, err := c.key(fmt.Sprint("random-", i), "ES256", DefaultJWKSWait); err == nil {
			t.Fatal("an unknown kid found a key")
		}
	}
	if w := c.waits.Load(); w != 1000 {
		t.Errorf("%d unknown kids waited, want all 1000", w)
	}
	if n := fetches.Load() - before; n > 1 {
		t.Errorf("%d fetches for 1000 unknown kids, want at most 1", n)
	}
}
