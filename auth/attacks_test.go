package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
)

// The issuer and audience every verifier under attack expects.
const (
	attackIssuer   = "https://issuer.test/"
	attackAudience = "https://api.test/"
)

// attackSecret is the HMAC secret of the verifiers that take one.
var attackSecret = []byte("attack-test-secret-0123456789-abcdef")

// attackReasons is the fixed phrase list a refused token is described by.
var attackReasons = []string{
	auth.ReasonMalformed, auth.ReasonTooLarge, auth.ReasonAlgorithm, auth.ReasonUnknownKey,
	auth.ReasonSignature, auth.ReasonExpired, auth.ReasonNoExpiry, auth.ReasonNotYetValid,
	auth.ReasonIssuer, auth.ReasonAudience, auth.ReasonBadAccount, auth.ReasonInvalidToken,
}

// attackKeys holds the issuer's keys, an attacker's keys, and the forms of
// the issuer's RSA public key that the key confusion attack uses as an HMAC
// secret.
type attackKeys struct {
	rsa     *rsa.PrivateKey   // configured with kid r1
	rsa2    *rsa.PrivateKey   // configured without a kid
	ec      *ecdsa.PrivateKey // P-256, configured with kid e1
	ed      ed25519.PrivateKey
	evilRSA *rsa.PrivateKey
	evilEC  *ecdsa.PrivateKey
	rsaPEM  []byte // the PEM file the verifier's key was read from
	rsaDER  []byte // the same key as PKIX DER
	files   map[string]string
}

// attackNewKeys generates the keys and writes the issuer's public keys to PEM
// files in a temporary directory.
func attackNewKeys(t *testing.T) *attackKeys {
	t.Helper()
	k := &attackKeys{files: map[string]string{}}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.rsa2, &k.evilRSA} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []**ecdsa.PrivateKey{&k.ec, &k.evilEC} {
		if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, pub := range map[string]crypto.PublicKey{
		"rsa": &k.rsa.PublicKey, "rsa2": &k.rsa2.PublicKey, "ec": &k.ec.PublicKey, "ed": k.ed.Public(),
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
		k.files[name] = path
		if name == "rsa" {
			k.rsaPEM, k.rsaDER = data, der
		}
	}
	return k
}

// attackLoad reads the public key in the named PEM file, as the jwt block's
// public_key does.
func attackLoad(t *testing.T, k *attackKeys, name, kid string) auth.PublicKey {
	t.Helper()
	key, err := auth.LoadPublicKey(k.files[name])
	if err != nil {
		t.Fatal(err)
	}
	return auth.PublicKey{KID: kid, Key: key}
}

// attackVerifier returns a verifier for cfg, with the issuer and audience
// under attack.
func attackVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	cfg.Issuer, cfg.Audience = attackIssuer, attackAudience
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// attackClaims returns valid claims for alice, edited by edit.
func attackClaims(edit ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"sub": "alice",
		"iss": attackIssuer,
		"aud": attackAudience,
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for _, e := range edit {
		e(c)
	}
	return c
}

// attackSet returns an edit that sets a claim or header field.
func attackSet(name string, value any) func(map[string]any) {
	return func(m map[string]any) { m[name] = value }
}

// attackDrop returns an edit that removes a claim or header field.
func attackDrop(name string) func(map[string]any) {
	return func(m map[string]any) { delete(m, name) }
}

