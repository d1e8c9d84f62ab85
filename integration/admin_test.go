package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// admin sends a request to the operator API on Caddy's admin endpoint.
func (g *gateway) admin(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, g.Admin+"/tollgate"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAdminAPI(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")

	resp, body := g.admin(t, "GET", "/accounts/alice", "")
	expectStatus(t, "unseen account", resp, body, http.StatusNotFound)
	if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:not-found" {
		t.Errorf("problem %s", body)
	}

	resp, body = g.admin(t, "POST", "/accounts/alice/credit", `{"amount":1000,"id":"order-123","reason":"purchase"}`)
	expectStatus(t, "credit", resp, body, http.StatusOK)
	var credit struct {
		Account  string `json:"account"`
		Balance  int64  `json:"balance"`
		Replayed bool   `json:"replayed"`
		Entry    struct {
			ID     string            `json:"id"`
			Kind   string            `json:"kind"`
			Amount int64             `json:"amount"`
			Detail map[string]string `json:"detail"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(body), &credit); err != nil {
		t.Fatal(err)
	}
	if credit.Account != "alice" || credit.Balance != 1000 || credit.Replayed || credit.Entry.Kind != "credit" ||
		credit.Entry.Amount != 1000 || credit.Entry.Detail["by"] != "admin-endpoint" || credit.Entry.Detail["reason"] != "purchase" {
		t.Errorf("credit answer %s", body)
	}
	resp, body = g.admin(t, "POST", "/accounts/alice/credit", `{"amount":1000,"id":"order-123","reason":"purchase"}`)
	expectStatus(t, "repeated credit", resp, body, http.StatusOK)
	if !strings.Contains(body, `"replayed":true`) || !strings.Contains(body, credit.Entry.ID) {
		t.Errorf("repeated credit: %s, want the first entry replayed", body)
	}
	resp, body = g.admin(t, "POST", "/accounts/alice/credit", `{"amount":999,"id":"order-123","reason":"purchase"}`)
	expectStatus(t, "credit id reused", resp, body, http.StatusConflict)
	resp, body = g.admin(t, "POST", "/accounts/alice/credit", `{"amount":1000,"id":"order-123"}`)
	expectStatus(t, "credit id reused without its reason", resp, body, http.StatusConflict)

	resp, body = g.admin(t, "POST", "/accounts/alice/debit", `{"amount":1001,"id":"fix-1"}`)
	expectStatus(t, "debit below zero", resp, body, http.StatusPaymentRequired)
	resp, body = g.admin(t, "POST", "/accounts/alice/debit", `{"amount":10,"id":"fix-1","reason":"goodwill correction"}`)
	expectStatus(t, "debit", resp, body, http.StatusOK)

	resp, body = g.admin(t, "GET", "/accounts/alice", "")
	expectStatus(t, "account", resp, body, http.StatusOK)
	var acct map[string]any
	if err := json.Unmarshal([]byte(body), &acct); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{"balance": 990, "held": 0, "credited": 1000, "charged": 0, "debited": 10, "refunded": 0} {
		if acct[k] != want {
			t.Errorf("account %s = %v, want %v", k, acct[k], want)
		}
	}
	if acct["account"] != "alice" || acct["created"] == "" {
		t.Errorf("account %s", body)
	}
	// The caller's requests see what the operator credited.
	r, b := g.do(t, "GET", "/x", token(t, "alice"))
	expectStatus(t, "paid request", r, b, http.StatusOK)
	if r.Header.Get("Tollgate-Balance") != "989" {
		t.Errorf("balance after a request: %s, want 989", r.Header.Get("Tollgate-Balance"))
	}

	for _, c := range []struct{ name, body string }{
		{"amount as a string", `{"amount":"100","id":"x"}`},
		{"amount with an exponent", `{"amount":1e3,"id":"x"}`},
		{"amount with a fraction", `{"amount":1.5,"id":"x"}`},
		{"negative amount", `{"amount":-1,"id":"x"}`},
		{"zero amount", `{"amount":0,"id":"x"}`},
		{"leading zero", `{"amount":01,"id":"x"}`},
		{"amount over 2^53-1", `{"amount":9007199254740992,"id":"x"}`},
		{"no amount", `{"id":"x"}`},
		{"no id", `{"amount":1}`},
		{"empty id", `{"amount":1,"id":""}`},
		{"id with a space", `{"amount":1,"id":"a b"}`},
		{"id as a number", `{"amount":1,"id":7}`},
		{"id of 256 bytes", `{"amount":1,"id":"` + strings.Repeat("i", 256) + `"}`},
		{"reason of 257 bytes", `{"amount":1,"id":"x","reason":"` + strings.Repeat("r", 257) + `"}`},
		{"reason with a newline", `{"amount":1,"id":"x","reason":"a\nb"}`},
		{"reason as a number", `{"amount":1,"id":"x","reason":5}`},
		{"unknown field", `{"amount":1,"id":"x","by":"me"}`},
		{"not JSON", `amount=1`},
		{"two objects", `{"amount":1,"id":"x"}{"amount":1,"id":"y"}`},
		{"an array", `[{"amount":1,"id":"x"}]`},
		{"empty body", ``},
		{"body over 64 KiB", `{"amount":1,"id":"x","reason":"` + strings.Repeat(" ", 70<<10) + `"}`},
	} {
		for _, action := range []string{"credit", "debit"} {
			resp, body := g.admin(t, "POST", "/accounts/alice/"+action, c.body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: status %d, want 400; %s", action, c.name, resp.StatusCode, body)
				continue
			}
			if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:invalid-request" {
				t.Errorf("%s %s: problem %s", action, c.name, body)
			}
		}
	}
	if a := g.account(t, "alice"); a.Credited != 1000 || a.Debited != 10 {
		t.Errorf("bad inputs changed the account: %+v", a)
	}

	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/accounts/alice", "GET, HEAD"},
		{"DELETE", "/accounts/alice", "GET, HEAD"},
		{"GET", "/accounts/alice/credit", "POST"},
		{"PUT", "/accounts/alice/debit", "POST"},
	} {
		resp, body := g.admin(t, c.method, c.path, "")
		expectStatus(t, c.method+" "+c.path, resp, body, http.StatusMethodNotAllowed)
		if resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}
	for _, path := range []string{"/accounts/a%20b", "/accounts/..", "/accounts/" + strings.Repeat("a", 129)} {
		resp, body := g.admin(t, "GET", path, "")
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d; %s", path, resp.StatusCode, body)
		}
	}
	resp, body = g.admin(t, "GET", "/nothing", "")
	expectStatus(t, "unknown path", resp, body, http.StatusNotFound)

	// Ids with / | % { } travel percent-encoded and stay apart.
	for i, id := range []string{"auth0|abc", "a/b", "50%", "{x}", "a}:acct"} {
		resp, body := g.admin(t, "POST", "/accounts/"+url.PathEscape(id)+"/credit", `{"amount":`+string(rune('1'+i))+`,"id":"c"}`)
		expectStatus(t, "credit to "+id, resp, body, http.StatusOK)
		if !strings.Contains(body, `"account":`+mustJSON(id)) {
			t.Errorf("credit to %q: %s", id, body)
		}
	}
	for i, id := range []string{"auth0|abc", "a/b", "50%", "{x}", "a}:acct"} {
		if a := g.account(t, id); a.Balance != int64(i+1) {
			t.Errorf("%q: balance %d, want %d", id, a.Balance, i+1)
		}
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAdminLedgerAndList pages an account's ledger through the admin API
// while charges are being added: nothing is skipped or repeated. It also
// walks the account list.
func TestAdminLedgerAndList(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 1000)
	tok := token(t, "alice")
	for range 60 {
		g.do(t, "GET", "/x", tok)
	}
	type page struct {
		Account string `json:"account"`
		Entries []struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		} `json:"entries"`
		Next *string `json:"next"`
	}
	seen := map[string]bool{}
	before := ""
	for {
		resp, body := g.admin(t, "GET", "/accounts/alice/ledger?limit=7&before="+before, "")
		expectStatus(t, "ledger page", resp, body, http.StatusOK)
		var p page
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			if seen[e.ID] {
				t.Fatalf("entry %s seen twice", e.ID)
			}
			seen[e.ID] = true
		}
		g.do(t, "GET", "/x", tok) // a new entry while paging
		if p.Next == nil {
			break
		}
		before = *p.Next
	}
	if len(seen) != 61 {
		t.Errorf("the walk saw %d entries, want 61", len(seen))
	}
	for _, c := range []struct{ path, why string }{
		{"/accounts/alice/ledger?limit=0", "limit 0"},
		{"/accounts/alice/ledger?limit=1001", "limit 1001"},
		{"/accounts/alice/ledger?limit=x", "limit x"},
		{"/accounts/alice/ledger?before=nope", "bad before"},
		{"/accounts?limit=-1", "account list limit"},
	} {
		resp, body := g.admin(t, "GET", c.path, "")
		expectStatus(t, c.why, resp, body, http.StatusBadRequest)
	}
	resp, body := g.admin(t, "GET", "/accounts/nobody/ledger", "")
	expectStatus(t, "ledger of an unseen account", resp, body, http.StatusNotFound)

	for i := range 12 {
		g.credit(t, "acct-"+strconv.Itoa(i), 1)
	}
	listed := map[string]bool{}
	cursor := ""
	for range 100 {
		resp, body := g.admin(t, "GET", "/accounts?limit=5&cursor="+cursor, "")
		expectStatus(t, "account list", resp, body, http.StatusOK)
		var p struct {
			Accounts []string `json:"accounts"`
			Next     *string  `json:"next"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		for _, a := range p.Accounts {
			listed[a] = true
		}
		if p.Next == nil {
			break
		}
		cursor = *p.Next
	}
	if len(listed) != 13 || !listed["alice"] || !listed["acct-11"] {
		t.Errorf("listed %v, want alice and acct-0 to acct-11", listed)
	}
}
