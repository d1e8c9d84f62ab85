package auth_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/internal/jwtattack"
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

// attackLoad reads the public key in the named PEM file, as the jwt block's
// public_key does.
func attackLoad(t *testing.T, k *jwtattack.Keys, name, kid string) auth.PublicKey {
	t.Helper()
	key, err := auth.LoadPublicKey(k.Files[name])
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

// attackServer is the attacker's web server: it publishes the attacker's
// key as a JWKS and as a certificate, and counts every request it gets.
type attackServer struct {
	*httptest.Server
	hits atomic.Int64
}

// attackNewServer starts the attacker's web server for key.
func attackNewServer(t *testing.T, key *rsa.PrivateKey) *attackServer {
	t.Helper()
	jwks, err := json.Marshal(map[string]any{"keys": []any{jwtattack.RSAJWK(&key.PublicKey, "evil")}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: jwtattack.Cert(t, key)})
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
	k := jwtattack.NewKeys(t)
	evil := attackNewServer(t, k.EvilRSA)

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
		return jwtattack.Sign(t, jwt.SigningMethodRS256, k.RSA, jwtattack.Header(jwt.SigningMethodRS256, kid, header...), claims)
	}
	evilRS := func(kid string, header ...func(map[string]any)) string {
		return jwtattack.Sign(t, jwt.SigningMethodRS256, k.EvilRSA, jwtattack.Header(jwt.SigningMethodRS256, kid, header...), jwtattack.Claims())
	}
	hs := func(key []byte, kid string) string {
		return jwtattack.Sign(t, jwt.SigningMethodHS256, key, jwtattack.Header(jwt.SigningMethodHS256, kid), jwtattack.Claims())
	}
	claim := func(edit ...func(map[string]any)) string { return rs("r1", jwtattack.Claims(edit...)) }
	now := time.Now()

	var cases []attackCase
	add := func(name string, v *auth.Verifier, token string, reasons []string) {
		cases = append(cases, attackCase{name, v, token, reasons})
	}

	// alg none, in every spelling, with an empty, a junk and a base64 signature.
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		for _, sig := range []string{"", "junk", base64.RawURLEncoding.EncodeToString([]byte("signature"))} {
			for name, v := range map[string]*auth.Verifier{"public keys": pub, "hmac": hmacOnly} {
				add(fmt.Sprintf("alg %s, signature %q, %s", alg, sig, name), v, jwtattack.Unsigned(t, alg, sig), attackOne(auth.ReasonAlgorithm))
			}
		}
	}
	add("no alg", pub, jwtattack.Sign(t, jwt.SigningMethodRS256, k.RSA, jwtattack.Header(jwt.SigningMethodRS256, "r1", jwtattack.Drop("alg")), jwtattack.Claims()), attackOne(auth.ReasonAlgorithm))

	// HS256 signed with the RSA public key as the secret.
	for _, v := range []struct {
		name string
		v    *auth.Verifier
		want string
	}{{"public keys", pub, auth.ReasonAlgorithm}, {"RS256 only", rs256, auth.ReasonAlgorithm}, {"hmac and RSA", mixed, auth.ReasonSignature}} {
		for form, key := range map[string][]byte{"PEM": k.RSAPEM, "DER": k.RSADER} {
			add(fmt.Sprintf("HS256 with the public key's %s, %s", form, v.name), v.v, hs(key, "r1"), attackOne(v.want))
			add(fmt.Sprintf("HS256 with the public key's %s, no kid, %s", form, v.name), v.v, hs(key, ""), attackOne(v.want))
		}
	}

	// Empty and mis-encoded signatures.
	add("RS256, empty signature", pub, jwtattack.StripSignature(claim()), attackOne(auth.ReasonSignature))
	add("PS256, empty signature", pub, jwtattack.StripSignature(jwtattack.Sign(t, jwt.SigningMethodPS256, k.RSA, jwtattack.Header(jwt.SigningMethodPS256, "r1"), jwtattack.Claims())), attackOne(auth.ReasonSignature))
	es := jwtattack.Sign(t, jwt.SigningMethodES256, k.EC, jwtattack.Header(jwt.SigningMethodES256, "e1"), jwtattack.Claims())
	add("ES256, empty signature", pub, jwtattack.StripSignature(es), attackOne(auth.ReasonSignature))
	add("EdDSA, empty signature", pub, jwtattack.StripSignature(jwtattack.Sign(t, jwt.SigningMethodEdDSA, k.Ed, jwtattack.Header(jwt.SigningMethodEdDSA, "ed"), jwtattack.Claims())), attackOne(auth.ReasonSignature))
	add("HS256, empty signature", hmacOnly, jwtattack.StripSignature(hs(attackSecret, "")), attackOne(auth.ReasonSignature))
	add("two segments", pub, strings.TrimSuffix(jwtattack.StripSignature(claim()), "."), attackOne(auth.ReasonMalformed))
	esInput := es[:strings.LastIndexByte(es, '.')]
	digest := sha256.Sum256([]byte(esInput))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, k.EC, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	add("ES256, DER (ASN.1) signature", pub, esInput+"."+base64.RawURLEncoding.EncodeToString(asn1Sig), attackOne(auth.ReasonSignature))

	// An algorithm outside the allow-list, though the key could verify it.
	add("PS256 when only RS256 is allowed", rs256, jwtattack.Sign(t, jwt.SigningMethodPS256, k.RSA, jwtattack.Header(jwt.SigningMethodPS256, "r1"), jwtattack.Claims()), attackOne(auth.ReasonAlgorithm))
	add("PS512 when only RS256 is allowed", rs256, jwtattack.Sign(t, jwt.SigningMethodPS512, k.RSA, jwtattack.Header(jwt.SigningMethodPS512, "r1"), jwtattack.Claims()), attackOne(auth.ReasonAlgorithm))

	// kid injection. Signed with the issuer's own key, so that the kid is
	// the only thing wrong.
	add("kid path-like", pub, rs("../../etc/passwd", jwtattack.Claims()), attackOne(auth.ReasonUnknownKey))
	add("kid path-like, attacker's key", pub, evilRS("../../etc/passwd"), attackOne(auth.ReasonUnknownKey))
	add("kid /dev/null, HS256 with an empty key", hmacOnly, hs([]byte{}, "../../../../dev/null"), attackOne(auth.ReasonSignature))
	add("kid SQL-like", pub, rs("' OR 1=1 --", jwtattack.Claims()), attackOne(auth.ReasonUnknownKey))
	add("kid 4 KiB long", pub, rs(strings.Repeat("k", 4<<10), jwtattack.Claims()), attackOne(auth.ReasonUnknownKey))
	add("kid 10 KB long", pub, rs(strings.Repeat("k", 10_000), jwtattack.Claims()), attackOne(auth.ReasonTooLarge))
	add("kid a JSON number", pub, rs("", jwtattack.Claims(), jwtattack.Set("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid null", pub, rs("", jwtattack.Claims(), jwtattack.Set("kid", nil)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid a JSON number, attacker's key", pub, evilRS("", jwtattack.Set("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey, auth.ReasonSignature})

	// Keys the token brings with it: signed with the attacker's key.
	add("jku to the attacker's JWKS, its kid", pub, evilRS("evil", jwtattack.Set("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonUnknownKey))
	add("jku to the attacker's JWKS, no kid", pub, evilRS("", jwtattack.Set("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("jku to the attacker's JWKS, the issuer's kid", pub, evilRS("r1", jwtattack.Set("jku", evil.URL+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("x5u to the attacker's certificate", pub, evilRS("", jwtattack.Set("x5u", evil.URL+"/cert.pem")), attackOne(auth.ReasonSignature))
	add("embedded jwk", pub, evilRS("", jwtattack.Set("jwk", jwtattack.RSAJWK(&k.EvilRSA.PublicKey, ""))), attackOne(auth.ReasonSignature))
	add("embedded jwk, the issuer's kid", pub, evilRS("r1", jwtattack.Set("jwk", jwtattack.RSAJWK(&k.EvilRSA.PublicKey, "r1"))), attackOne(auth.ReasonSignature))
	add("embedded x5c", pub, evilRS("", jwtattack.Set("x5c", []string{base64.StdEncoding.EncodeToString(jwtattack.Cert(t, k.EvilRSA))})), attackOne(auth.ReasonSignature))

	// crit names an extension the verifier does not understand (RFC 7515
	// §4.1.11): refused, even signed with the issuer's key.
	add("crit with an unknown name", pub, rs("r1", jwtattack.Claims(), jwtattack.Set("crit", []string{"urn:attack:unknown"}), jwtattack.Set("urn:attack:unknown", true)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("crit b64 false", pub, rs("r1", jwtattack.Claims(), jwtattack.Set("crit", []string{"b64"}), jwtattack.Set("b64", false)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})

	// exp.
	add("exp a string", pub, claim(jwtattack.Set("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp negative", pub, claim(jwtattack.Set("exp", -1)), attackOne(auth.ReasonExpired))
	add("exp zero", pub, claim(jwtattack.Set("exp", 0)), []string{auth.ReasonExpired, auth.ReasonNoExpiry})
	add("exp missing", pub, claim(jwtattack.Drop("exp")), attackOne(auth.ReasonNoExpiry))
	add("exp 2^63", pub, claim(jwtattack.Set("exp", json.Number("9223372036854775808"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp 2^64", pub, claim(jwtattack.Set("exp", json.Number("18446744073709551616"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp fractional, past beyond the leeway", pub, claim(jwtattack.Set("exp", float64(now.Add(-time.Hour).Unix())+0.5)), attackOne(auth.ReasonExpired))

	// nbf, aud, iss.
	add("nbf beyond the leeway", pub, claim(jwtattack.Set("nbf", now.Add(5*time.Minute).Unix())), attackOne(auth.ReasonNotYetValid))
	add("aud missing", pub, claim(jwtattack.Drop("aud")), attackOne(auth.ReasonAudience))
	add("aud wrong", pub, claim(jwtattack.Set("aud", "https://evil.test/")), attackOne(auth.ReasonAudience))
	add("aud an empty array", pub, claim(jwtattack.Set("aud", []string{})), attackOne(auth.ReasonAudience))
	add("aud an empty string", pub, claim(jwtattack.Set("aud", "")), attackOne(auth.ReasonAudience))
	add("aud without its trailing slash", pub, claim(jwtattack.Set("aud", "https://api.test")), attackOne(auth.ReasonAudience))
	add("iss without its trailing slash", pub, claim(jwtattack.Set("iss", "https://issuer.test")), attackOne(auth.ReasonIssuer))
	add("iss with a second trailing slash", pub, claim(jwtattack.Set("iss", "https://issuer.test//")), attackOne(auth.ReasonIssuer))
	add("iss missing", pub, claim(jwtattack.Drop("iss")), attackOne(auth.ReasonIssuer))

	// sub, the account id.
	for name, sub := range map[string]any{
		"empty": "", "129 bytes": strings.Repeat("a", 129), "a NUL": "ali\x00ce", "a newline": "alice\n",
		"a tab": "\talice", "DEL": "alice\x7f", "a space": "al ice", "non-ASCII": "alicé", "..": "..", "a number": 42,
	} {
		add("sub "+name, pub, claim(jwtattack.Set("sub", sub)), attackOne(auth.ReasonBadAccount))
	}
	add("sub missing", pub, claim(jwtattack.Drop("sub")), attackOne(auth.ReasonBadAccount))

	// Base64 that is not base64url without padding, signed over the text as
	// sent, so that only the encoding is wrong.
	hdr := jwtattack.Header(jwt.SigningMethodRS256, "r1")
	payload := jwtattack.Segment(t, jwtattack.Claims())
	stdHeader := jwtattack.StdSegment(t, jwtattack.Header(jwt.SigningMethodRS256, "r1"))
	add("header with '+' and '/'", pub, jwtattack.RS256Over(t, k.RSA, stdHeader+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '+' and '/'", pub, jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+jwtattack.StdSegment(t, jwtattack.Claims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("header with '=' padding", pub, jwtattack.RS256Over(t, k.RSA, jwtattack.PaddedSegment(t, jwtattack.Header(jwt.SigningMethodRS256, "r1"))+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '=' padding", pub, jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+jwtattack.PaddedSegment(t, jwtattack.Claims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '=' padding", pub, jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+payload, base64.URLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '+' or '/'", pub, jwtattack.StdSignature(t, k.RSA, "r1"), attackOne(auth.ReasonMalformed))
	add("JWE-shaped, five segments", pub, claim()+".e30.e30", attackOne(auth.ReasonMalformed))

	// Size.
	add("8 KiB + 1 byte", pub, jwtattack.Sized(t, k.RSA, "r1", auth.MaxTokenSize+1), attackOne(auth.ReasonTooLarge))

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
	k := jwtattack.NewKeys(t)
	pub := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{
		attackLoad(t, k, "rsa", "r1"), attackLoad(t, k, "rsa2", ""), attackLoad(t, k, "ec", "e1"), attackLoad(t, k, "ed", "ed"),
	}})
	rs256 := attackVerifier(t, auth.Config{PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}, Algorithms: []string{"RS256"}})
	mixed := attackVerifier(t, auth.Config{HMACSecret: attackSecret, PublicKeys: []auth.PublicKey{attackLoad(t, k, "rsa", "r1")}})
	now := time.Now()
	long := strings.Repeat("a", 128)
	claim := func(edit ...func(map[string]any)) string {
		return jwtattack.Sign(t, jwt.SigningMethodRS256, k.RSA, jwtattack.Header(jwt.SigningMethodRS256, "r1"), jwtattack.Claims(edit...))
	}

	for _, c := range []struct {
		name    string
		v       *auth.Verifier
		token   string
		account string
	}{
		{"RS256 with kid", pub, claim(), "alice"},
		{"RS256 without kid", pub, jwtattack.Sign(t, jwt.SigningMethodRS256, k.RSA2, jwtattack.Header(jwt.SigningMethodRS256, ""), jwtattack.Claims()), "alice"},
		{"RS256, RS256 only", rs256, claim(), "alice"},
		{"PS256", pub, jwtattack.Sign(t, jwt.SigningMethodPS256, k.RSA, jwtattack.Header(jwt.SigningMethodPS256, "r1"), jwtattack.Claims()), "alice"},
		{"ES256", pub, jwtattack.Sign(t, jwt.SigningMethodES256, k.EC, jwtattack.Header(jwt.SigningMethodES256, "e1"), jwtattack.Claims()), "alice"},
		{"EdDSA", pub, jwtattack.Sign(t, jwt.SigningMethodEdDSA, k.Ed, jwtattack.Header(jwt.SigningMethodEdDSA, "ed"), jwtattack.Claims()), "alice"},
		{"HS256 next to an RSA key", mixed, jwtattack.Sign(t, jwt.SigningMethodHS256, attackSecret, jwtattack.Header(jwt.SigningMethodHS256, ""), jwtattack.Claims()), "alice"},
		{"exp fractional, in the future", pub, claim(jwtattack.Set("exp", float64(now.Add(time.Hour).Unix())+0.5)), "alice"},
		{"exactly 8 KiB", pub, jwtattack.Sized(t, k.RSA, "r1", auth.MaxTokenSize), "alice"},
		{"nbf within the leeway", pub, claim(jwtattack.Set("nbf", now.Add(10*time.Second).Unix())), "alice"},
		{"sub of 128 bytes", pub, claim(jwtattack.Set("sub", long)), long},
		{"aud an array holding the audience", pub, claim(jwtattack.Set("aud", []string{"https://other.test/", attackAudience})), "alice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if account, err := c.v.Verify(c.token); err != nil || account != c.account {
				t.Errorf("Verify: %q, %v; want %q", account, err, c.account)
			}
		})
	}
}