// attackSegment encodes a JSON value as a base64url segment without padding.
// A string is taken as JSON text as it is.
func attackSegment(t *testing.T, v any) string {
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

// attackSignature signs the text of a token's first two segments with m and
// key, and fails the test if it cannot.
func attackSignature(t *testing.T, m jwt.SigningMethod, key any, input string) []byte {
	t.Helper()
	sig, err := m.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// attackHeader returns the header of a token signed with m, with typ JWT and
// kid when kid is set, edited by edit.
func attackHeader(m jwt.SigningMethod, kid string, edit ...func(map[string]any)) map[string]any {
	h := map[string]any{"alg": m.Alg(), "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	for _, e := range edit {
		e(h)
	}
	return h
}

// attackSign builds a token by hand from header and claims and signs it with
// m and key. The header's alg is whatever header says.
func attackSign(t *testing.T, m jwt.SigningMethod, key any, header, claims any) string {
	t.Helper()
	input := attackSegment(t, header) + "." + attackSegment(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(attackSignature(t, m, key, input))
}

// attackUnsigned builds a token whose header names alg, with valid claims,
// followed by sig as its signature segment.
func attackUnsigned(t *testing.T, alg, sig string) string {
	t.Helper()
	return attackSegment(t, map[string]any{"alg": alg, "typ": "JWT"}) + "." + attackSegment(t, attackClaims()) + "." + sig
}

// attackStripSignature returns token with an empty signature segment.
func attackStripSignature(token string) string {
	return token[:strings.LastIndexByte(token, '.')+1]
}

// attackSized returns an RS256 token by key with kid, exactly size bytes
// long, padded by a claim. It fails the test when no padding fits.
func attackSized(t *testing.T, key *rsa.PrivateKey, kid string, size int) string {
	t.Helper()
	sigLen := base64.RawURLEncoding.EncodedLen(key.Size())
	for _, extra := range []string{"", "x", "xy", "xyz"} {
		header := attackHeader(jwt.SigningMethodRS256, kid, attackSet("x", extra))
		hlen := len(attackSegment(t, header))
		for n := 0; ; n++ {
			claims := attackClaims(attackSet("pad", strings.Repeat("p", n)))
			l := hlen + 1 + len(attackSegment(t, claims)) + 1 + sigLen
			if l > size {
				break
			}
			if l == size {
				token := attackSign(t, jwt.SigningMethodRS256, key, header, claims)
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

// attackStdSegment returns a JSON object encoded as standard (not URL-safe)
// base64, padded by a field so that the encoding holds both '+' and '/'.
func attackStdSegment(t *testing.T, obj map[string]any) string {
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

// attackPaddedSegment returns a JSON object encoded as base64url with '='
// padding, padded by a field so that the padding is there.
func attackPaddedSegment(t *testing.T, obj map[string]any) string {
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

// attackRS256Over signs input with key and returns the whole token, the
// signature encoded by enc.
func attackRS256Over(t *testing.T, key *rsa.PrivateKey, input string, enc *base64.Encoding) string {
	t.Helper()
	return input + "." + enc.EncodeToString(attackSignature(t, jwt.SigningMethodRS256, key, input))
}

// attackStdSignature returns an RS256 token by key whose signature is
// encoded with the standard alphabet, so that it holds a '+' or a '/'.
func attackStdSignature(t *testing.T, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	for i := range 20 {
		input := attackSegment(t, attackHeader(jwt.SigningMethodRS256, kid)) + "." + attackSegment(t, attackClaims(attackSet("jti", fmt.Sprint(i))))
		sig := base64.RawStdEncoding.EncodeToString(attackSignature(t, jwt.SigningMethodRS256, key, input))
		if strings.ContainsAny(sig, "+/") {
			return input + "." + sig
		}
	}
	t.Fatal("no signature with '+' or '/'")
	return ""
}

// attackRSAJWK returns an RSA public key as a JWK.
func attackRSAJWK(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// attackCert returns a self-signed certificate for key, in DER.
func attackCert(t *testing.T, key *rsa.PrivateKey) []byte {
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

// attackServer is the attacker's web server: it publishes the attacker's
// key as a JWKS and as a certificate, and counts every request it gets.
type attackServer struct {
	*httptest.Server
	hits atomic.Int64
}

// attackNewServer starts the attacker's web server for key.
func attackNewServer(t *testing.T, key *rsa.PrivateKey) *attackServer {
	t.Helper()
	jwks, err := json.Marshal(map[string]any{"keys": []any{attackRSAJWK(&key.PublicKey, "evil")}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: attackCert(t, key)})
	s := &attackServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if strings.HasSuffix(r.URL.Path, ".pem") {
			w.Write(certPEM)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(s.Close)
	return s
}

// attackCase is a token that must be refused, and the phrases that may
// describe why; nil allows any phrase of the fixed list.
type attackCase struct {
	name    string
	v       *auth.Verifier
	token   string
	reasons []string
}

// attackOne returns the phrase list holding only reason.
func attackOne(reason string) []string { return []string{reason} }

// TestAttackTokensAreRefused runs every known JWT attack through Verify:
// each must be an *auth.Error whose description is a fixed phrase, the
// right one where the attack has one, and never holds the token.
func TestAttackTokensAreRefused(t *testing.T) {
	k := attackNewKeys(t)
	evil := attackNewServer(t, k.evilRSA)

	// The issuer's static keys, with the families' default algorithms.
	pub := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{
		attackLoad(t, k, "rsa", "r1"), attackLoad(t, k, "rsa2", ""), attackLoad(t, k, "ec", "e1"), attackLoad(t, k, "ed", "ed"),
	}})
	// Only RS256 allowed, although the RSA key could verify PS256.
	rs256 := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}, Algorithms: []string{"RS256"}})
	// An HMAC secret next to an RSA key: HS256 is allowed, with the secret.
	mixed := attackVerifier(t, auth.Config{HMACSecret: attackSecret, PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}})
	hmacOnly := attackVerifier(t, auth.Config{HMACSecret: attackSecret})

	rs := func(kid string, claims map[string]any, header ...func(map[string]any)) string {
		return attackSign(t, jwt.SigningMethodRS256, k.rsa, attackHeader(jwt.SigningMethodRS256, kid, header...), claims)
	}
	evilRS := func(kid string, header ...func(map[string]any)) string {
		return attackSign(t, jwt.SigningMethodRS256, k.evilRSA, attackHeader(jwt.SigningMethodRS256, kid, header...), attackClaims())
	}
	hs := func(key []byte, kid string) string {
		return attackSign(t, jwt.SigningMethodHS256, key, attackHeader(jwt.SigningMethodHS256, kid), attackClaims())
	}
	claim := func(edit ...func(map[string]any)) string { return rs("r1", attackClaims(edit...)) }
	now := time.Now()

	var cases []attackCase
	add := func(name string, v *auth.Verifier, token string, reasons []string) {
		cases = append(cases, attackCase{name, v, token, reasons})
	}

	// alg none, in every spelling, with an empty, a junk and a base64 signature.
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		for _, sig := range []string{"", "junk", base64.RawURLEncoding.EncodeToString([]byte("signature"))} {
			for name, v := range map[string]*auth.Verifier{"public keys": pub, "hmac": hmacOnly} {
				add(fmt.Sprintf("alg %s, signature %q, %s", alg, sig, name), v, attackUnsigned(t, alg, sig), attackOne(auth.ReasonAlgorithm))
			}
		}
	}
	add("no alg", pub, attackSign(t, jwt.SigningMethodRS256, k.rsa, attackHeader(jwt.SigningMethodRS256, "r1", attackDrop("alg")), attackClaims()), attackOne(auth.ReasonAlgorithm))

	// HS256 signed with the RSA public key as the secret.
	for _, v := range []struct {
		name string
		v    *auth.Verifier
		want string
	}{{"public keys", pub, auth.ReasonAlgorithm}, {"RS256 only", rs256, auth.ReasonAlgorithm}, {"hmac and RSA", mixed, auth.ReasonSignature}} {
		for form, key := range map[string][]byte{"PEM": k.rsaPEM, "DER": k.rsaDER} {
			add(fmt.Sprintf("HS256 with the public key's %s, %s", form, v.name), v.v, hs(key, "r1"), attackOne(v.want))
			add(fmt.Sprintf("HS256 with the public key's %s, no kid, %s", form, v.name), v.v, hs(key, ""), attackOne(v.want))
		}
	}

	// Empty and mis-encoded signatures.
	add("RS256, empty signature", pub, attackStripSignature(claim()), attackOne(auth.ReasonSignature))
	add("PS256, empty signature", pub, attackStripSignature(attackSign(t, jwt.SigningMethodPS256, k.rsa, attackHeader(jwt.SigningMethodPS256, "r1"), attackClaims())), attackOne(auth.ReasonSignature))
	es := attackSign(t, jwt.SigningMethodES256, k.ec, attackHeader(jwt.SigningMethodES256, "e1"), attackClaims())
	add("ES256, empty signature", pub, attackStripSignature(es), attackOne(auth.ReasonSignature))
	add("EdDSA, empty signature", pub, attackStripSignature(attackSign(t, jwt.SigningMethodEdDSA, k.ed, attackHeader(jwt.SigningMethodEdDSA, "ed"), attackClaims())), attackOne(auth.ReasonSignature))
	add("HS256, empty signature", hmacOnly, attackStripSignature(hs(attackSecret, "")), attackOne(auth.ReasonSignature))
	add("two segments", pub, strings.TrimSuffix(attackStripSignature(claim()), "."), attackOne(auth.ReasonMalformed))
	esInput := es[:strings.LastIndexByte(es, '.')]
	digest := sha256.Sum256([]byte(esInput))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	add("ES256, DER (ASN.1) signature", pub, esInput+"."+base64.RawURLEncoding.EncodeToString(asn1Sig), attackOne(auth.ReasonSignature))

	// An algorithm outside the allow-list, though the key could verify it.
	add("PS256 when only RS256 is allowed", rs256, attackSign(t, jwt.SigningMethodPS256, k.rsa, attackHeader(jwt.SigningMethodPS256, "r1"), attackClaims()), attackOne(auth.ReasonAlgorithm))
	add("PS512 when only RS256 is allowed", rs256, attackSign(t, jwt.SigningMethodPS512, k.rsa, attackHeader(jwt.SigningMethodPS512, "r1"), attackClaims()), attackOne(auth.ReasonAlgorithm))

	// kid injection. Signed with the issuer's own key, so that the kid is
	// the only thing wrong.
	add("kid path-like", pub, rs("../../etc/passwd", attackClaims()), attackOne(auth.ReasonUnknownKey))
	add("kid path-like, attacker's key", pub, evilRS("../../etc/passwd"), attackOne(auth.ReasonUnknownKey))
	add("kid /dev/null, HS256 with an empty key", hmacOnly, hs([]byte{}, "../../../../dev/null"), attackOne(auth.ReasonSignature))
	add("kid SQL-like", pub, rs("' OR 1=1 --", attackClaims()), attackOne(auth.ReasonUnknownKey))
	add("kid 4 KiB long", pub, rs(strings.Repeat("k", 4<<10), attackClaims()), attackOne(auth.ReasonUnknownKey))
	add("kid 10 KB long", pub, rs(strings.Repeat("k", 10_000), attackClaims()), attackOne(auth.ReasonTooLarge))
	add("kid a JSON number", pub, rs("", attackClaims(), attackSet("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid null", pub, rs("", attackClaims(), attackSet("kid", nil)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid a JSON number, attacker's key", pub, evilRS("", attackSet("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey, auth.ReasonSignature})

	// Keys the token brings with it: signed with the attacker's key.
	add("jku to the attacker's JWKS, its kid", pub, evilRS("evil", attackSet("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonUnknownKey))
	add("jku to the attacker's JWKS, no kid", pub, evilRS("", attackSet("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("jku to the attacker's JWKS, the issuer's kid", pub, evilRS("r1", attackSet("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("x5u to the attacker's certificate", pub, evilRS("", attackSet("x5u", evil.URL+"/cert.pem")), attackOne(auth.ReasonSignature))
	add("embedded jwk", pub, evilRS("", attackSet("jwk", attackRSAJWK(&k.evilRSA.PublicKey, ""))), attackOne(auth.ReasonSignature))
	add("embedded jwk, the issuer's kid", pub, evilRS("r1", attackSet("jwk", attackRSAJWK(&k.evilRSA.PublicKey, "r1"))), attackOne(auth.ReasonSignature))
	add("embedded x5c", pub, evilRS("", attackSet("x5c", []string{base64.StdEncoding.EncodeToString(attackCert(t, k.evilRSA))})), attackOne(auth.ReasonSignature))

	// crit names an extension the verifier does not understand (RFC 7515
	// §4.1.11): refused, even signed with the issuer's key.
	add("crit with an unknown name", pub, rs("r1", attackClaims(), attackSet("crit", []string{"urn:attack:unknown"}), attackSet("urn:attack:unknown", true)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("crit b64 false", pub, rs("r1", attackClaims(), attackSet("crit", []string{"b64"}), attackSet("b64", false)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})

	// exp.
	add("exp a string", pub, claim(attackSet("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp negative", pub, claim(attackSet("exp", -1)), attackOne(auth.ReasonExpired))
	add("exp zero", pub, claim(attackSet("exp", 0)), []string{auth.ReasonExpired, auth.ReasonNoExpiry})
	add("exp missing", pub, claim(attackDrop("exp")), attackOne(auth.ReasonNoExpiry))
	add("exp 2^63", pub, claim(attackSet("exp", json.Number("9223372036854775808"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp 2^64", pub, claim(attackSet("exp", json.Number("18446744073709551616"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp fractional, past beyond the leeway", pub, claim(attackSet("exp", float64(now.Add(-time.Hour).Unix())+0.5)), attackOne(auth.ReasonExpired))

	// nbf, aud, iss.
	add("nbf beyond the leeway", pub, claim(attackSet("nbf", now.Add(5*time.Minute).Unix())), attackOne(auth.ReasonNotYetValid))
	add("aud missing", pub, claim(attackDrop("aud")), attackOne(auth.ReasonAudience))
	add("aud wrong", pub, claim(attackSet("aud", "https://evil.test/")), attackOne(auth.ReasonAudience))
	add("aud an empty array", pub, claim(attackSet("aud", []string{})), attackOne(auth.ReasonAudience))
	add("aud an empty string", pub, claim(attackSet("aud", "")), attackOne(auth.ReasonAudience))
	add("aud without its trailing slash", pub, claim(attackSet("aud", "https://api.test")), attackOne(auth.ReasonAudience))
	add("iss without its trailing slash", pub, claim(attackSet("iss", "https://issuer.test")), attackOne(auth.ReasonIssuer))
	add("iss with a second trailing slash", pub, claim(attackSet("iss", "https://issuer.test//")), attackOne(auth.ReasonIssuer))
	add("iss missing", pub, claim(attackDrop("iss")), attackOne(auth.ReasonIssuer))

	// sub, the account id.
	for name, sub := range map[string]any{
		"empty": "", "129 bytes": strings.Repeat("a", 129), "a NUL": "ali\x00ce", "a newline": "alice\n",
		"a tab": "\talice", "DEL": "alice\x7f", "a space": "al ice", "non-ASCII": "alicé", "..": "..", "a number": 42,
	} {
		add("sub "+name, pub, claim(attackSet("sub", sub)), attackOne(auth.ReasonBadAccount))
	}
	add("sub missing", pub, claim(attackDrop("sub")), attackOne(auth.ReasonBadAccount))

	// Base64 that is not base64url without padding, signed over the text as
	// sent, so that only the encoding is wrong.
	hdr := attackHeader(jwt.SigningMethodRS256, "r1")
	payload := attackSegment(t, attackClaims())
	stdHeader := attackStdSegment(t, attackHeader(jwt.SigningMethodRS256, "r1"))
	add("header with '+' and '/'", pub, attackRS256Over(t, k.rsa, stdHeader+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '+' and '/'", pub, attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+attackStdSegment(t, attackClaims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("header with '=' padding", pub, attackRS256Over(t, k.rsa, attackPaddedSegment(t, attackHeader(jwt.SigningMethodRS256, "r1"))+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '=' padding", pub, attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+attackPaddedSegment(t, attackClaims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '=' padding", pub, attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+payload, base64.URLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '+' or '/'", pub, attackStdSignature(t, k.rsa, "r1"), attackOne(auth.ReasonMalformed))
	add("JWE-shaped, five segments", pub, claim()+".e30.e30", attackOne(auth.ReasonMalformed))

	// Size.
	add("8 KiB + 1 byte", pub, attackSized(t, k.rsa, "r1", auth.MaxTokenSize+1), attackOne(auth.ReasonTooLarge))

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			account, err := c.v.Verify(c.token)
			var ae *auth.Error
			if !errors.As(err, &ae) {
				t.Fatalf("Verify: account %q, error %v; want an *auth.Error", account, err)
			}
			if account != "" {
				t.Errorf("refused with an account %q", account)
			}
			if !slices.Contains(attackReasons, ae.Description) {
				t.Errorf("description %q is not a fixed phrase", ae.Description)
			}
			if c.reasons != nil && !slices.Contains(c.reasons, ae.Description) {
				t.Errorf("description %q, want one of %q", ae.Description, c.reasons)
			}
			if strings.Contains(err.Error(), c.token) {
				t.Error("the error holds the token")
			}
			// Refused again: a refusal is never cached as a success.
			if _, err := c.v.Verify(c.token); !errors.As(err, &ae) {
				t.Errorf("second Verify: %v", err)
			}
		})
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the verifier fetched the attacker's URLs %d times", n)
	}
}

// TestAttackLookalikesAreAccepted verifies the valid tokens that sit next
// to the attacks: each key's family, a fractional exp in the future (RFC
// 7519 §2 allows a non-integer NumericDate), a token of exactly 8 KiB, nbf
// within the leeway, an account id of 128 bytes, and aud as an array that
// holds the audience. They show the verifiers refuse the attacks for the
// attack, not for their set-up.
func TestAttackLookalikesAreAccepted(t *testing.T) {
	k := attackNewKeys(t)
	pub := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{
		attackLoad(t, k, "rsa", "r1"), attackLoad(t, k, "rsa2", ""), attackLoad(t, k, "ec", "e1"), attackLoad(t, k, "ed", "ed"),
	}})
	rs256 := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}, Algorithms: []string{"RS256"}})
	mixed := attackVerifier(t, auth.Config{HMACSecret: attackSecret, PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}})
	now := time.Now()
	long := strings.Repeat("a", 128)
	claim := func(edit ...func(map[string]any)) string {
		return attackSign(t, jwt.SigningMethodRS256, k.rsa, attackHeader(jwt.SigningMethodRS256, "r1"), attackClaims(edit...))
	}

	for _, c := range []struct {
		name    string
		v       *auth.Verifier
		token   string
		account string
	}{
		{"RS256 with kid", pub, claim(), "alice"},
		{"RS256 without kid", pub, attackSign(t, jwt.SigningMethodRS256, k.rsa2, attackHeader(jwt.SigningMethodRS256, ""), attackClaims()), "alice"},
		{"RS256, RS256 only", rs256, claim(), "alice"},
		{"PS256", pub, attackSign(t, jwt.SigningMethodPS256, k.rsa, attackHeader(jwt.SigningMethodPS256, "r1"), attackClaims()), "alice"},
		{"ES256", pub, attackSign(t, jwt.SigningMethodES256, k.ec, attackHeader(jwt.SigningMethodES256, "e1"), attackClaims()), "alice"},
		{"EdDSA", pub, attackSign(t, jwt.SigningMethodEdDSA, k.ed, attackHeader(jwt.SigningMethodEdDSA, "ed"), attackClaims()), "alice"},
		{"HS256 next to an RSA key", mixed, attackSign(t, jwt.SigningMethodHS256, attackSecret, attackHeader(jwt.SigningMethodHS256, ""), attackClaims()), "alice"},
		{"exp fractional, in the future", pub, claim(attackSet("exp", float64(now.Add(time.Hour).Unix())+0.5)), "alice"},
		{"exactly 8 KiB", pub, attackSized(t, k.rsa, "r1", auth.MaxTokenSize), "alice"},
		{"nbf within the leeway", pub, claim(attackSet("nbf", now.Add(10*time.Second).Unix())), "alice"},
		{"sub of 128 bytes", pub, claim(attackSet("sub", long)), long},
		{"aud an array holding the audience", pub, claim(attackSet("aud", []string{"https://other.test/", attackAudience})), "alice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if account, err := c.v.Verify(c.token); err != nil || account != c.account {
				t.Errorf("Verify: %q, %v; want %q", account, err, c.account)
			}
		})
	}
}
