package integration

import (
	"net/http"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestPreflightPassesFree lets a CORS preflight through unauthenticated and
// free; any other OPTIONS is an ordinary request.
func TestPreflightPassesFree(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	resp, body := g.do(t, "OPTIONS", "/x", "", "Access-Control-Request-Method", "POST", "Origin", "https://app.test")
	expectStatus(t, "preflight", resp, body, http.StatusOK)
	if up.hits.Load() != 1 {
		t.Errorf("the preflight did not reach the upstream")
	}
	resp, body = g.do(t, "OPTIONS", "/x", "")
	expectStatus(t, "plain OPTIONS", resp, body, http.StatusUnauthorized)
}

// TestPricedOnce runs a request through two tollgate handlers: the first one
// executed prices it, and the other passes it on.
func TestPricedOnce(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate 3
	route /v1/* {
		tollgate 5
		reverse_proxy `+up.Listener.Addr().String()+`
	}
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)
	resp, body := g.do(t, "GET", "/v1/x", token(t, "alice"))
	expectStatus(t, "request through two handlers", resp, body, http.StatusOK)
	if resp.Header.Get("Tollgate-Charged") != "3" {
		t.Errorf("charged %q, want 3 from the first handler", resp.Header.Get("Tollgate-Charged"))
	}
	if a := g.account(t, "alice"); a.Charged != 3 {
		t.Errorf("charged %d in all, want 3", a.Charged)
	}
}

// TestStoreErrorAllow forwards unbilled when the store is down under
// on_store_error allow.
func TestStoreErrorAllow(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "on_store_error allow")
	tok := token(t, "alice")
	srv.Stop()
	resp, body := g.do(t, "GET", "/x", tok)
	expectStatus(t, "store down under allow", resp, body, http.StatusOK)
	if resp.Header.Get("Tollgate-Charged") != "0" || resp.Header.Get("Tollgate-Balance") != "" {
		t.Errorf("unbilled answer: charged %q balance %q", resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Balance"))
	}
	if up.hits.Load() != 1 {
		t.Error("the request was not forwarded")
	}
	srv.Restart(t)
	waitFor(t, "the unknown charge to be cancelled", func() bool {
		a, err := g.store.Account(t.Context(), meterRead("alice"))
		return err != nil || a.Charged == a.Refunded
	})
}
