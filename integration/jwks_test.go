package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// jwksServer is an identity provider's key set endpoint whose keys the test
// rotates. It counts the fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64

	mu       sync.Mutex
	keys     map[string]*ecdsa.PrivateKey
	stranger *ecdsa.PrivateKey // signs for kids the set does not hold
}

// newJWKSServer serves the public halves of the keys it is given.
func newJWKSServer(t *testing.T) *jwksServer {
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &jwksServer{keys: map[string]*ecdsa.PrivateKey{}, stranger: stranger}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		set.Keys = []json.RawMessage{}
		for kid, k := range s.keys {
			jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			raw, _ := json.Marshal(jwk.Marshal())
			set.Keys = append(set.Keys, raw)
		}
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(s.Close)
	return s
}

// rotate makes the set hold exactly the keys named, new ones generated.
func (s *jwksServer) rotate(t *testing.T, kids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]*ecdsa.PrivateKey{}
	for _, kid := range kids {
		if k, ok := s.keys[kid]; ok {
			next[kid] = k
			continue
		}
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		next[kid] = k
	}
	s.keys = next
}

// sign mints an ES256 token for account with the key named kid, or with a
// key of no set when the set has none by that name.
func (s *jwksServer) sign(t *testing.T, kid, account string) string {
	s.mu.Lock()
	k := s.keys[kid]
	s.mu.Unlock()
	if k == nil {
		k = s.stranger
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"sub": account, "iss": "https://issuer.test/", "aud": "https://api.test/", "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// jwksGateway starts a gateway whose tokens are verified by the key set at
// url, with a per-request price.
func jwksGateway(t *testing.T, srv *redistest.Server, url string) *gateway {
	t.Helper()
	up := newUpstream(t)
	return startGatewayWith(t, srv, `jwt {
			jwks `+url+`
			issuer https://issuer.test/
			audience https://api.test/
		}`, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
}

func TestJWKSRotation(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	g := jwksGateway(t, srv, idp.URL)
	g.credit(t, "alice", 1000)

	old := idp.sign(t, "k1", "alice")
	waitAccepted(t, g, old, "the first fetch of the key set")
	fetched := idp.fetches.Load()

	// The provider rotates: k1 goes, k2 comes. A token by k2 makes the set
	// be fetched again, once, and is accepted.
	idp.rotate(t, "k2")
	resp, body := g.do(t, "GET", "/x", idp.sign(t, "k2", "alice"))
	expectStatus(t, "a token signed with the new key", resp, body, http.StatusOK)
	if n := idp.fetches.Load() - fetched; n != 1 {
		t.Errorf("%d fetches for the new kid, want 1", n)
	}

	// The token by k1 was accepted, and cached, before; its key is gone.
	resp, body = g.do(t, "GET", "/x", old)
	expectStatus(t, "a cached token whose key was removed", resp, body, http.StatusUnauthorized)
	if d := resp.Header.Get("WWW-Authenticate"); d != `Bearer realm="tollgate", error="invalid_token", error_description="unknown key"` {
		t.Errorf("WWW-Authenticate %q", d)
	}

	// A flood of unknown kids costs no fetch within the window, and good
	// tokens never fetch.
	fetched = idp.fetches.Load()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10000 / 8 {
				req, _ := http.NewRequest(http.MethodGet, g.URL+"/x", nil)
				req.Header.Set("Authorization", "Bearer "+idp.sign(t, fmt.Sprintf("random-%d-%d", w, i), "mallory"))
				resp, err := g.client.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				}
			}
		}()
	}
	good := idp.sign(t, "k2", "alice")
	for range 100 {
		if resp, body := g.do(t, "GET", "/x", good); resp.StatusCode != http.StatusOK {
			t.Fatalf("a good token during the flood: %d %s", resp.StatusCode, body)
		}
	}
	wg.Wait()
	if refused.Load() != 10000 {
		t.Errorf("%d of 10000 unknown kids refused", refused.Load())
	}
	if n := idp.fetches.Load() - fetched; n > 0 {
		t.Errorf("%d fetches during the flood, want none within the window", n)
	}
}

