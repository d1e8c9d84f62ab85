package integration

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestAccountFromBasicAuth bills the account an earlier Caddy auth handler
// (basic_auth) identified, with no JWT: the caller's own endpoint works in
// that mode too, and a request that reaches tollgate without an identity is
// a 401.
func TestAccountFromBasicAuth(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g := startGatewayWith(t, srv, "account {http.auth.user.id}", fmt.Sprintf(`handle /open/* {
		tollgate 1
		respond "no identity"
	}
	basic_auth {
		alice %s
	}
	tollgate_account /account/*
	tollgate 2
	reverse_proxy %s`, hash, up.Listener.Addr().String()), "signup_bonus 5")

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:open sesame"))
	resp, body := g.do(t, "GET", "/v1/x", "", "Authorization", basic)
	expectStatus(t, "a request basic_auth let in", resp, body, http.StatusOK)
	if body != "alice" || resp.Header.Get("Tollgate-Charged") != "2" || resp.Header.Get("Tollgate-Balance") != "3" {
		t.Errorf("upstream saw %q; charged %q, balance %q; want alice, 2 and 3", body, resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Balance"))
	}
	resp, body = g.do(t, "GET", "/account/balance", "", "Authorization", basic)
	expectStatus(t, "the caller's balance", resp, body, http.StatusOK)
	if body != `{"account":"alice","balance":3,"held":0}` {
		t.Errorf("balance %s", body)
	}
	resp, body = g.do(t, "GET", "/v1/x", "", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:wrong")))
	expectStatus(t, "a wrong password", resp, body, http.StatusUnauthorized)

	// Where no auth handler ran, there is no identity: a 401, never an
	// anonymous account.
	resp, body = g.do(t, "GET", "/open/x", "")
	expectStatus(t, "a request with no identity", resp, body, http.StatusUnauthorized)
	if a := g.account(t, "alice"); a.Charged != 2 || a.Balance != 3 {
		t.Errorf("account %+v, want 2 charged", a)
	}
}
