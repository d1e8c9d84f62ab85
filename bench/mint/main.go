// Command mint signs a token with a PEM private key, for the benchmarks that
// measure the gateway with RS256 and ES256 tokens (tollgate token signs
// HS256 only).
//
//	go run ./bench/mint -alg ES256 -key key.pem -sub bench -iss https://issuer.test/ -aud https://api.test/
package main

import (
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	alg := flag.String("alg", "ES256", "signing algorithm: RS256 or ES256")
	keyFile := flag.String("key", "", "PKCS #8 PEM private key")
	sub := flag.String("sub", "bench", "the account")
	iss := flag.String("iss", "https://issuer.test/", "issuer")
	aud := flag.String("aud", "https://api.test/", "audience")
	ttl := flag.Duration("ttl", time.Hour, "lifetime")
	flag.Parse()
	if err := run(*alg, *keyFile, *sub, *iss, *aud, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "mint:", err)
		os.Exit(1)
	}
}

func run(alg, keyFile, sub, iss, aud string, ttl time.Duration) error {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s holds no PEM block", keyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	token, err := jwt.NewWithClaims(method, jwt.MapClaims{
		"sub": sub, "iss": iss, "aud": aud, "exp": time.Now().Add(ttl).Unix(),
	}).SignedString(key)
	if err != nil {
		return err
	}
	fmt.Println(token)
	return nil
}
