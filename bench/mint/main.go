// Command mint signs tokens for the benchmarks: with a PEM private key, for
// those that measure the gateway with RS256 and ES256 tokens (tollgate token
// signs HS256 only), or with an HMAC secret (HS256), and mints many at once
// for benchmarks that spread the load over many accounts.
//
//	go run ./bench/mint -alg ES256 -key key.pem -sub bench -iss https://issuer.test/ -aud https://api.test/
//
// With -n N it mints N tokens, for the accounts SUB-0 … SUB-(N-1), one a
// line, in -out (standard output by default); with -fund it also credits
// each of those accounts -amount tokens through the Tollgate admin API of
// each gateway given, many calls at once:
//
//	go run ./bench/mint -alg HS256 -secret S -iss '' -aud '' -n 1000 -sub bench \
//		-out tokens.txt -fund http://127.0.0.1:2019,http://127.0.0.1:2020
//
// An empty -iss or -aud leaves that claim out.
package main

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	alg := flag.String("alg", "ES256", "signing algorithm: RS256, ES256 or HS256")
	keyFile := flag.String("key", "", "PKCS #8 PEM private key (RS256, ES256)")
	secret := flag.String("secret", "", "HMAC secret (HS256)")
	sub := flag.String("sub", "bench", "the account; with -n, the prefix of the accounts SUB-0 … SUB-(N-1)")
	iss := flag.String("iss", "https://issuer.test/", "issuer; empty leaves the claim out")
	aud := flag.String("aud", "https://api.test/", "audience; empty leaves the claim out")
	ttl := flag.Duration("ttl", time.Hour, "lifetime")
	n := flag.Int("n", 0, "mint this many tokens, for the accounts SUB-0 … SUB-(N-1), one a line; 0 mints one for SUB")
	out := flag.String("out", "", "write the tokens to this file instead of standard output")
	fund := flag.String("fund", "", "comma-separated admin API base URLs (http://127.0.0.1:2019) through which each account is credited -amount")
	amount := flag.Int64("amount", 1_000_000_000_000, "tokens credited to each account with -fund")
	flag.Parse()
	if err := run(*alg, *keyFile, *secret, *sub, *iss, *aud, *ttl, *n, *out, *fund, *amount); err != nil {
		fmt.Fprintln(os.Stderr, "mint:", err)
		os.Exit(1)
	}
}

func run(alg, keyFile, secret, sub, iss, aud string, ttl time.Duration, n int, out, fund string, amount int64) error {
	key, err := signingKey(alg, keyFile, secret)
	if err != nil {
		return err
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	accounts := []string{sub}
	if n > 0 {
		accounts = make([]string, n)
		for i := range accounts {
			accounts[i] = fmt.Sprintf("%s-%d", sub, i)
		}
	}

	w := os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	exp := time.Now().Add(ttl).Unix()
	for _, account := range accounts {
		claims := jwt.MapClaims{"sub": account, "exp": exp}
		if iss != "" {
			claims["iss"] = iss
		}
		if aud != "" {
			claims["aud"] = aud
		}
		token, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			return err
		}
		fmt.Fprintln(bw, token)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if out != "" {
		if err := w.Close(); err != nil {
			return err
		}
	}

	if fund == "" {
		return nil
	}
	for _, base := range strings.Split(fund, ",") {
		if err := credit(strings.TrimRight(base, "/"), accounts, amount); err != nil {
			return err
		}
	}
	return nil
}

// signingKey returns the key that signs with alg: the HMAC secret for HS*,
// the PEM private key otherwise.
func signingKey(alg, keyFile, secret string) (any, error) {
	if strings.HasPrefix(alg, "HS") {
		if secret == "" {
			return nil, errors.New("-secret is required with " + alg)
		}
		return []byte(secret), nil
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", keyFile)
	}
	return x509.ParsePKCS8PrivateKey(block.Bytes)
}

// fundWorkers is how many credits are sent at once.
const fundWorkers = 16

// credit credits each account amount through the admin API at base, with
// fundWorkers calls in flight over kept-alive connections. Each credit's id
// is fund-ACCOUNT, so a credit sent again is not counted twice.
func credit(base string, accounts []string, amount int64) error {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: fundWorkers},
	}
	jobs := make(chan string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range fundWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for account := range jobs {
				if err := creditOne(client, base, account, amount); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, account := range accounts {
		jobs <- account
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

func creditOne(client *http.Client, base, account string, amount int64) error {
	body := fmt.Sprintf(`{"amount":%d,"id":"fund-%s"}`, amount, account)
	u := base + "/tollgate/accounts/" + url.PathEscape(account) + "/credit"
	resp, err := client.Post(u, "application/json", bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("crediting %s at %s: %s: %s", account, base, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
