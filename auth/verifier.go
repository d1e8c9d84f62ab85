// Package auth verifies the JWTs that identify Tollgate's callers.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/meter"
)

// MaxTokenSize is the longest token parsed; a longer one is refused unread.
const MaxTokenSize = 8 << 10

// MinHMACSecret is the shortest HMAC secret accepted: golang-jwt would
// otherwise verify tokens signed with an empty key.
const MinHMACSecret = 32

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// DefaultAccountClaim is the claim that names the account.
const DefaultAccountClaim = "sub"

// PublicKey is a static verification key, with the kid that selects it.
type PublicKey struct {
	KID string
	Key crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// Config says which tokens a Verifier accepts.
type Config struct {
	HMACSecret   []byte      // HS256/384/512; at least MinHMACSecret bytes
	PublicKeys   []PublicKey // RSA, ECDSA or Ed25519
	KeySet       KeySet      // keys by kid from outside the config, such as a JWKS
	Algorithms   []string    // default: the families of the keys given
	Issuer       string      // required with public keys
	Audience     string      // required with public keys
	Leeway       time.Duration
	AccountClaim string

	// Scope, when set, must be in the ScopeClaim: a space-separated string
	// as in OAuth, or an array as in scp. A token without it is refused with
	// ErrInsufficientScope.
	Scope      string
	ScopeClaim string // default: scope
}

// DefaultScopeClaim is where the scope is looked for.
const DefaultScopeClaim = "scope"

// ErrInsufficientScope is a valid token without the required scope.
var ErrInsufficientScope = errors.New("insufficient scope")

// Verifier checks a token's signature and claims and returns its account.
type Verifier struct {
	parser  *jwt.Parser
	hmac    []byte
	keys    []PublicKey
	set     KeySet
	algs    []string
	claim   string
	scope   string
	scopeIn string
	keyfunc jwt.Keyfunc
	leeway  time.Duration
	now     func() time.Time
	cache   cache
}

// Error is a refused token, with a short fixed phrase that says why. It never
// holds the token or key material.
type Error struct {
	Description string
}

func (e *Error) Error() string { return "invalid token: " + e.Description }

// The phrases a refused token is described by.
const (
	ReasonMalformed    = "malformed token"
	ReasonTooLarge     = "token too large"
	ReasonAlgorithm    = "algorithm not allowed"
	ReasonUnknownKey   = "unknown key"
	ReasonSignature    = "invalid signature"
	ReasonExpired      = "token expired"
	ReasonNoExpiry     = "token has no expiry"
	ReasonNotYetValid  = "token not yet valid"
	ReasonIssuer       = "wrong issuer"
	ReasonAudience     = "wrong audience"
	ReasonBadAccount   = "bad account id"
	ReasonInvalidToken = "invalid token"
)

// New returns a Verifier for cfg.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.HMACSecret) == 0 && len(cfg.PublicKeys) == 0 && cfg.KeySet == nil {
		return nil, errors.New("jwt needs an hmac_secret, a public_key or a jwks")
	}
	if len(cfg.HMACSecret) > 0 && len(cfg.HMACSecret) < MinHMACSecret {
		return nil, fmt.Errorf("hmac_secret must be at least %d bytes", MinHMACSecret)
	}
	if (len(cfg.PublicKeys) > 0 || cfg.KeySet != nil) && (cfg.Issuer == "" || cfg.Audience == "") {
		return nil, errors.New("jwt with public keys or a jwks requires issuer and audience")
	}
	for _, k := range cfg.PublicKeys {
		if family(k.Key) == nil {
			return nil, fmt.Errorf("unsupported public key type %T", k.Key)
		}
	}
	v := &Verifier{hmac: cfg.HMACSecret, keys: cfg.PublicKeys, set: cfg.KeySet, claim: cfg.AccountClaim, scope: cfg.Scope, scopeIn: cfg.ScopeClaim}
	if v.claim == "" {
		v.claim = DefaultAccountClaim
	}
	if v.scopeIn == "" {
		v.scopeIn = DefaultScopeClaim
	}
	v.algs = cfg.Algorithms
	if len(v.algs) == 0 {
		if len(v.hmac) > 0 {
			v.algs = append(v.algs, "HS256", "HS384", "HS512")
		}
		for _, k := range v.keys {
			for _, alg := range family(k.Key) {
				if !slices.Contains(v.algs, alg) {
					v.algs = append(v.algs, alg)
				}
			}
		}
		if v.set != nil {
			for _, alg := range asymmetric {
				if !slices.Contains(v.algs, alg) {
					v.algs = append(v.algs, alg)
				}
			}
		}
	}
	for _, alg := range v.algs {
		m := jwt.GetSigningMethod(alg)
		if m == nil || alg == "none" {
			return nil, fmt.Errorf("unknown algorithm %q", alg)
		}
		if _, isHMAC := m.(*jwt.SigningMethodHMAC); isHMAC && len(v.hmac) == 0 {
			return nil, fmt.Errorf("algorithm %s needs an hmac_secret", alg)
		}
		if _, isHMAC := m.(*jwt.SigningMethodHMAC); !isHMAC && v.set == nil && len(v.candidates(alg, "")) == 0 {
			return nil, fmt.Errorf("algorithm %s has no public key of its family", alg)
		}
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.now = time.Now
	v.leeway = leeway
	v.parser = jwt.NewParser(append(opts, jwt.WithTimeFunc(func() time.Time { return v.now() }))...)
	v.keyfunc = v.key
	return v, nil
}

