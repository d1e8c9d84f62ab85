package auth

import (
	"crypto"
	"errors"
)

// ErrKeysUnavailable is a token whose key would come from the key set while
// no fetch of the set has succeeded yet: the token may be good, so it is not
// refused, and the same request may pass once the set is fetched.
var ErrKeysUnavailable = errors.New("the key set is not available yet")

// KeySet supplies verification keys by kid from outside the configuration,
// such as a JSON Web Key Set that its issuer rotates.
type KeySet interface {
	// Key returns the public key named kid, for a token signed with alg: a
	// key declared for another algorithm, or for encryption, is none, and
	// an empty kid names none. An unknown kid may wait, bounded, for the
	// set to be fetched again. Until a fetch of the set has succeeded, Key
	// waits for one, bounded, and then returns ErrKeysUnavailable.
	Key(kid, alg string) (crypto.PublicKey, error)

	// Has reports, without waiting, whether the set still holds key under
	// kid: a cached token whose key was removed or replaced is verified
	// again.
	Has(kid string, key crypto.PublicKey) bool
}
