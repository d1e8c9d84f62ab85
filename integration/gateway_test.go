package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// problemBody is the problem+json Tollgate answers with.
type problemBody struct {
	Type    string `json:"type"`
	Status  int    `json:"status"`
	Balance *int64 `json:"balance"`
	Price   *int64 `json:"price"`
}

func decodeProblem(t *testing.T, resp *http.Response, body string) problemBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q, want application/problem+json", ct)
	}
	var p problemBody
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p
}

func TestUnauthorized(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"iss": "https://issuer.test/", "aud": "https://api.test/"}).SignedString(rsaKey)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"iss": "https://issuer.test/", "aud": "https://api.test/"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"iss": "https://issuer.test/", "aud": "https://api.test/"}).SignedString([]byte("another-secret-0123456789-abcdefgh"))
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	drop := func(k string) func(jwt.MapClaims) { return func(c jwt.MapClaims) { delete(c, k) } }

	for _, c := range []struct {
		name, token, description string
		header                   []string
	}{
		{name: "no token"},
		{name: "basic auth", header: []string{"Authorization", "Basic YWxpY2U6cGFzcw=="}},
		{name: "token in the query string", header: []string{"X-Ignored", "x"}},
		{name: "alg none", token: none, description: "algorithm not allowed"},
		{name: "RS256 not allowed", token: rs256, description: "algorithm not allowed"},
		{name: "wrong key", token: wrongKey, description: "invalid signature"},
		{name: "expired", token: token(t, "alice", set("exp", time.Now().Add(-time.Hour).Unix())), description: "token expired"},
		{name: "no exp", token: token(t, "alice", drop("exp")), description: "token has no expiry"},
		{name: "wrong issuer", token: token(t, "alice", set("iss", "https://evil.test/")), description: "wrong issuer"},
		{name: "wrong audience", token: token(t, "alice", set("aud", "https://other.test/")), description: "wrong audience"},
		{name: "nbf in the future", token: token(t, "alice", set("nbf", time.Now().Add(time.Hour).Unix())), description: "token not yet valid"},
		{name: "over 8 KiB", token: token(t, "alice", set("pad", strings.Repeat("x", 8<<10))), description: "token too large"},
		{name: "bad account id", token: token(t, "a b"), description: "bad account id"},
		{name: "account id ..", token: token(t, ".."), description: "bad account id"},
		{name: "no account", token: token(t, "alice", drop("sub")), description: "bad account id"},
		{name: "malformed", token: "not.a.jwt", description: "malformed token"},
		{name: "two authorization headers", token: token(t, "alice"), header: []string{"Authorization", "Bearer " + token(t, "alice")}, description: "malformed token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/x"
			if c.name == "token in the query string" {
				path = "/x?access_token=" + token(t, "alice")
			}
			resp, body := g.do(t, "GET", path, c.token, c.header...)
			expectStatus(t, c.name, resp, body, http.StatusUnauthorized)
			want := `Bearer realm="tollgate"`
			if c.description != "" {
				want += `, error="invalid_token", error_description="` + c.description + `"`
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
			if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:invalid-token" || p.Status != 401 {
				t.Errorf("problem %+v", p)
			}
			if c.token != "" && strings.Contains(body, c.token) {
				t.Error("the body echoes the token")
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
	if a := g.account(t, "alice"); a.Charged != 0 {
		t.Errorf("refused requests charged %d", a.Charged)
	}
}

func TestPaidAndPaymentRequired(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 3\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 10)
	tok := token(t, "alice")

	for i, want := range []int64{7, 4, 1} {
		resp, body := g.do(t, "GET", "/v1/x", tok, "Tollgate-Account", "mallory", "Tollgate_Account", "mallory", "tollgate-charged", "0")
		expectStatus(t, "paid request", resp, body, http.StatusOK)
		if body != "alice" {
			t.Errorf("the upstream saw account %q, want alice", body)
		}
		h := resp.Header
		if h.Get("Tollgate-Charged") != "3" || h.Get("Tollgate-Balance") != fmt.Sprint(want) || len(h.Get("Tollgate-Op")) != 34 {
			t.Errorf("request %d: headers charged %q balance %q op %q, want 3, %d and an op", i, h.Get("Tollgate-Charged"), h.Get("Tollgate-Balance"), h.Get("Tollgate-Op"), want)
		}
		if v := h.Values("Tollgate-Balance"); len(v) != 1 {
			t.Errorf("Tollgate-Balance values %q: the upstream's was not dropped", v)
		}
		seen := up.lastHeader()
		for name := range seen {
			if strings.HasPrefix(strings.ToLower(name), "tollgate") && name != "Tollgate-Account" {
				t.Errorf("the upstream got the client's %s header", name)
			}
		}
		if v := seen.Values("Tollgate-Account"); len(v) != 1 || v[0] != "alice" {
			t.Errorf("the upstream got Tollgate-Account %q, want only alice", v)
		}
	}

	hits := up.hits.Load()
	resp, body := g.do(t, "GET", "/v1/x", tok)
	expectStatus(t, "request above the balance", resp, body, http.StatusPaymentRequired)
	p := decodeProblem(t, resp, body)
	if p.Type != "urn:tollgate:problem:insufficient-balance" || p.Balance == nil || *p.Balance != 1 || p.Price == nil || *p.Price != 3 {
		t.Errorf("402 problem %s, want balance 1 and price 3", body)
	}
	if resp.Header.Get("Tollgate-Charged") != "0" || resp.Header.Get("Tollgate-Balance") != "1" {
		t.Errorf("402 headers charged %q balance %q", resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Balance"))
	}
	if up.hits.Load() != hits {
		t.Error("the 402 reached the upstream")
	}
	if a := g.account(t, "alice"); a.Balance != 1 || a.Charged != 9 {
		t.Errorf("account %+v, want balance 1 and 9 charged", a)
	}
}

func TestPriceLines(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `@chat path /v1/chat
	tollgate {
		price @chat 5
		price /v1/* 2
		price /v2/exact 7
	}
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)
	tok := token(t, "alice")
	for _, c := range []struct {
		path    string
		charged string
	}{
		{"/v1/chat", "5"},
		{"/v1/other", "2"},
		{"/v2/exact", "7"},
		{"/v2/exact/more", "0"},
		{"/free", "0"},
	} {
		resp, body := g.do(t, "GET", c.path, tok)
		expectStatus(t, c.path, resp, body, http.StatusOK)
		if got := resp.Header.Get("Tollgate-Charged"); got != c.charged {
			t.Errorf("%s: charged %q, want %s", c.path, got, c.charged)
		}
		if free := c.charged == "0"; free != (resp.Header.Get("Tollgate-Balance") == "") {
			t.Errorf("%s: Tollgate-Balance %q", c.path, resp.Header.Get("Tollgate-Balance"))
		}
	}
	if a := g.account(t, "alice"); a.Charged != 14 {
		t.Errorf("charged %d, want 14", a.Charged)
	}
	// A free request never creates an account.
	resp, body := g.do(t, "GET", "/free", token(t, "newcomer"))
	expectStatus(t, "free request", resp, body, http.StatusOK)
	if _, err := g.store.Account(t.Context(), meter.Read{Account: "newcomer"}); err == nil {
		t.Error("a free request created the account")
	}
}

func TestRefunds(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	dead := freePort(t)
	g := startGateway(t, srv, fmt.Sprintf(`header {
		defer
		X-Charged {http.vars.tollgate.charged}
		X-Account {http.auth.user.id}
	}
	handle /dead/* {
		reverse_proxy 127.0.0.1:%d
	}
	tollgate 4
	reverse_proxy %s`, dead, up.Listener.Addr().String()), "")
	g.credit(t, "alice", 10)
	tok := token(t, "alice")

	resp, body := g.do(t, "GET", "/ok", tok)
	expectStatus(t, "paid request", resp, body, http.StatusOK)
	if resp.Header.Get("X-Charged") != "4" || resp.Header.Get("X-Account") != "alice" {
		t.Errorf("placeholders: charged %q account %q, want 4 and alice", resp.Header.Get("X-Charged"), resp.Header.Get("X-Account"))
	}
	resp, body = g.do(t, "GET", "/fail", tok)
	expectStatus(t, "upstream 500", resp, body, http.StatusInternalServerError)
	if resp.Header.Get("X-Charged") != "0" {
		t.Errorf("{http.vars.tollgate.charged} after a refund: %q, want 0", resp.Header.Get("X-Charged"))
	}
	if resp.Header.Get("Tollgate-Charged") != "0" || resp.Header.Get("Tollgate-Balance") != "6" {
		t.Errorf("upstream 500: charged %q balance %q, want 0 and 6", resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Balance"))
	}
	resp, body = g.do(t, "GET", "/dead/x", tok)
	expectStatus(t, "unreachable upstream", resp, body, http.StatusBadGateway)
	if resp.Header.Get("Tollgate-Charged") != "0" {
		t.Errorf("unreachable upstream: charged %q, want 0", resp.Header.Get("Tollgate-Charged"))
	}
	if a := g.account(t, "alice"); a.Balance != 6 || a.Charged != 12 || a.Refunded != 8 {
		t.Errorf("account %+v, want three charges of 4, two refunded", a)
	}
}

func TestExactConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 2\nreverse_proxy "+up.Listener.Addr().String(), "")
	const k = 137
	g.credit(t, "alice", 2*k)
	tok := token(t, "alice")
	paid, refused := burst(t, tok, 1000, g.URL)
	if paid != k || refused != 1000-k || up.hits.Load() != k {
		t.Errorf("%d paid, %d refused, %d upstream hits; want %d, %d, %d", paid, refused, up.hits.Load(), k, 1000-k, k)
	}
	if a := g.account(t, "alice"); a.Balance != 0 || a.Charged != 2*k {
		t.Errorf("account %+v, want balance 0 and %d charged", a, 2*k)
	}
}

func TestStoreDown(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price /paid 1
	}
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 10)
	tok := token(t, "alice")
	resp, body := g.do(t, "GET", "/paid", tok)
	expectStatus(t, "paid request", resp, body, http.StatusOK)

	t.Run("frozen", func(t *testing.T) {
		hits := up.hits.Load()
		srv.Pause(t)
		resp, body := g.do(t, "GET", "/paid", tok)
		srv.Resume(t)
		expectStatus(t, "frozen redis", resp, body, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Tollgate-Balance") != "" {
			t.Errorf("503 headers: Retry-After %q, Tollgate-Balance %q", resp.Header.Get("Retry-After"), resp.Header.Get("Tollgate-Balance"))
		}
		if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:store-unavailable" {
			t.Errorf("problem %s", body)
		}
		if up.hits.Load() != hits {
			t.Error("the 503 reached the upstream")
		}
	})
	t.Run("killed", func(t *testing.T) {
		srv.Stop()
		hits := up.hits.Load()
		resp, body := g.do(t, "GET", "/paid", tok)
		expectStatus(t, "redis down", resp, body, http.StatusServiceUnavailable)
		if up.hits.Load() != hits {
			t.Error("the 503 reached the upstream")
		}
		resp, body = g.do(t, "GET", "/free", tok)
		expectStatus(t, "free request with redis down", resp, body, http.StatusOK)
		if resp.Header.Get("Tollgate-Charged") != "0" {
			t.Errorf("free request: charged %q", resp.Header.Get("Tollgate-Charged"))
		}
		resp, body = g.admin(t, "POST", "/accounts/alice/credit", `{"amount":5,"id":"while-down"}`)
		expectStatus(t, "a credit with redis down", resp, body, http.StatusServiceUnavailable)
		if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:store-unavailable" || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("credit with redis down: %s", body)
		}
		srv.Restart(t)
	})
	// Nobody paid for a 503: the cancels land once Redis is back.
	waitFor(t, "the charges of the 503s to be cancelled", func() bool {
		a := g.account(t, "alice")
		return a.Charged-a.Refunded == 1 && a.Balance == 9
	})
}

func TestHandleErrorsRestyles402(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate 5
	reverse_proxy `+up.Listener.Addr().String()+`
	handle_errors {
		header Content-Type text/plain
		respond "custom {err.status_code}: {http.vars.tollgate.problem}"
	}`, "")
	resp, body := g.do(t, "GET", "/x", token(t, "alice"))
	expectStatus(t, "402 through handle_errors", resp, body, http.StatusPaymentRequired)
	if !strings.HasPrefix(body, "custom 402: {") || !strings.Contains(body, `"price":5`) {
		t.Errorf("body %q, want the restyled problem", body)
	}
}

// burst sends n requests, 32 at a time, spread over the gateways at urls,
// and counts the answers paid (200) and refused (402); any other answer fails
// the test.
func burst(t *testing.T, tok string, n int, urls ...string) (paid, refused int64) {
	t.Helper()
	var p, r atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, _ := http.NewRequest("GET", urls[i%len(urls)]+"/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				p.Add(1)
			case http.StatusPaymentRequired:
				r.Add(1)
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	return p.Load(), r.Load()
}

// waitFor polls cond, bounded, for what happens in the background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
