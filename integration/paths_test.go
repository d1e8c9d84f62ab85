package integration

import (
	"context"
	"io"
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

// TestRefundOnError refunds a response the upstream aborts after its
// headers, under refund_on error.
func TestRefundOnError(t *testing.T) {
	srv := redistest.Start(t)
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	g := startGateway(t, srv, `tollgate {
		price * 4
		refund_on error
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 10)
	req, _ := http.NewRequest("GET", g.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	if resp, err := g.client.Do(req); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("the aborted response was read whole")
		}
	}
	waitFor(t, "the aborted response's refund", func() bool {
		a := g.account(t, "alice")
		return a.Charged == 4 && a.Refunded == 4 && a.Balance == 10
	})
}

// TestClientGone leaves while the upstream is still answering: the charge
// stands, as the upstream did the work, and nothing is refunded twice or
// panics.
func TestClientGone(t *testing.T) {
	srv := redistest.Start(t)
	arrived := make(chan struct{})
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the proxy cancels when the client leaves
	})
	g := startGateway(t, srv, `tollgate {
		price * 4
		refund_on 4xx 5xx
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 10)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", g.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	done := make(chan error, 1)
	go func() {
		resp, err := g.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request finished though its client left")
	}
	// The gateway answers others, and the charge stands.
	resp, body := g.do(t, "GET", "/health", "")
	expectStatus(t, "next request", resp, body, http.StatusUnauthorized)
	if a := g.account(t, "alice"); a.Charged != 4 || a.Refunded != 0 || a.Balance != 6 {
		t.Errorf("account %+v, want the charge of 4 standing", a)
	}
}