// Verify checks a token and returns the account it names. A refused token
// is an *Error; a token whose key the key set cannot give yet is
// ErrKeysUnavailable, and one without the required scope
// ErrInsufficientScope.
func (v *Verifier) Verify(token string) (string, error) {
	if len(token) > MaxTokenSize {
		return "", &Error{ReasonTooLarge}
	}
	if account, kid, key, ok := v.cache.get(token, v.now()); ok && (kid == "" || v.set.Has(kid, key)) {
		return account, nil
	}
	claims := jwt.MapClaims{}
	keyfunc := v.keyfunc
	var setKey crypto.PublicKey // the key of the set that verified the token
	if v.set != nil {
		keyfunc = func(t *jwt.Token) (any, error) {
			key, err := v.key(t)
			if ks, ok := key.(jwt.VerificationKeySet); ok && v.fromSet(t) != "" && len(ks.Keys) == 1 {
				setKey = ks.Keys[0]
			}
			return key, err
		}
	}
	t, err := v.parser.ParseWithClaims(token, claims, keyfunc)
	if exp, ok := claims["exp"].(float64); ok && exp >= meter.MaxAmount {
		// Far beyond any real expiry, and beyond what converts to a time
		// exactly.
		return "", &Error{ReasonMalformed}
	}
	if err != nil {
		if t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()) {
			return "", &Error{ReasonAlgorithm}
		}
		if errors.Is(err, ErrKeysUnavailable) {
			return "", ErrKeysUnavailable
		}
		return "", &Error{describe(err)}
	}
	account, _ := claims[v.claim].(string)
	if !meter.ValidAccount(account) {
		return "", &Error{ReasonBadAccount}
	}
	if v.scope != "" && !hasScope(claims[v.scopeIn], v.scope) {
		return "", ErrInsufficientScope
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		// A token verified by the key set is served from the cache only
		// while the set still holds its key.
		v.cache.put(token, account, v.fromSet(t), setKey, exp.Add(v.leeway))
	}
	return account, nil
}

// hasScope reports whether a scope claim, a space-separated string or an
// array of strings, holds scope.
func hasScope(claim any, scope string) bool {
	switch c := claim.(type) {
	case string:
		return slices.Contains(strings.Fields(c), scope)
	case []any:
		for _, s := range c {
			if s == scope {
				return true
			}
		}
	}
	return false
}

// The key function's refusals.
var (
	errUnknownKey = errors.New("unknown key")
	errBadKID     = errors.New("kid is not a string")
	errCritical   = errors.New("critical header extension")
)

// key returns the keys a token may be verified with: the one its kid names,
// or else every static key of its algorithm's family. An HMAC secret is
// returned only for an HMAC algorithm, so a public key is never used as one.
// A token no static key can verify, whose kid names none or which has no
// kid, is left to the key set, and waits for its first fetch.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// No header extension is understood, so none can be critical
		// (RFC 7515, section 4.1.11).
		return nil, errCritical
	}
	if kid, ok := t.Header["kid"]; ok {
		if _, isString := kid.(string); !isString {
			return nil, errBadKID
		}
	}
	alg := t.Method.Alg()
	if _, isHMAC := t.Method.(*jwt.SigningMethodHMAC); isHMAC {
		if len(v.hmac) == 0 {
			return nil, errUnknownKey
		}
		return v.hmac, nil
	}
	kid, _ := t.Header["kid"].(string)
	keys := v.candidates(alg, kid)
	if len(keys) == 0 && v.set != nil && (kid == "" || v.fromSet(t) != "") {
		// A key of the set is bound to its family as a static key is: an
		// RSA key never verifies an EC token, nor an HMAC one.
		key, err := v.set.Key(kid, alg)
		switch {
		case errors.Is(err, ErrKeysUnavailable):
			return nil, ErrKeysUnavailable
		case err == nil && slices.Contains(family(key), alg):
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, errUnknownKey
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// fromSet returns the kid of a token whose key comes from the key set: one
// with a kid that names no static key. It is empty otherwise.
func (v *Verifier) fromSet(t *jwt.Token) string {
	kid, _ := t.Header["kid"].(string)
	if v.set == nil || kid == "" || slices.ContainsFunc(v.keys, func(k PublicKey) bool { return k.KID == kid }) {
		return ""
	}
	return kid
}

// asymmetric is every public-key algorithm a key set may verify.
var asymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// candidates returns the static keys of alg's family, only the one named
// kid when kid is set.
func (v *Verifier) candidates(alg, kid string) []jwt.VerificationKey {
	var keys []jwt.VerificationKey
	for _, k := range v.keys {
		if (kid == "" || k.KID == kid) && slices.Contains(family(k.Key), alg) {
			keys = append(keys, k.Key)
		}
	}
	return keys
}

// family returns the algorithms a key verifies.
func family(key crypto.PublicKey) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

// describe returns the fixed phrase for a parse error.
func describe(err error) string {
	switch {
	case errors.Is(err, errUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, errBadKID):
		return ReasonMalformed
	case errors.Is(err, errCritical):
		return ReasonInvalidToken
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && strings.Contains(err.Error(), "aud claim"):
		return ReasonAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && strings.Contains(err.Error(), "iss claim"):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ReasonAlgorithm // an alg golang-jwt does not know, such as "None"
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ReasonNoExpiry
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	}
	return ReasonInvalidToken
}
