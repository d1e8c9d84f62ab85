package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
)

// pendingSet is a key set that has not been fetched until loaded is set,
// and then holds keys by kid. It counts the keys asked of it.
type pendingSet struct {
	loaded bool
	keys   map[string]crypto.PublicKey
	asked  int
}

// Key returns the key named kid; see auth.KeySet.
func (s *pendingSet) Key(kid, alg string) (crypto.PublicKey, error) {
	s.asked++
	if !s.loaded {
		return nil, auth.ErrKeysUnavailable
	}
	if key, ok := s.keys[kid]; ok && kid != "" {
		return key, nil
	}
	return nil, errors.New("no such key")
}

// Has reports whether the set holds key under kid; see auth.KeySet.
func (s *pendingSet) Has(kid string, key crypto.PublicKey) bool {
	held, ok := s.keys[kid]
	return s.loaded && ok && held.(*ecdsa.PublicKey).Equal(key)
}

// TestKeysUnavailable verifies tokens while the key set has not been
// fetched: a token only the set could verify (by a kid no static key has,
// or without a kid and with no static key of its family) is
// ErrKeysUnavailable, never a refusal; a static key verifies its tokens
// without asking the set. Once the set is loaded, an unknown kid is refused
// as an unknown key.
func TestKeysUnavailable(t *testing.T) {
	static, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	fromSet, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	set := &pendingSet{keys: map[string]crypto.PublicKey{"k1": &fromSet.PublicKey}}
	v, err := auth.New(auth.Config{
		PublicKeys: []auth.PublicKey{{KID: "s1", Key: &static.PublicKey}},
		KeySet:     set,
		Issuer:     "https://i/",
		Audience:   "https://a/",
	})
	if err != nil {
		t.Fatal(err)
	}
	bySet := sign(t, jwt.SigningMethodES256, fromSet, "k1", claims())
	noKID := sign(t, jwt.SigningMethodRS256, other, "", claims())
	unknown := sign(t, jwt.SigningMethodES256, fromSet, "k2", claims())

	for name, tok := range map[string]string{"a kid of the set": bySet, "no kid, no static key of its family": noKID, "a kid no key has": unknown} {
		_, err := v.Verify(tok)
		var ae *auth.Error
		if !errors.Is(err, auth.ErrKeysUnavailable) || errors.As(err, &ae) {
			t.Errorf("%s before the set is fetched: %v, want ErrKeysUnavailable", name, err)
		}
	}
	asked := set.asked
	for name, tok := range map[string]string{
		"the static kid": sign(t, jwt.SigningMethodES256, static, "s1", claims()),
		"no kid":         sign(t, jwt.SigningMethodES256, static, "", claims()),
	} {
		if account, err := v.Verify(tok); err != nil || account != "alice" {
			t.Errorf("%s before the set is fetched: %q, %v; want alice", name, account, err)
		}
	}
	if set.asked != asked {
		t.Errorf("tokens of the static key asked the set %d times, want never", set.asked-asked)
	}

	set.loaded = true
	if account, err := v.Verify(bySet); err != nil || account != "alice" {
		t.Errorf("a kid of the set once it is fetched: %q, %v; want alice", account, err)
	}
	_, err = v.Verify(unknown)
	expectReason(t, "an unknown kid once the set is fetched", err, auth.ReasonUnknownKey)
	_, err = v.Verify(noKID)
	expectReason(t, "no kid and no static key of its family once the set is fetched", err, auth.ReasonUnknownKey)
}
