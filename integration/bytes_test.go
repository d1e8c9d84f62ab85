package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// MiB is a mebibyte.
const MiB = 1 << 20

// newByteUpstream serves /len/<n> as n bytes with a Content-Length, and
// /chunked/<n> as n bytes without one, in 64 KiB writes, each flushed, also
// under /small. Every body byte is 'x'. It counts the requests that reach
// it.
func newByteUpstream(t *testing.T) (addr string, hits func() int64) {
	var n int64
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	addr = httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-mu
		n++
		mu <- struct{}{}
		kind, size, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/small"), "/"), "/")
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
	})
	return addr, func() int64 { <-mu; defer func() { mu <- struct{}{} }(); return n }
}

// get sends an authenticated GET and reads the body as far as it goes. It
// returns the response, the body bytes read, and the read's error.
func (g *gateway) get(t *testing.T, path, tok string) (*http.Response, int64, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp, n, err
}

// settled checks an account once its request has ended: the balance, what
// was charged, and that nothing stays held.
func (g *gateway) settled(t *testing.T, account string, balance, charged int64) {
	t.Helper()
	a := g.account(t, account)
	if a.Balance != balance || a.Charged != charged || a.Held != 0 {
		t.Errorf("account %s: balance %d, charged %d, held %d; want %d, %d and 0", account, a.Balance, a.Charged, a.Held, balance, charged)
	}
}

// lastSettle returns the newest settle entry of an account.
func (g *gateway) lastSettle(t *testing.T, account string) meter.Entry {
	t.Helper()
	page, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meterRead(account), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if e.Kind == meter.KindSettle {
			return e
		}
	}
	t.Fatalf("account %s has no settle entry", account)
	return meter.Entry{}
}

func TestResponseBytes(t *testing.T) {
	srv := redistest.Start(t)
	up, hits := newByteUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price /small/* {
			response_bytes 1 per 1KiB
			hold_block 10KiB
		}
		price * {
			response_bytes 1 per 1MiB
		}
	}
	reverse_proxy `+up, "")

	for _, kind := range []string{"len", "chunked"} {
		t.Run(kind, func(t *testing.T) {
			exact, short, plus, half := kind+"-exact", kind+"-short", kind+"-plus", kind+"-half"

			// A balance for exactly 10 MiB pays for a 10 MiB response, whole.
			g.credit(t, exact, 10)
			resp, n, err := g.get(t, fmt.Sprintf("/%s/%d", kind, 10*MiB), token(t, exact))
			if err != nil || n != 10*MiB || resp.StatusCode != http.StatusOK {
				t.Fatalf("10 MiB for 10: status %d, %d bytes, %v; want all of it", resp.StatusCode, n, err)
			}
			if h := resp.Header; h.Get("Tollgate-Charged") != "0" || h.Get("Tollgate-Held") != "1" || h.Get("Tollgate-Balance") != "9" {
				t.Errorf("headers charged %q held %q balance %q; want 0, 1 and 9", h.Get("Tollgate-Charged"), h.Get("Tollgate-Held"), h.Get("Tollgate-Balance"))
			}
			g.settled(t, exact, 0, 10)
			if e := g.lastSettle(t, exact); e.Amount != 10 || e.Detail.CutOff || e.Op != resp.Header.Get("Tollgate-Op") {
				t.Errorf("settle entry %+v, want 10 and not cut off", e)
			}

			// A balance for 3 MiB: at most 3 MiB arrive, then the connection
			// breaks.
			g.credit(t, short, 3)
			resp, n, err = g.get(t, fmt.Sprintf("/%s/%d", kind, 10*MiB), token(t, short))
			if err == nil || n > 3*MiB || resp.StatusCode != http.StatusOK {
				t.Fatalf("10 MiB for 3: status %d, %d bytes, error %v; want at most 3 MiB and a broken body", resp.StatusCode, n, err)
			}
			waitFor(t, "the cut-off to settle", func() bool { return g.account(t, short).Held == 0 })
			g.settled(t, short, 0, 3)
			if e := g.lastSettle(t, short); e.Amount != 3 || !e.Detail.CutOff {
				t.Errorf("settle entry %+v, want 3 and cut off", e)
			}

			// 1 MiB and 1 byte cost 2.
			g.credit(t, plus, 5)
			_, n, err = g.get(t, fmt.Sprintf("/%s/%d", kind, MiB+1), token(t, plus))
			if err != nil || n != MiB+1 {
				t.Fatalf("1 MiB + 1: %d bytes, %v", n, err)
			}
			g.settled(t, plus, 3, 2)

			// A balance for 1.5 blocks pays for a 1.5-block response.
			g.credit(t, half, 15)
			_, n, err = g.get(t, fmt.Sprintf("/small/%s/%d", kind, 15<<10), token(t, half))
			if err != nil || n != 15<<10 {
				t.Fatalf("1.5 blocks for 1.5 blocks: %d bytes, %v; want all 15 KiB", n, err)
			}
			g.settled(t, half, 0, 15)
		})
	}

	// An unpayable request is a 402 before any upstream work.
	before := hits()
	resp, body := g.do(t, "GET", "/len/10", token(t, "broke"))
	expectStatus(t, "a response price with no balance", resp, body, http.StatusPaymentRequired)
	if p := decodeProblem(t, resp, body); p.Price == nil || *p.Price != 1 {
		t.Errorf("402 problem %s, want price 1 (one pricing unit)", body)
	}
	if hits() != before {
		t.Error("the 402 reached the upstream")
	}
	g.settled(t, "broke", 0, 0)
}
