package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
	resp := g.startGet(t, context.Background(), path, tok)
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

// gatedUpstream serves total bytes of 'x': the first bytes at once, flushed,
// then the rest once open is closed. With length it sends a Content-Length.
// Closing the test's upstream ends a response still waiting.
func gatedUpstream(t *testing.T, first, total int64, length bool) (addr string, open chan struct{}) {
	open = make(chan struct{})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	addr = httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if length {
			w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
		}
		if _, err := w.Write(bytes.Repeat([]byte("x"), int(first))); err != nil {
			return
		}
		http.NewResponseController(w).Flush()
		select {
		case <-open:
		case <-stop:
			return
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), int(total-first)))
	})
	return addr, open
}

// startGet sends an authenticated GET and returns its response, with the
// body still to read.
func (g *gateway) startGet(t *testing.T, ctx context.Context, path, tok string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestStoreFailsMidStream takes Redis away while a response needs its next
// block: under deny the response is cut off at what is held, under allow the
// rest goes unbilled; either way the settle lands once Redis is back.
func TestStoreFailsMidStream(t *testing.T) {
	for _, mode := range []string{"deny", "allow"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			up, open := gatedUpstream(t, 2*MiB, 10*MiB, false)
			g := startGateway(t, srv, `handle /metrics {
				metrics
			}
			@api not path /metrics
			tollgate @api {
				price * {
					response_bytes 1 per 1MiB
				}
			}
			reverse_proxy `+up, "on_store_error "+mode)
			g.credit(t, "alice", 10)
			before := scrape(t, g)
			resp := g.startGet(t, context.Background(), "/x", token(t, "alice"))
			if _, err := io.ReadFull(resp.Body, make([]byte, 2*MiB)); err != nil {
				t.Fatal(err)
			}
			// The first two blocks are held; the third needs Redis.
			srv.Pause(t)
			close(open)
			n, err := io.Copy(io.Discard, resp.Body)
			srv.Resume(t)
			if mode == "deny" && (err == nil || n != 0) {
				t.Errorf("deny: %d more bytes, error %v; want none and a broken body", n, err)
			}
			if mode == "allow" && (err != nil || n != 8*MiB) {
				t.Errorf("allow: %d more bytes, error %v; want the other 8 MiB", n, err)
			}
			waitFor(t, "the settle to land", func() bool { return g.account(t, "alice").Held == 0 })
			g.settled(t, "alice", 8, 2)
			if e := g.lastSettle(t, "alice"); e.Detail.CutOff != (mode == "deny") {
				t.Errorf("settle entry %+v, cut off should be %v", e, mode == "deny")
			}
			// The settle met the paused Redis too, and landed from the
			// background; under allow, the request counts as unbilled.
			after := scrape(t, g)
			unbilled := map[string]float64{"deny": 0, "allow": 1}[mode]
			if d := after["tollgate_unsettled_total"] - before["tollgate_unsettled_total"]; d != 1 {
				t.Errorf("tollgate_unsettled_total rose by %v, want 1", d)
			}
			if d := after[`tollgate_requests_total{outcome="unbilled"}`] - before[`tollgate_requests_total{outcome="unbilled"}`]; d != unbilled {
				t.Errorf("unbilled requests rose by %v, want %v", d, unbilled)
			}
		})
	}
}

