// Package jwtattack crafts the hostile JWTs that Tollgate's tests throw at
// its verifier and gateway: tokens with forged headers, odd encodings and
// signatures made outside golang-jwt's rules.
package jwtattack

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The issuer and audience the crafted claims carry.
const (
	Issuer   = "https://issuer.test/"
	Audience = "https://api.test/"
)

// Claims returns valid claims for alice, edited by edit.
func Claims(edit ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"sub": "alice",
		"iss": Issuer,
		"aud": Audience,
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for _, e := range edit {
		e(c)
	}
	return c
}

// Set returns an edit that sets a claim or header field.
func Set(name string, value any) func(map[string]any) {
	return func(m map[string]any) { m[name] = value }
}

// Drop returns an edit that removes a claim or header field.
func Drop(name string) func(map[string]any) {
	return func(m map[string]any) { delete(m, name) }
}

// Segment encodes a JSON value as a base64url segment without padding.
// A string is taken as JSON text as it is.
func Segment(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// Signature signs the text of a token's first two segments with m and
// key, and fails the test if it cannot.
func Signature(t testing.TB, m jwt.SigningMethod, key any, input string) []byte {
	t.Helper()
	sig, err := m.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Header returns the header of a token signed with m, with typ JWT and
// kid when kid is set, edited by edit.
func Header(m jwt.SigningMethod, kid string, edit ...func(map[string]any)) map[string]any {
	h := map[string]any{"alg": m.Alg(), "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	for _, e := range edit {
		e(h)
	}
	return h
}

// Sign builds a token by hand from header and claims and signs it with
// m and key. The header's alg is whatever header says.
func Sign(t testing.TB, m jwt.SigningMethod, key any, header, claims any) string {
	t.Helper()
	input := Segment(t, header) + "." + Segment(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(Signature(t, m, key, input))
}

// Unsigned builds a token whose header names alg, with valid claims,
// followed by sig as its signature segment.
func Unsigned(t testing.TB, alg, sig string) string {
	t.Helper()
	return Segment(t, map[string]any{"alg": alg, "typ": "JWT"}) + "." + Segment(t, Claims()) + "." + sig
}

// StripSignature returns token with an empty signature segment.
func StripSignature(token string) string {
	return token[:strings.LastIndexByte(token, '.')+1]
}

// Sized returns an RS256 token by key with kid, exactly size bytes
// long, padded by a claim. It fails the test when no padding fits.
func Sized(t testing.TB, key *rsa.PrivateKey, kid string, size int) string {
	t.Helper()
	sigLen := base64.RawURLEncoding.EncodedLen(key.Size())
	for _, extra := range []string{"", "x", "xy", "xyz"} {
		header := Header(jwt.SigningMethodRS256, kid, Set("x", extra))
		hlen := len(Segment(t, header))
		for n := 0; ; n++ {
			claims := Claims(Set("pad", strings.Repeat("p", n)))
			l := hlen + 1 + len(Segment(t, claims)) + 1 + sigLen
			if l > size {
				break
			}
			if l == size {
				token := Sign(t, jwt.SigningMethodRS256, key, header, claims)
				if len(token) != size {
					t.Fatalf("sized token of %d bytes, want %d", len(token), size)
				}
				return token
			}
		}
	}
	t.Fatalf("no token of exactly %d bytes", size)
	return ""
}

// StdSegment returns a JSON object encoded as standard (not URL-safe)
// base64, padded by a field so that the encoding holds both '+' and '/'.
func StdSegment(t testing.TB, obj map[string]any) string {
	t.Helper()
	for n := range 3 {
		// '~' and '?' end in the bits of '+' and '/' (json.Marshal
		// escapes '>'), so one of three of each lands on a group's end.
		obj["x"] = strings.Repeat("a", n) + "~~~???"
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if s := base64.RawStdEncoding.EncodeToString(data); strings.Contains(s, "+") && strings.Contains(s, "/") {
			return s
		}
	}
	t.Fatal("no standard base64 segment with '+' and '/'")
	return ""
}

// PaddedSegment returns a JSON object encoded as base64url with '='
// padding, padded by a field so that the padding is there.
func PaddedSegment(t testing.TB, obj map[string]any) string {
	t.Helper()
	for n := range 3 {
		obj["x"] = strings.Repeat("a", n)
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if s := base64.URLEncoding.EncodeToString(data); strings.HasSuffix(s, "=") {
			return s
		}
	}
	t.Fatal("no padded base64url segment")
	return ""
}

// RS256Over signs input with key and returns the whole token, the
// signature encoded by enc.
func RS256Over(t testing.TB, key *rsa.PrivateKey, input string, enc *base64.Encoding) string {
	t.Helper()
	return input + "." + enc.EncodeToString(Signature(t, jwt.SigningMethodRS256, key, input))
}

// StdSignature returns an RS256 token by key whose signature is
// encoded with the standard alphabet, so that it holds a '+' or a '/'.
func StdSignature(t testing.TB, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	for i := range 20 {
		input := Segment(t, Header(jwt.SigningMethodRS256, kid)) + "." + Segment(t, Claims(Set("jti", fmt.Sprint(i))))
		sig := base64.RawStdEncoding.EncodeToString(Signature(t, jwt.SigningMethodRS256, key, input))
		if strings.ContainsAny(sig, "+/") {
			return input + "." + sig
		}
	}
	t.Fatal("no signature with '+' or '/'")
	return ""
}

// RSAJWK returns an RSA public key as a JWK.
func RSAJWK(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// Cert returns a self-signed certificate for key, in DER.
func Cert(t testing.TB, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Keys holds the issuer's keys, an attacker's keys, and the forms of
// the issuer's RSA public key that the key confusion attack uses as an HMAC
// secret.
type Keys struct {
	RSA     *rsa.PrivateKey   // configured with kid r1
	RSA2    *rsa.PrivateKey   // configured without a kid
	EC      *ecdsa.PrivateKey // P-256, configured with kid e1
	Ed      ed25519.PrivateKey
	EvilRSA *rsa.PrivateKey
	EvilEC  *ecdsa.PrivateKey
	RSAPEM  []byte // the PEM file the verifier's key was read from
	RSADER  []byte // the same key as PKIX DER
	Files   map[string]string
}

// NewKeys generates the keys and writes the issuer's public keys to PEM
// files in a temporary directory.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	k := &Keys{Files: map[string]string{}}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.RSA, &k.RSA2, &k.EvilRSA} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []**ecdsa.PrivateKey{&k.EC, &k.EvilEC} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if _, k.Ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, pub := range map[string]crypto.PublicKey{
		"rsa": &k.RSA.PublicKey, "rsa2": &k.RSA2.PublicKey, "ec": &k.EC.PublicKey, "ed": k.Ed.Public(),
	} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		path := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		k.Files[name] = path
		if name == "rsa" {
			k.RSAPEM, k.RSADER = data, der
		}
	}
	return k
}
