package auth

import "crypto"

// KeySet supplies verification keys by kid from outside the configuration,
// such as a JSON Web Key Set that its issuer rotates.
type KeySet interface {
	// Key returns the public key named kid, for a token signed with alg: a
	// key declared for another algorithm, or for encryption, is none. An
	// unknown kid may wait, bounded, for the set to be fetched again.
	Key(kid, alg string) (crypto.PublicKey, error)

	// Has reports, without waiting, whether the set still holds key under
	// kid: a cached token whose key was removed or replaced is verified
	// again.
	Has(kid string, key crypto.PublicKey) bool
}