// TestJWKSIgnoresTokenKeyURLs sends tokens that point at an attacker's keys
// (jku, x5u, an embedded jwk) to a gateway on a key set: each is refused,
// and the attacker's server is never asked.
func TestJWKSIgnoresTokenKeyURLs(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	var asked atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Add(1) }))
	defer attacker.Close()
	g := jwksGateway(t, srv, idp.URL)
	g.credit(t, "alice", 10)
	waitAccepted(t, g, idp.sign(t, "k1", "alice"), "the first fetch of the key set")
	pub := idp.stranger.PublicKey
	for name, header := range map[string]map[string]any{
		"jku":          {"jku": attacker.URL + "/jwks.json", "kid": "k1"},
		"x5u":          {"x5u": attacker.URL + "/cert.pem", "kid": "k1"},
		"embedded jwk": {"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": b64(pub.X.Bytes()), "y": b64(pub.Y.Bytes())}, "kid": "k1"},
		"jku, new kid": {"jku": attacker.URL + "/jwks.json", "kid": "attacker"},
	} {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"sub": "alice", "iss": "https://issuer.test/", "aud": "https://api.test/", "exp": time.Now().Add(time.Hour).Unix(),
		})
		for k, v := range header {
			tok.Header[k] = v
		}
		signed, err := tok.SignedString(idp.stranger)
		if err != nil {
			t.Fatal(err)
		}
		resp, body := g.do(t, "GET", "/x", signed)
		expectStatus(t, name, resp, body, http.StatusUnauthorized)
	}
	if asked.Load() != 0 {
		t.Errorf("the attacker's server was asked %d times", asked.Load())
	}
	if a := g.account(t, "alice"); a.Charged != 1 {
		t.Errorf("account %+v: only the good request is charged", a)
	}
}

// b64 encodes bytes as base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestJWKSSharedAcrossReloads reloads a gateway on a key set: the reloads
// share its client, so the set is not fetched again.
func TestJWKSSharedAcrossReloads(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	g := jwksGateway(t, srv, idp.URL)
	g.credit(t, "alice", 100)
	tok := idp.sign(t, "k1", "alice")
	waitAccepted(t, g, tok, "the first fetch of the key set")
	fetched := idp.fetches.Load()
	for range 5 {
		if err := caddy.Load(lastConfig, true); err != nil {
			t.Fatal(err)
		}
		resp, body := g.do(t, "GET", "/x", tok)
		expectStatus(t, "a request after a reload", resp, body, http.StatusOK)
	}
	if n := idp.fetches.Load() - fetched; n != 0 {
		t.Errorf("5 reloads fetched the key set %d more times, want none", n)
	}
}

// TestJWKSKeyReplacedUnderItsKid replaces the key behind a kid, as issuers
// with a fixed kid rotate: a token cached under the old key is refused once
// the set is fetched again.
func TestJWKSKeyReplacedUnderItsKid(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	g := jwksGateway(t, srv, idp.URL)
	g.credit(t, "alice", 10)
	old := idp.sign(t, "k1", "alice")
	waitAccepted(t, g, old, "the first fetch of the key set")
	idp.rotate(t)       // k1 goes…
	idp.rotate(t, "k1") // …and comes back with a new key
	// A new kid makes the set be fetched again.
	resp, body := g.do(t, "GET", "/x", idp.sign(t, "k2", "alice"))
	expectStatus(t, "an unknown kid", resp, body, http.StatusUnauthorized)
	resp, body = g.do(t, "GET", "/x", old)
	expectStatus(t, "a cached token whose key was replaced", resp, body, http.StatusUnauthorized)
	resp, body = g.do(t, "GET", "/x", idp.sign(t, "k1", "alice"))
	expectStatus(t, "a token signed with the new key", resp, body, http.StatusOK)
}