// TestHoldStoreDownAllow forwards a request under a byte price unbilled
// when its up-front hold cannot reach the store, under allow.
func TestHoldStoreDownAllow(t *testing.T) {
	srv := redistest.Start(t)
	up, hits := newByteUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 1KiB
		}
	}
	reverse_proxy `+up, "on_store_error allow")
	srv.Stop()
	resp, n, err := g.get(t, fmt.Sprintf("/len/%d", MiB), token(t, "alice"))
	if err != nil || n != MiB || resp.StatusCode != http.StatusOK || hits() != 1 {
		t.Fatalf("status %d, %d bytes, %v, %d upstream hits; want the whole response, unbilled", resp.StatusCode, n, err, hits())
	}
	if h := resp.Header; h.Get("Tollgate-Charged") != "0" || h.Get("Tollgate-Held") != "" || h.Get("Tollgate-Balance") != "" {
		t.Errorf("unbilled headers: charged %q held %q balance %q", h.Get("Tollgate-Charged"), h.Get("Tollgate-Held"), h.Get("Tollgate-Balance"))
	}
	srv.Restart(t)
	waitFor(t, "the unknown hold to be cancelled", func() bool {
		a, err := g.store.Account(t.Context(), meterRead("alice"))
		return err != nil || (a.Held == 0 && a.Charged == 0)
	})
}

// TestCutOffIsNotRefunded charges the blocks a cut-off download delivered,
// even under refund_on error.
func TestCutOffIsNotRefunded(t *testing.T) {
	srv := redistest.Start(t)
	up, _ := newByteUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 1MiB
		}
		refund_on 5xx error
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 3)
	_, n, err := g.get(t, fmt.Sprintf("/chunked/%d", 10*MiB), token(t, "alice"))
	if err == nil || n > 3*MiB {
		t.Fatalf("%d bytes, error %v; want at most 3 MiB and a broken body", n, err)
	}
	waitFor(t, "the settle", func() bool { return g.account(t, "alice").Held == 0 })
	g.settled(t, "alice", 0, 3)
}

// TestUpstreamFailsMidStream aborts a response after its headers: refund_on
// error releases the hold; without it, what was delivered is charged.
func TestUpstreamFailsMidStream(t *testing.T) {
	srv := redistest.Start(t)
	// The upstream promises 4 MiB, sends 1, and hangs up.
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(4*MiB))
		_, _ = w.Write(bytes.Repeat([]byte("x"), MiB))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	g := startGateway(t, srv, `tollgate {
		price /refunded {
			response_bytes 1 per 1KiB
		}
		price * {
			response_bytes 1 per 1KiB
		}
		refund_on 5xx error
	}
	tollgate /kept {
		price * {
			response_bytes 1 per 1KiB
		}
	}
	reverse_proxy `+up, "")
	for path, charged := range map[string]int64{"/refunded": 0, "/kept": 1024} {
		account := strings.TrimPrefix(path, "/")
		g.credit(t, account, 5000)
		_, n, err := g.get(t, path, token(t, account))
		if err == nil || n > MiB {
			t.Fatalf("%s: %d bytes, error %v; want a broken body", path, n, err)
		}
		waitFor(t, "the hold to end", func() bool { return g.account(t, account).Held == 0 })
		g.settled(t, account, 5000-charged, charged)
	}
}

// TestClientLeavesMidStream settles what was sent to a client that left,
// and holds nothing afterwards.
func TestClientLeavesMidStream(t *testing.T) {
	srv := redistest.Start(t)
	up, _ := gatedUpstream(t, 2*MiB, 10*MiB, false)
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 1MiB
		}
		refund_on 4xx 5xx error
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 10)
	ctx, cancel := context.WithCancel(context.Background())
	resp := g.startGet(t, ctx, "/x", token(t, "alice"))
	if _, err := io.ReadFull(resp.Body, make([]byte, MiB+MiB/2)); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitFor(t, "the settle", func() bool { return g.account(t, "alice").Held == 0 })
	// The upstream had sent 2 MiB, all passed on before the client left.
	g.settled(t, "alice", 8, 2)
}

// TestContentLengthUpFront holds a body with a Content-Length up front and
// charges it by its size.
func TestContentLengthUpFront(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price /up {
			request_bytes 1 per 1KiB
		}
	}
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/up", bytes.NewReader(make([]byte, 3*1024+1)))
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expectStatus(t, "a body with a Content-Length", resp, string(body), http.StatusOK)
	if h := resp.Header.Get("Tollgate-Held"); h != "4" {
		t.Errorf("Tollgate-Held %q, want 4 for 3 KiB and a byte", h)
	}
	g.settled(t, "alice", 96, 4)
}

// TestServerSentEvents delivers an event stream event by event, unbuffered,
// and holds it block by block: the upstream sends each event only once the
// client has read the one before.
func TestServerSentEvents(t *testing.T) {
	srv := redistest.Start(t)
	const events = 12
	read := make(chan struct{})
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			// Each event is 48 bytes: "data: " + 40 digits + "\n\n".
			fmt.Fprintf(w, "data: %040d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-read:
			case <-r.Context().Done():
				return
			}
		}
	})
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 100B
			hold_block 100B
		}
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 100)
	resp := g.startGet(t, context.Background(), "/events", token(t, "alice"))
	if resp.Header.Get("Tollgate-Held") != "1" {
		t.Errorf("Tollgate-Held %q, want one block", resp.Header.Get("Tollgate-Held"))
	}
	event := make([]byte, 48)
	for i := range events {
		if _, err := io.ReadFull(resp.Body, event); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: %040d\n\n", i); string(event) != want {
			t.Fatalf("event %d is %q, want %q", i, event, want)
		}
		// While the stream is open, the blocks it used are held.
		if a := g.account(t, "alice"); a.Held != int64((i+1)*48+99)/100 {
			t.Errorf("after event %d: %d held, want %d", i, a.Held, ((i+1)*48+99)/100)
		}
		read <- struct{}{}
	}
	if n, err := io.Copy(io.Discard, resp.Body); n != 0 || err != nil {
		t.Fatalf("after the last event: %d bytes, %v", n, err)
	}
	g.settled(t, "alice", 100-6, 6) // 12 × 48 = 576 bytes, 6 started blocks
}

// TestFileServer charges a file served through ReadFrom exactly, and cuts
// it off where the balance ends.
func TestFileServer(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("x"), 5*MiB+3), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 1MiB
		}
	}
	root * `+dir+`
	file_server`, "")
	g.credit(t, "rich", 10)
	resp, n, err := g.get(t, "/big.bin", token(t, "rich"))
	if err != nil || n != 5*MiB+3 || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %d bytes, %v; want the whole file", resp.StatusCode, n, err)
	}
	g.settled(t, "rich", 4, 6)

	g.credit(t, "poor", 2)
	_, n, err = g.get(t, "/big.bin", token(t, "poor"))
	if err == nil || n > 2*MiB {
		t.Fatalf("%d bytes, error %v; want at most 2 MiB and a broken body", n, err)
	}
	waitFor(t, "the settle", func() bool { return g.account(t, "poor").Held == 0 })
	g.settled(t, "poor", 0, 2)
	if e := g.lastSettle(t, "poor"); !e.Detail.CutOff {
		t.Errorf("settle entry %+v, want cut off", e)
	}
}
