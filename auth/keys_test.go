package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
)

// writePEM writes a public key as a PEM file and returns its path.
func writePEM(t *testing.T, key crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "iss": "https://i/", "aud": "https://a/", "exp": time.Now().Add(time.Hour).Unix()}
}

func expectReason(t *testing.T, what string, err error, reason string) {
	t.Helper()
	var ae *auth.Error
	if !errors.As(err, &ae) || ae.Description != reason {
		t.Errorf("%s: error %v, want %q", what, err, reason)
	}
}

// TestPublicKeys verifies RSA, ECDSA and Ed25519 tokens against keys read
// from PEM files, by kid or by family, and refuses the key confusions.
func TestPublicKeys(t *testing.T) {
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	var keys []auth.PublicKey
	for _, k := range []struct {
		kid string
		pub crypto.PublicKey
	}{{"r1", &rsa1.PublicKey}, {"r2", &rsa2.PublicKey}, {"", &ec.PublicKey}, {"ed", edPub}} {
		pub, err := auth.LoadPublicKey(writePEM(t, k.pub))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, auth.PublicKey{KID: k.kid, Key: pub})
	}
	v, err := auth.New(auth.Config{PublicKeys: keys, Issuer: "https://i/", Audience: "https://a/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		token string
	}{
		{"RS256 with kid", sign(t, jwt.SigningMethodRS256, rsa1, "r1", claims())},
		{"RS256 without kid, the second key", sign(t, jwt.SigningMethodRS256, rsa2, "", claims())},
		{"PS256", sign(t, jwt.SigningMethodPS256, rsa2, "r2", claims())},
		{"ES256 without kid", sign(t, jwt.SigningMethodES256, ec, "", claims())},
		{"EdDSA with kid", sign(t, jwt.SigningMethodEdDSA, edPriv, "ed", claims())},
	} {
		if account, err := v.Verify(c.token); err != nil || account != "alice" {
			t.Errorf("%s: %q, %v", c.name, account, err)
		}
	}
	_, err = v.Verify(sign(t, jwt.SigningMethodRS256, rsa1, "nobody", claims()))
	expectReason(t, "unknown kid", err, auth.ReasonUnknownKey)
	_, err = v.Verify(sign(t, jwt.SigningMethodRS256, rsa1, "r2", claims()))
	expectReason(t, "kid of another key", err, auth.ReasonSignature)

	// HS256 signed with the RSA public key's PEM: the confusion attack.
	der, _ := x509.MarshalPKIXPublicKey(&rsa1.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	_, err = v.Verify(sign(t, jwt.SigningMethodHS256, pemBytes, "r1", claims()))
	expectReason(t, "HS256 signed with the public key", err, auth.ReasonAlgorithm)

	// The allow-list holds even for keys that could verify.
	only, err := auth.New(auth.Config{PublicKeys: keys, Algorithms: []string{"RS256"}, Issuer: "https://i/", Audience: "https://a/"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = only.Verify(sign(t, jwt.SigningMethodES256, ec, "", claims()))
	expectReason(t, "ES256 outside the allow-list", err, auth.ReasonAlgorithm)
}

func TestLoadPublicKeyErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, path := range map[string]string{
		"missing file":  filepath.Join(dir, "nope.pem"),
		"not PEM":       write("text.pem", []byte("hello")),
		"private key":   write("priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})),
		"garbage block": write("bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})),
	} {
		if _, err := auth.LoadPublicKey(path); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestNewErrors(t *testing.T) {
	secret := []byte("new-errors-secret-0123456789-abcdef")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, cfg := range map[string]auth.Config{
		"no key":                   {},
		"secret of 31 bytes":       {HMACSecret: secret[:31]},
		"public key without iss":   {PublicKeys: []auth.PublicKey{{Key: &rsaKey.PublicKey}}, Audience: "a"},
		"unknown algorithm":        {HMACSecret: secret, Algorithms: []string{"XX256"}},
		"alg none":                 {HMACSecret: secret, Algorithms: []string{"none"}},
		"RS256 without an RSA key": {HMACSecret: secret, Algorithms: []string{"RS256"}},
		"HS256 without a secret":   {PublicKeys: []auth.PublicKey{{Key: &rsaKey.PublicKey}}, Issuer: "i", Audience: "a", Algorithms: []string{"HS256"}},
	} {
		if _, err := auth.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := auth.New(auth.Config{HMACSecret: secret[:32]}); err != nil {
		t.Errorf("a 32-byte secret: %v", err)
	}
}
