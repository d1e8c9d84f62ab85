package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// corrupt raises the held total in an account's hash, past its open holds,
// as a stray write would.
func (g *gateway) corrupt(t *testing.T, account string) {
	t.Helper()
	key := g.prefix + ":{" + base64.RawURLEncoding.EncodeToString([]byte(account)) + "}:acct"
	if err := g.redis.Client(t).HIncrBy(context.Background(), key, "hd", 3).Err(); err != nil {
		t.Fatal(err)
	}
}

// verifyPages walks every page of GET …/verify through get, and returns how
// many accounts it checked and their drift.
func verifyPages(t *testing.T, get func(path string) (*http.Response, string)) (int, []meter.Drift) {
	t.Helper()
	checked, drift := 0, []meter.Drift{}
	cursor := ""
	for range 1000 {
		resp, body := get("/verify?limit=2&cursor=" + cursor)
		expectStatus(t, "verify page", resp, body, http.StatusOK)
		var page meter.CheckPage
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		if page.Drift == nil {
			t.Fatalf("verify page %s: no drift list", body)
		}
		checked += page.Checked
		drift = append(drift, page.Drift...)
		if page.Next == nil {
			return checked, drift
		}
		cursor = *page.Next
	}
	t.Fatal("the verify walk did not end")
	return 0, nil
}

// TestAdminVerify checks accounts through the operator API, on Caddy's admin
// endpoint and in a site, before and after a stray write.
func TestAdminVerify(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate_admin /ops/*
	tollgate 1
	reverse_proxy `+up.Listener.Addr().String(), "signup_bonus 5")
	g.credit(t, "alice", 100)
	for range 3 {
		resp, body := g.do(t, "GET", "/x", token(t, "alice"))
		expectStatus(t, "paid request", resp, body, http.StatusOK)
	}
	g.credit(t, "bob", 7)
	g.credit(t, "carol", 9)
	admin := token(t, "ops", func(c jwt.MapClaims) { c["scope"] = "tollgate:admin" })
	surfaces := map[string]func(method, path string) (*http.Response, string){
		"admin endpoint": func(method, path string) (*http.Response, string) { return g.admin(t, method, path, "") },
		"tollgate_admin": func(method, path string) (*http.Response, string) { return g.do(t, method, "/ops"+path, admin) },
	}

	for name, call := range surfaces {
		get := func(path string) (*http.Response, string) { return call("GET", path) }
		if checked, drift := verifyPages(t, get); checked < 3 || len(drift) != 0 {
			t.Errorf("%s: verify walk checked %d with drift %+v, want 3 accounts and no drift", name, checked, drift)
		}
		resp, body := get("/accounts/alice/verify")
		expectStatus(t, name+": verify alice", resp, body, http.StatusOK)
		if body != `{"account":"alice","whole_ledger":true,"drift":[]}` {
			t.Errorf("%s: verify alice: %s", name, body)
		}
		resp, body = get("/accounts/nobody/verify")
		expectStatus(t, name+": verify an unseen account", resp, body, http.StatusNotFound)
		if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:not-found" {
			t.Errorf("%s: verify an unseen account: %s", name, body)
		}
		for _, path := range []string{"/verify?limit=0", "/verify?limit=1001", "/verify?limit=x", "/verify?cursor=nope"} {
			resp, body := get(path)
			expectStatus(t, name+": GET "+path, resp, body, http.StatusBadRequest)
			if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:invalid-request" {
				t.Errorf("%s: GET %s: %s", name, path, body)
			}
		}
		for _, path := range []string{"/verify", "/accounts/alice/verify"} {
			resp, body := call("POST", path)
			expectStatus(t, name+": POST "+path, resp, body, http.StatusMethodNotAllowed)
			if resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: POST %s: Allow %q, want GET, HEAD", name, path, resp.Header.Get("Allow"))
			}
		}
	}
	if _, err := g.store.Account(context.Background(), meter.Read{Account: "nobody"}); err == nil {
		t.Error("verifying an unseen account created it")
	}

	g.corrupt(t, "bob")
	for name, call := range surfaces {
		get := func(path string) (*http.Response, string) { return call("GET", path) }
		checked, drift := verifyPages(t, get)
		if checked < 3 || len(drift) != 2 || drift[0].Account != "bob" || drift[0].Check != meter.CheckHeld || drift[1].Check != meter.CheckLedger {
			t.Errorf("%s: verify walk after a stray write checked %d with drift %+v, want bob's held and ledger", name, checked, drift)
		}
		resp, body := get("/accounts/bob/verify")
		expectStatus(t, name+": verify bob", resp, body, http.StatusOK)
		var c meter.Check
		if err := json.Unmarshal([]byte(body), &c); err != nil {
			t.Fatal(err)
		}
		if len(c.Drift) != 2 || c.Drift[0].Detail != "held is 3, the open holds sum to 0" {
			t.Errorf("%s: verify bob: %s", name, body)
		}
	}
	resp, body := g.do(t, "GET", "/ops/verify", "")
	expectStatus(t, "verify in a site without a token", resp, body, http.StatusUnauthorized)
}
