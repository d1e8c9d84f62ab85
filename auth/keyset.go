package auth

import "crypto"

// KeySet supplies verification keys by kid from outside the configuration,
// such as a JSON Web Key Set that its issuer rotates.
type KeySet interface {
	// Key returns the public key named kid. An unknown kid may wait,
	// bounded, for the set to be fetched again.
	Key(kid string) (crypto.PublicKey, error)

	// Has reports, without waiting, whether the set holds kid now.
	Has(kid string) bool
}
