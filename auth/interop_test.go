package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/auth"
)

// joseDir is the node project that mints tokens with jose.
const joseDir = "testdata/jose"

// The claims every token minted by jose holds, unless a case replaces one.
const (
	joseIssuer   = "https://issuer.test/"
	joseAudience = "https://api.test/"
	joseSubject  = "alice"
)

// joseSecret is the HMAC secret that jose signs HS256, HS384 and HS512 with.
const joseSecret = "jose-interop-secret-0123456789-abcdef"

// joseToken is one token that mint.mjs is asked for. Exp, Nbf and Iat are
// jose's relative times, such as "1h" or "-1h"; an empty one keeps the
// default.
type joseToken struct {
	Name string `json:"name"`
	Alg  string `json:"alg"`
	KID  string `json:"kid,omitempty"`
	Iss  string `json:"iss,omitempty"`
	Aud  string `json:"aud,omitempty"`
	Exp  string `json:"exp,omitempty"`
	Nbf  string `json:"nbf,omitempty"`
	Iat  string `json:"iat,omitempty"`
}

// joseRequest is what mint.mjs reads on stdin.
type joseRequest struct {
	HMACSecret string            `json:"hmacSecret"`
	Claims     map[string]string `json:"claims"`
	Tokens     []joseToken       `json:"tokens"`
}

// joseResponse is what mint.mjs prints: the tokens by name, and each public
// key it generated as PEM SPKI.
type joseResponse struct {
	Jose   string            `json:"jose"`
	Node   string            `json:"node"`
	Tokens map[string]string `json:"tokens"`
	Keys   []struct {
		KID  string `json:"kid"`
		Alg  string `json:"alg"`
		SPKI string `json:"spki"`
	} `json:"keys"`
}

// joseFamily is a key family: the algorithms jose signs with, each with its
// own key, and a check that a key loaded from jose's PEM is of the family.
type joseFamily struct {
	name  string
	algs  []string
	isKey func(crypto.PublicKey) bool
}

// joseFamilies are the families a verifier is built for. HMAC has no public
// key: its tokens are signed with joseSecret.
var joseFamilies = []joseFamily{
	{"HMAC", []string{"HS256", "HS384", "HS512"}, nil},
	{"RSA", []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, func(k crypto.PublicKey) bool {
		_, ok := k.(*rsa.PublicKey)
		return ok
	}},
	{"ECDSA", []string{"ES256", "ES384", "ES512"}, func(k crypto.PublicKey) bool {
		_, ok := k.(*ecdsa.PublicKey)
		return ok
	}},
	{"Ed25519", []string{"EdDSA"}, func(k crypto.PublicKey) bool {
		_, ok := k.(ed25519.PublicKey)
		return ok
	}},
}

// joseCurves is the curve each ECDSA algorithm's key must be on.
var joseCurves = map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}

// joseKID returns the kid jose signs alg with.
func joseKID(alg string) string { return strings.ToLower(alg) }

// joseBad is a token minted by jose that must be refused, the family whose
// verifier it is given to (every family's when empty), and why.
type joseBad struct {
	token  joseToken
	family string
	reason string
}

// joseBadTokens are the tokens jose mints that must be refused.
var joseBadTokens = []joseBad{
	{joseToken{Name: "expired ES256", Alg: "ES256", KID: "es256", Exp: "-1h", Iat: "-2h"}, "ECDSA", auth.ReasonExpired},
	{joseToken{Name: "expired HS256", Alg: "HS256", KID: "hs256", Exp: "-1h", Iat: "-2h"}, "HMAC", auth.ReasonExpired},
	{joseToken{Name: "wrong aud RS256", Alg: "RS256", KID: "rs256", Aud: "https://evil.test/"}, "RSA", auth.ReasonAudience},
	{joseToken{Name: "wrong aud EdDSA", Alg: "EdDSA", KID: "eddsa", Aud: "https://evil.test/"}, "Ed25519", auth.ReasonAudience},
	{joseToken{Name: "wrong iss PS256", Alg: "PS256", KID: "ps256", Iss: "https://evil.test/"}, "RSA", auth.ReasonIssuer},
	{joseToken{Name: "nbf in an hour ES384", Alg: "ES384", KID: "es384", Nbf: "1h"}, "ECDSA", auth.ReasonNotYetValid},
	{joseToken{Name: "alg none", Alg: "none"}, "", auth.ReasonAlgorithm},
}

