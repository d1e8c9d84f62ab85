package auth

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary tokens and claims to a verifier: it never
// panics, refuses with one of the fixed phrases, never echoes the token, and
// accepts only what it signed itself with valid claims.
func FuzzVerify(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789-0123456789-abc")
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	for _, s := range []string{good, "", ".", "..", "a.b.c", good + "x", strings.ToUpper(good),
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", `{"alg":"HS256"}`} {
		f.Add(s, `{"sub":"alice","exp":4102444800}`)
	}
	f.Add("", `{"sub":"alice","exp":"4102444800"}`)
	f.Add("", `{"sub":"","exp":4102444800}`)
	f.Add("", `{"sub":"alice","exp":1e300}`)
	f.Add("", `{"sub":"a b","exp":4102444800,"nbf":4102444800}`)
	v, err := New(Config{HMACSecret: secret})
	if err != nil {
		f.Fatal(err)
	}
	phrases := []string{ReasonMalformed, ReasonTooLarge, ReasonAlgorithm, ReasonUnknownKey, ReasonSignature, ReasonExpired,
		ReasonNoExpiry, ReasonNotYetValid, ReasonIssuer, ReasonAudience, ReasonBadAccount, ReasonInvalidToken}
	f.Fuzz(func(t *testing.T, token, claims string) {
		check := func(token string, signed bool) {
			account, err := v.Verify(token)
			if err == nil {
				if !signed {
					t.Fatalf("an unsigned token %q was accepted as %q", token, account)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || !slices.Contains(phrases, e.Description) {
				t.Fatalf("refusal %v is not one of the fixed phrases", err)
			}
			if len(token) > 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("the refusal echoes the token")
			}
		}
		if token != good {
			check(token, false)
		}
		// The same claims, signed: accepted only when they are valid.
		var m jwt.MapClaims
		if jwtClaimsFromJSON(claims, &m) {
			signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, m).SignedString(secret)
			if err == nil {
				check(signed, true)
			}
		}
	})
}

// jwtClaimsFromJSON decodes claims the way golang-jwt does, reporting
// whether they are a JSON object.
func jwtClaimsFromJSON(s string, m *jwt.MapClaims) bool {
	return json.Unmarshal([]byte(s), m) == nil && *m != nil
}