// TestJWKSDownAtStart starts a gateway while the identity provider is down:
// a good token is answered 503 keys-unavailable, by tollgate,
// tollgate_account and tollgate_admin alike, never 401, and without a store
// call. Once the provider is back, the token is accepted, without waiting
// for the unknown-kid allowance that the meantime's callers would have used
// up; and then an unknown kid is a 401.
func TestJWKSDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	var down atomic.Bool
	down.Store(true)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		idp.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	up := newUpstream(t)
	g := startGatewayWith(t, srv, `jwt {
			jwks `+front.URL+`
			issuer https://issuer.test/
			audience https://api.test/
		}`, "tollgate_account /account/*\ntollgate_admin /ops/*\ntollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 10)
	tok := idp.sign(t, "k1", "alice")
	calls := attackRedisCalls(t, srv)
	for _, path := range []string{"/x", "/x", "/account/balance", "/ops/accounts/alice"} {
		resp, body := g.do(t, "GET", path, tok)
		expectKeysUnavailable(t, path+" while the provider is down", resp, body)
	}
	if n := attackRedisCalls(t, srv) - calls; n != 0 {
		t.Errorf("the refused requests made %d store calls, want none", n)
	}
	if up.hits.Load() != 0 {
		t.Errorf("%d requests reached the upstream, want none", up.hits.Load())
	}

	down.Store(false)
	waitFor(t, "the key set to be fetched once the provider is back", func() bool {
		resp, body := g.do(t, "GET", "/x", tok)
		if resp.StatusCode != http.StatusOK {
			expectKeysUnavailable(t, "a token until the key set is fetched", resp, body)
		}
		return resp.StatusCode == http.StatusOK
	})
	resp, body := g.do(t, "GET", "/x", idp.sign(t, "k2", "alice"))
	expectStatus(t, "an unknown kid once the key set is fetched", resp, body, http.StatusUnauthorized)
	if d := resp.Header.Get("WWW-Authenticate"); d != `Bearer realm="tollgate", error="invalid_token", error_description="unknown key"` {
		t.Errorf("WWW-Authenticate %q, want unknown key", d)
	}
}

// TestJWKSSlowAtStart starts a gateway whose identity provider holds its
// answer to the first fetch: a token that waited longer than wait is
// answered 503 keys-unavailable, and the same token is accepted once the
// provider has answered.
func TestJWKSSlowAtStart(t *testing.T) {
	srv := redistest.Start(t)
	idp := newJWKSServer(t)
	idp.rotate(t, "k1")
	var asked atomic.Int64
	answer := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		select {
		case <-answer:
		case <-r.Context().Done():
			return
		}
		idp.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	up := newUpstream(t)
	g := startGatewayWith(t, srv, `jwt {
			jwks `+front.URL+` {
				wait 100ms
			}
			issuer https://issuer.test/
			audience https://api.test/
		}`, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 10)
	tok := idp.sign(t, "k1", "alice")
	waitFor(t, "the first fetch to reach the provider", func() bool { return asked.Load() > 0 })
	resp, body := g.do(t, "GET", "/x", tok)
	expectKeysUnavailable(t, "a token while the provider has not answered", resp, body)
	close(answer)
	waitAccepted(t, g, tok, "the key set to be fetched once the provider has answered")
	if a := g.account(t, "alice"); a.Charged != 1 {
		t.Errorf("account %+v, want only the accepted request charged", a)
	}
}

// expectKeysUnavailable fails the test unless resp is a 503
// keys-unavailable with Retry-After: 1.
func expectKeysUnavailable(t *testing.T, what string, resp *http.Response, body string) {
	t.Helper()
	expectStatus(t, what, resp, body, http.StatusServiceUnavailable)
	if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:keys-unavailable" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("%s: problem %s, Retry-After %q; want keys-unavailable and 1", what, body, resp.Header.Get("Retry-After"))
	}
}

// waitAccepted polls the gateway with tok until it is accepted, as it is
// once the key set has been fetched.
func waitAccepted(t *testing.T, g *gateway, tok, what string) {
	t.Helper()
	waitFor(t, what, func() bool {
		resp, _ := g.do(t, "GET", "/x", tok)
		return resp.StatusCode == http.StatusOK
	})
}
