package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestAdminDirective serves the operator API in a site to tokens with the
// tollgate:admin scope and the admin audience, and records who changed what.
func TestAdminDirective(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate_admin /ops/*
	tollgate 1
	reverse_proxy `+up.Listener.Addr().String(), "")
	// Without admin_audience, admin tokens carry the gateway's audience.
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	admin := token(t, "ops-1", set("scope", "openid tollgate:admin"))
	adminArray := token(t, "ops-2", set("scope", []string{"tollgate:admin"}))

	credit := func(tok, id string) (*http.Response, string) {
		return post(t, g.URL+"/ops/accounts/alice/credit", tok, `{"amount":10,"id":"`+id+`"}`)
	}
	for _, c := range []struct {
		name, token string
		status      int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a caller's token", token(t, "alice"), http.StatusForbidden},
		{"another scope", token(t, "x", set("scope", "tollgate:read")), http.StatusForbidden},
		{"scp when scope_claim is scope", token(t, "x", set("scp", []string{"tollgate:admin"})), http.StatusForbidden},
		{"a bad token", "x.y.z", http.StatusUnauthorized},
	} {
		resp, body := credit(c.token, "refused")
		expectStatus(t, c.name, resp, body, c.status)
		if c.status == http.StatusForbidden && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	resp, body := credit(admin, "a1")
	expectStatus(t, "the string scope", resp, body, http.StatusOK)
	if !strings.Contains(body, `"by":"ops-1"`) {
		t.Errorf("credit %s, want by ops-1", body)
	}
	resp, body = credit(adminArray, "a2")
	expectStatus(t, "the array scope", resp, body, http.StatusOK)
	if !strings.Contains(body, `"by":"ops-2"`) {
		t.Errorf("credit %s, want by ops-2", body)
	}
	resp, body = g.do(t, "GET", "/ops/accounts/alice", admin)
	expectStatus(t, "account through the site", resp, body, http.StatusOK)
	var a map[string]any
	_ = json.Unmarshal([]byte(body), &a)
	if a["balance"] != float64(20) {
		t.Errorf("account %s, want balance 20", body)
	}
	resp, body = g.do(t, "GET", "/ops/nothing", admin)
	expectStatus(t, "no accounts segment", resp, body, http.StatusNotFound)
	if a := g.account(t, "alice"); a.Charged != 0 {
		t.Errorf("the operator API was metered: %+v", a)
	}

}

// post sends a POST with a token and a body, and returns the answer.
func post(t *testing.T, url, tok, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestAdminAudience requires admin_audience of admin tokens: a caller's token
// that carries the admin scope is refused, even right after the gateway
// accepted it.
func TestAdminAudience(t *testing.T) {
	port := freePort(t)
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	tollgate {
		jwt {
			hmac_secret %s
			issuer https://issuer.test/
			audience https://api.test/
			admin_audience https://ops.test/
			scope_claim scp
		}
		signup_bonus 5
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	tollgate_admin /ops/*
	tollgate 1
	respond ok
}
`, secret, port)
	if err := load(t, cfg); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	set := func(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
	caller := token(t, "mallory", set("scp", []string{"tollgate:admin"}))
	g := &gateway{URL: url, client: http.DefaultClient}
	resp, body := g.do(t, "GET", "/x", caller)
	expectStatus(t, "the caller's paid request", resp, body, http.StatusOK)
	resp, body = post(t, url+"/ops/accounts/mallory/credit", caller, `{"amount":1000,"id":"x"}`)
	expectStatus(t, "a caller's token with the admin scope", resp, body, http.StatusForbidden)
	ops := token(t, "ops", set("aud", "https://ops.test/"), set("scp", []string{"tollgate:admin"}))
	resp, body = post(t, url+"/ops/accounts/mallory/credit", ops, `{"amount":1000,"id":"x"}`)
	expectStatus(t, "an admin token", resp, body, http.StatusOK)
	opsScope := token(t, "ops", set("aud", "https://ops.test/"), set("scope", "tollgate:admin"))
	resp, body = post(t, url+"/ops/accounts/mallory/credit", opsScope, `{"amount":1,"id":"y"}`)
	expectStatus(t, "scope when scope_claim is scp", resp, body, http.StatusForbidden)
}