// TestJoseInterop verifies tokens minted by jose, a JWT library for
// JavaScript, run by Node.js: one of every algorithm the verifier supports
// must name alice, and expired, wrongly addressed, not yet valid and unsigned
// ones must be refused with the right phrase. Each family's verifier has the
// issuer and audience set and its default algorithms; the public keys are
// loaded from the PEM files jose exported. The test fails when Node.js or
// npm is missing: tools/test.sh installs them, and the lockfile's packages.
func TestJoseInterop(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v): TestJoseInterop mints tokens with jose under Node.js; "+
			"run tools/test.sh, which installs nodejs and npm, or apt-get install nodejs npm", err)
	}
	joseInstall(t)

	req := joseRequest{
		HMACSecret: joseSecret,
		Claims:     map[string]string{"iss": joseIssuer, "aud": joseAudience, "sub": joseSubject, "exp": "1h"},
	}
	for _, f := range joseFamilies {
		for _, alg := range f.algs {
			req.Tokens = append(req.Tokens, joseToken{Name: alg, Alg: alg, KID: joseKID(alg)})
		}
	}
	for _, b := range joseBadTokens {
		req.Tokens = append(req.Tokens, b.token)
	}
	res := joseMint(t, node, req)
	t.Logf("tokens minted by jose %s on Node.js %s", res.Jose, res.Node)

	// Every public key, loaded from the PEM file jose exported, as the jwt
	// block's public_key is.
	dir := t.TempDir()
	keys := map[string]auth.PublicKey{}
	for _, k := range res.Keys {
		if _, err := auth.ParsePublicKey([]byte(k.SPKI)); err != nil {
			t.Fatalf("ParsePublicKey, jose's %s key: %v", k.Alg, err)
		}
		path := filepath.Join(dir, k.KID+".pem")
		if err := os.WriteFile(path, []byte(k.SPKI), 0o600); err != nil {
			t.Fatal(err)
		}
		key, err := auth.LoadPublicKey(path)
		if err != nil {
			t.Fatalf("LoadPublicKey, jose's %s key: %v", k.Alg, err)
		}
		if curve, ok := joseCurves[k.Alg]; ok {
			if ec, isEC := key.(*ecdsa.PublicKey); !isEC || ec.Curve != curve {
				t.Fatalf("jose's %s key is a %T, want an ECDSA key on %s", k.Alg, key, curve.Params().Name)
			}
		}
		keys[k.KID] = auth.PublicKey{KID: k.KID, Key: key}
	}

	verifiers := map[string]*auth.Verifier{}
	for _, f := range joseFamilies {
		cfg := auth.Config{Issuer: joseIssuer, Audience: joseAudience}
		if f.isKey == nil {
			cfg.HMACSecret = []byte(joseSecret)
		} else {
			for _, alg := range f.algs {
				k, ok := keys[joseKID(alg)]
				if !ok {
					t.Fatalf("jose exported no %s key", alg)
				}
				if !f.isKey(k.Key) {
					t.Fatalf("jose's %s key is a %T, not an %s key", alg, k.Key, f.name)
				}
				cfg.PublicKeys = append(cfg.PublicKeys, k)
			}
		}
		v, err := auth.New(cfg)
		if err != nil {
			t.Fatalf("New, %s: %v", f.name, err)
		}
		verifiers[f.name] = v
	}

	for _, f := range joseFamilies {
		for _, alg := range f.algs {
			t.Run(alg, func(t *testing.T) {
				account, err := verifiers[f.name].Verify(res.Tokens[alg])
				if err != nil || account != joseSubject {
					t.Errorf("Verify of jose's %s token: %q, %v; want %q", alg, account, err, joseSubject)
				}
			})
		}
	}
	for _, b := range joseBadTokens {
		for _, f := range joseFamilies {
			if b.family != "" && b.family != f.name {
				continue
			}
			t.Run(b.token.Name+", "+f.name, func(t *testing.T) {
				account, err := verifiers[f.name].Verify(res.Tokens[b.token.Name])
				var ae *auth.Error
				if !errors.As(err, &ae) || account != "" {
					t.Fatalf("Verify: %q, %v; want an *auth.Error", account, err)
				}
				if ae.Description != b.reason {
					t.Errorf("refused as %q, want %q", ae.Description, b.reason)
				}
			})
		}
	}
}

// joseInstall runs npm ci in joseDir unless node_modules already holds the
// jose version that package.json pins.
func joseInstall(t *testing.T) {
	t.Helper()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	joseReadJSON(t, filepath.Join(joseDir, "package.json"), &pkg)
	want := pkg.Dependencies["jose"]
	if want == "" {
		t.Fatalf("%s/package.json has no jose dependency", joseDir)
	}
	var installed struct {
		Version string `json:"version"`
	}
	if data, err := os.ReadFile(filepath.Join(joseDir, "node_modules", "jose", "package.json")); err == nil &&
		json.Unmarshal(data, &installed) == nil && installed.Version == want {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is not installed (%v), and %s/node_modules lacks jose %s: "+
			"run tools/test.sh, which installs nodejs and npm and runs npm ci, or apt-get install nodejs npm", err, joseDir, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--silent")
	cmd.Dir = joseDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci --silent in %s: %v\n%s", joseDir, err, out)
	}
}

// joseMint runs mint.mjs with req and returns its response, having checked
// that it holds every token asked for.
func joseMint(t *testing.T, node string, req joseRequest) *joseResponse {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "mint.mjs")
	cmd.Dir = joseDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node mint.mjs: %v\n%s", err, stderr.Bytes())
	}
	res := &joseResponse{}
	if err := json.Unmarshal(out, res); err != nil {
		t.Fatalf("node mint.mjs printed %q: %v", out, err)
	}
	for _, tok := range req.Tokens {
		if res.Tokens[tok.Name] == "" {
			t.Fatalf("node mint.mjs returned no token %q", tok.Name)
		}
	}
	return res
}

// joseReadJSON decodes the JSON file at path into v.
func joseReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
