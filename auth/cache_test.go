package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestCacheHonoursExpiry verifies a token, serves it from the cache, and
// refuses it once its exp and the leeway have passed, cached or not.
func TestCacheHonoursExpiry(t *testing.T) {
	secret := []byte("cache-test-secret-0123456789-abcdef")
	v, err := New(Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now }
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": now.Add(10 * time.Second).Unix()}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if account, err := v.Verify(token); err != nil || account != "alice" {
		t.Fatalf("Verify: %q, %v", account, err)
	}
	if _, _, _, ok := v.cache.get(token, now); !ok {
		t.Fatal("a verified token was not cached")
	}
	now = now.Add(35 * time.Second) // past exp, within the leeway of 30s
	if account, err := v.Verify(token); err != nil || account != "alice" {
		t.Fatalf("Verify within the leeway: %q, %v", account, err)
	}
	now = now.Add(6 * time.Second) // past exp and the leeway
	var ae *Error
	if _, err := v.Verify(token); !errors.As(err, &ae) || ae.Description != ReasonExpired {
		t.Fatalf("Verify past exp and leeway: %v, want %q", err, ReasonExpired)
	}
}

// TestCacheIsBounded fills the cache past its size: it never holds more.
func TestCacheIsBounded(t *testing.T) {
	var c cache
	exp := time.Now().Add(time.Hour)
	for i := range cacheEntries + 100 {
		c.put(string(rune(i))+"-token", "a", "", nil, exp)
	}
	if n := len(c.entries); n != cacheEntries {
		t.Errorf("%d entries, want %d", n, cacheEntries)
	}
	c.put(string(make([]byte, cacheTokenMax+1)), "a", "", nil, exp)
	if _, _, _, ok := c.get(string(make([]byte, cacheTokenMax+1)), time.Now()); ok {
		t.Error("a token over the size limit was cached")
	}
}

// TestCacheRefusesWhatItNeverVerified shows a refused token is not cached.
func TestCacheRefusesWhatItNeverVerified(t *testing.T) {
	secret := []byte("cache-test-secret-0123456789-abcdef")
	v, err := New(Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a b", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	for range 2 {
		if _, err := v.Verify(token); err == nil {
			t.Fatal("a bad account id was accepted")
		}
	}
	if len(v.cache.entries) != 0 {
		t.Error("a refused token was cached")
	}
}
