package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerify measures a token's verification with each kind of key,
// on a cache hit (a hot caller) and on a miss (every request verified): what
// the cache buys.
func BenchmarkVerify(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	secret := []byte("bench-secret-0123456789-0123456789-ab")
	for _, c := range []struct {
		name   string
		method jwt.SigningMethod
		sign   any
		cfg    Config
	}{
		{"HS256", jwt.SigningMethodHS256, secret, Config{HMACSecret: secret}},
		{"RS256", jwt.SigningMethodRS256, rsaKey, Config{PublicKeys: []PublicKey{{Key: crypto.PublicKey(&rsaKey.PublicKey)}}}},
		{"ES256", jwt.SigningMethodES256, ecKey, Config{PublicKeys: []PublicKey{{Key: crypto.PublicKey(&ecKey.PublicKey)}}}},
	} {
		c.cfg.Issuer, c.cfg.Audience = "https://issuer.test/", "https://api.test/"
		token, err := jwt.NewWithClaims(c.method, jwt.MapClaims{
			"sub": "alice", "iss": c.cfg.Issuer, "aud": c.cfg.Audience, "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(c.sign)
		if err != nil {
			b.Fatal(err)
		}
		for _, cached := range []bool{true, false} {
			name := c.name + "/miss"
			if cached {
				name = c.name + "/hit"
			}
			b.Run(name, func(b *testing.B) {
				v, err := New(c.cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if !cached {
						v.cache = cache{}
					}
					if _, err := v.Verify(token); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
