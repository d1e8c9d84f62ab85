package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestCallerEndpoints serves callers their own balance and ledger, never
// metered and never another account's, whatever the path or query.
func TestCallerEndpoints(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate 1
	tollgate_account /account/*
	reverse_proxy `+up.Listener.Addr().String(), "signup_bonus 7")
	g.credit(t, "bob", 500)
	tok := token(t, "alice")

	resp, body := g.do(t, "GET", "/account/balance", tok)
	expectStatus(t, "balance", resp, body, http.StatusOK)
	if body != `{"account":"alice","balance":7,"held":0}` {
		t.Errorf("balance %s, want alice's signup bonus", body)
	}
	g.do(t, "GET", "/paid", tok)
	resp, body = g.do(t, "GET", "/account/ledger?limit=10", tok)
	expectStatus(t, "ledger", resp, body, http.StatusOK)
	var page struct {
		Account string `json:"account"`
		Entries []struct {
			Kind   string `json:"kind"`
			Amount int64  `json:"amount"`
		} `json:"entries"`
		Next *string `json:"next"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	if page.Account != "alice" || len(page.Entries) != 2 || page.Entries[0].Kind != "charge" || page.Entries[1].Kind != "credit" || page.Next != nil {
		t.Errorf("ledger %s, want alice's charge and bonus", body)
	}
	if a := g.account(t, "alice"); a.Charged != 1 {
		t.Errorf("alice charged %d: the caller endpoints were metered", a.Charged)
	}

	for _, path := range []string{
		"/account/bob/balance",
		"/account/../account/balance",
		"/account/%2e%2e/bob/balance",
		"/account/bob%2Fbalance",
		"/account/balance?account=bob",
		"/account/balance?sub=bob&account_id=bob",
		"/account/x/../balance",
	} {
		resp, body := g.do(t, "GET", path, tok)
		if strings.Contains(body, "bob") || strings.Contains(body, "500") {
			t.Errorf("%s shows bob's account: %s", path, body)
		}
		// What the caller endpoint answers is alice's; a path it does not
		// match goes on to the paid API.
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(body, "{") && !strings.Contains(body, `"account":"alice"`) {
			t.Errorf("%s: %s", path, body)
		}
	}

	for _, method := range []string{"POST", "PUT", "DELETE"} {
		resp, body := g.do(t, method, "/account/balance", tok)
		expectStatus(t, method+" balance", resp, body, http.StatusMethodNotAllowed)
		if resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: Allow %q", method, resp.Header.Get("Allow"))
		}
	}
	resp, body = g.do(t, "GET", "/account/", "")
	expectStatus(t, "the dashboard", resp, body, http.StatusOK)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || strings.Contains(body, "alice") {
		t.Errorf("the dashboard: %s, holding %q", resp.Header.Get("Content-Type"), body)
	}
	resp, body = g.do(t, "GET", "/account/nothing-here", tok)
	expectStatus(t, "an unknown resource", resp, body, http.StatusNotFound)
	if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:not-found" {
		t.Errorf("problem %s", body)
	}
	resp, body = g.do(t, "GET", "/account/balance", "")
	expectStatus(t, "no token", resp, body, http.StatusUnauthorized)
	resp, body = g.do(t, "GET", "/account/ledger?limit=5000", tok)
	expectStatus(t, "bad limit", resp, body, http.StatusBadRequest)
	if a := g.account(t, "bob"); a.Balance != 500 {
		t.Errorf("bob's account changed: %+v", a)
	}
}

// TestPricesAndTopup shows callers the site's price lines and where to buy
// more, gives that address in every 402, and keeps account answers out of
// caches.
func TestPricesAndTopup(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate_account /account/*
	tollgate {
		price /v1/expensive 10
		price /v1/story {
			response_bytes 1 per 100B
		}
		price * 1
	}
	reverse_proxy `+up.Listener.Addr().String(), "topup_url https://app.example/buy")
	tok := token(t, "pricey")

	resp, body := g.do(t, "GET", "/account/prices", tok)
	expectStatus(t, "prices", resp, body, http.StatusOK)
	want := `{"prices":[{"route":"/v1/expensive","amount":10},{"route":"/v1/story","compound":{"response_bytes":"1 per 100B"}},{"route":"*","amount":1}],"topup_url":"https://app.example/buy"}`
	if body != want {
		t.Errorf("prices:\n%s\nwant\n%s", body, want)
	}
	for _, path := range []string{"/account/prices", "/account/balance", "/account/ledger", "/account/usage"} {
		resp, body := g.do(t, "GET", path, tok)
		expectStatus(t, path, resp, body, http.StatusOK)
		if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Vary") != "Authorization, Cookie" {
			t.Errorf("%s: Cache-Control %q, Vary %q", path, resp.Header.Get("Cache-Control"), resp.Header.Get("Vary"))
		}
	}

	resp, body = g.post(t, "/account/checkout", tok, `{"bundle":"starter"}`, "Content-Type", "application/json")
	expectStatus(t, "checkout without stripe", resp, body, http.StatusNotFound)

	for _, path := range []string{"/v1/expensive", "/v1/story", "/other"} {
		resp, body := g.do(t, "GET", path, tok)
		expectStatus(t, path+" without tokens", resp, body, http.StatusPaymentRequired)
		var p struct {
			TopupURL string `json:"topup_url"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.TopupURL != "https://app.example/buy" {
			t.Errorf("%s: the 402 %s does not say where to buy more", path, body)
		}
	}
}
