package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// runOutBalances are balances that are not whole blocks of 4 tokens, but
// for 3, which is less than one.
var runOutBalances = []int64{3, 5, 6, 9, 13, 100}

// runOutBody is the size of every upload and download of
// TestBalanceRunsOutMidBlock: more than the largest balance pays for.
const runOutBody = 300_000

// runOutSite prices uploads, downloads and WebSockets at 1 token a KiB, in
// blocks of 4 KiB.
const runOutSite = `tollgate {
		price /up {
			request_bytes 1 per 1KiB
			hold_block 4KiB
		}
		price /down/* {
			response_bytes 1 per 1KiB
			hold_block 4KiB
		}
		price /echo {
			request_bytes 1 per 1KiB
			response_bytes 1 per 1KiB
			hold_block 4KiB
		}
	}
	reverse_proxy `

// runOutUpstream reads /up bodies whole and records, per account, how many
// body bytes reached it; serves /down/len/<n> (with a Content-Length) and
// /down/chunked/<n> (flushed 64 KiB writes) as n bytes; and echoes
// WebSocket messages on /echo.
func runOutUpstream(t *testing.T) (addr string, received func(account string) int64) {
	var mu sync.Mutex
	got := map[string]int64{}
	addr = httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		account := r.Header.Get("Tollgate-Account")
		switch kind, size, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/down/"), "/"); {
		case r.URL.Path == "/up":
			n, _ := io.Copy(io.Discard, r.Body)
			mu.Lock()
			got[account] += n
			mu.Unlock()
		case r.URL.Path == "/echo":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil || c.Write(r.Context(), typ, msg) != nil {
					return
				}
			}
		default:
			total, err := strconv.ParseInt(size, 10, 64)
			if err != nil {
				http.Error(w, "bad size", http.StatusBadRequest)
				return
			}
			if kind == "len" {
				w.Header().Set("Content-Length", size)
			}
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for total > 0 {
				c := chunk[:min(total, int64(len(chunk)))]
				if _, err := w.Write(c); err != nil {
					return
				}
				if kind == "chunked" {
					http.NewResponseController(w).Flush()
				}
				total -= int64(len(c))
			}
		}
	})
	return addr, func(account string) int64 {
		mu.Lock()
		defer mu.Unlock()
		return got[account]
	}
}

// TestBalanceRunsOutMidBlock spends balances that end inside a block, where
// the store grants what is left, less than the block asked for. A chunked
// upload ends in a 402, a download and a WebSocket in a cut-off, never in a
// 503; each charges what passed, and holds nothing afterwards.
func TestBalanceRunsOutMidBlock(t *testing.T) {
	srv := redistest.Start(t)
	up, received := runOutUpstream(t)
	g := startGateway(t, srv, runOutSite+up, "")

	runOutSweep(t, g, "upload", func(t *testing.T, account string, balance int64) {
		resp, body := g.postChunked(t, "/up", token(t, account), make([]byte, runOutBody))
		expectStatus(t, "an upload past the balance", resp, body, http.StatusPaymentRequired)
		p := decodeProblem(t, resp, body)
		if p.Type != "urn:tollgate:problem:insufficient-balance" || p.Balance == nil || *p.Balance != 0 || p.Price == nil || *p.Price != 4 {
			t.Errorf("problem %s, want insufficient-balance with balance 0 and price 4", body)
		}
		if h := resp.Header; h.Get("Tollgate-Charged") != strconv.FormatInt(balance, 10) || h.Get("Retry-After") != "" {
			t.Errorf("Tollgate-Charged %q, Retry-After %q; want %d and none", h.Get("Tollgate-Charged"), h.Get("Retry-After"), balance)
		}
		if n := received(account); n > balance<<10 {
			t.Errorf("the upstream got %d bytes, more than the %d KiB paid for", n, balance)
		}
		g.settled(t, account, 0, balance)
	})

	for _, kind := range []string{"len", "chunked"} {
		runOutSweep(t, g, "download-"+kind, func(t *testing.T, account string, balance int64) {
			resp, n, err := g.get(t, fmt.Sprintf("/down/%s/%d", kind, runOutBody), token(t, account))
			if resp.StatusCode != http.StatusOK || err == nil || n != balance<<10 {
				t.Errorf("status %d, %d bytes, error %v; want 200, the %d KiB paid for, and a broken body", resp.StatusCode, n, err, balance)
			}
			waitFor(t, "the cut-off to settle", func() bool { return g.account(t, account).Held == 0 })
			g.settled(t, account, 0, balance)
		})
	}

	runOutSweep(t, g, "websocket", func(t *testing.T, account string, balance int64) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp := dialWS(t, ctx, g.URL, token(t, account))
		defer c.CloseNow()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("the upgrade got %d, want 101", resp.StatusCode)
		}
		// Each echo costs nearly a token each way, so the balance runs out
		// within as many echoes as it has tokens.
		msg := bytes.Repeat([]byte("m"), wsMessage)
		var echoed int64
		err := echo(ctx, c, msg)
		for ; err == nil && echoed < balance; err = echo(ctx, c, msg) {
			echoed++
		}
		if err == nil || ctx.Err() != nil {
			t.Fatalf("%d echoes went through, error %v (context %v); want a cut-off", echoed, err, ctx.Err())
		}
		c.CloseNow()
		waitFor(t, "the cut session to settle", func() bool { return g.account(t, account).Held == 0 })
		a := g.account(t, account)
		// What passed is the echoes that came back, and at most the one
		// that was cut off.
		least := (echoed*wsClientFrame+1023)/1024 + (echoed*wsServerFrame+1023)/1024
		most := ((echoed+1)*wsClientFrame+1023)/1024 + ((echoed+1)*wsServerFrame+1023)/1024
		if a.Charged+a.Balance != balance || a.Charged < least || a.Charged > most {
			t.Errorf("charged %d, balance %d; want them to add up to %d, with %d to %d charged for %d echoes", a.Charged, a.Balance, balance, least, most, echoed)
		}
	})
}

// runOutSweep runs one case of TestBalanceRunsOutMidBlock on g for each
// of runOutBalances, on a fresh account credited with it, and checks that
// the case's settle recorded a cut-off.
func runOutSweep(t *testing.T, g *gateway, name string, run func(t *testing.T, account string, balance int64)) {
	t.Run(name, func(t *testing.T) {
		for _, balance := range runOutBalances {
			t.Run(strconv.FormatInt(balance, 10), func(t *testing.T) {
				account := fmt.Sprintf("%s-%d", name, balance)
				g.credit(t, account, balance)
				run(t, account, balance)
				if e := g.lastSettle(t, account); !e.Detail.CutOff {
					t.Errorf("settle entry %+v, want cut off", e)
				}
			})
		}
	})
}
