package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestShadow tries prices on live traffic with the store unreachable:
// every request is authenticated and priced, nothing is charged, no store
// call is made, and what each would have cost, refund_on included, is
// counted by price line.
func TestShadow(t *testing.T) {
	up := newUpstream(t)
	port, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		store redis redis://127.0.0.1:%d/0
		%s
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /metrics {
		metrics
	}
	@api not path /metrics
	tollgate @api {
		price /shadow/expensive 10
		price /shadow/story {
			request 2
			response_bytes 1 per 4B
		}
		price * 1
		shadow
	}
	reverse_proxy %s
}
`, adminPort, freePort(t), hmacJWT, port, up.Listener.Addr().String())
	if err := load(t, cfg); err != nil {
		t.Fatal(err)
	}
	g := &gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 10 * time.Second}}
	tok := token(t, "shadowed") // the upstream answers with these 8 bytes
	before := scrape(t, g)

	for range 3 {
		resp, body := g.do(t, "GET", "/shadow/expensive", tok)
		expectStatus(t, "a shadow request", resp, body, http.StatusOK)
		if resp.Header.Get("Tollgate-Charged") != "0" || resp.Header.Get("Tollgate-Balance") != "" || resp.Header.Get("Tollgate-Op") != "" {
			t.Errorf("shadow headers: charged %q, balance %q, op %q", resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Balance"), resp.Header.Get("Tollgate-Op"))
		}
	}
	resp, body := g.do(t, "GET", "/shadow/story", tok)
	expectStatus(t, "a shadow byte price", resp, body, http.StatusOK)
	resp, body = g.do(t, "GET", "/fail", tok) // refund_on: it would have cost nothing
	expectStatus(t, "a shadow 500", resp, body, http.StatusInternalServerError)
	g.do(t, "GET", "/other", tok)
	resp, body = g.do(t, "GET", "/shadow/expensive", "")
	expectStatus(t, "no token", resp, body, http.StatusUnauthorized)

	after := scrape(t, g)
	for line, want := range map[string]float64{
		`tollgate_shadow_tokens_total{route="/shadow/expensive"}`: 30,
		`tollgate_shadow_tokens_total{route="/shadow/story"}`:     2 + 2, // 8 bytes at 1 per 4B
		`tollgate_shadow_tokens_total{route="*"}`:                 1,
		`tollgate_requests_total{outcome="shadow"}`:               6,
		`tollgate_requests_total{outcome="store_error"}`:          0,
		`tollgate_store_duration_seconds_count{op="charge"}`:      0,
		`tollgate_store_duration_seconds_count{op="hold"}`:        0,
	} {
		if got := after[line] - before[line]; got != want {
			t.Errorf("%s: %v, want %v", line, got, want)
		}
	}
}
