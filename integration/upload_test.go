package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// uploadUpstream reads whole request bodies and answers with the number of
// bytes it got; received is the total over every request, including bodies
// cut off mid-way.
func uploadUpstream(t *testing.T) (addr string, received *atomic.Int64) {
	received = new(atomic.Int64)
	addr = httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		var total int64
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			total += int64(n)
			received.Add(int64(n))
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
		io.WriteString(w, strconv.FormatInt(total, 10))
	})
	return addr, received
}

// postChunked sends body with no Content-Length, so that it goes chunked.
func (g *gateway) postChunked(t *testing.T, path, tok string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.URL+path, io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.client.Do(req)
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

func TestChunkedUpload(t *testing.T) {
	srv := redistest.Start(t)
	up, received := uploadUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price * {
			request_bytes 1 per 1KiB
			hold_block 4KiB
		}
	}
	reverse_proxy `+up, "")

	// Enough balance: every byte forwarded, each started KiB charged.
	g.credit(t, "rich", 100)
	resp, body := g.postChunked(t, "/up", token(t, "rich"), make([]byte, 10<<10+1))
	expectStatus(t, "a chunked upload", resp, body, http.StatusOK)
	if body != strconv.Itoa(10<<10+1) {
		t.Errorf("the upstream got %s bytes, want %d", body, 10<<10+1)
	}
	// The headers went out once the body was read, under a hold that
	// covered it.
	if h, _ := strconv.Atoi(resp.Header.Get("Tollgate-Held")); h < 11 {
		t.Errorf("Tollgate-Held %d, want at least the 11 KiB read", h)
	}
	g.settled(t, "rich", 89, 11)

	// Too little: a 402 once the paid blocks are read, and the upstream saw
	// no more than they pay for.
	received.Store(0)
	g.credit(t, "poor", 3)
	resp, body = g.postChunked(t, "/up", token(t, "poor"), make([]byte, 100<<10))
	expectStatus(t, "an upload past the balance", resp, body, http.StatusPaymentRequired)
	p := decodeProblem(t, resp, body)
	if p.Price == nil || *p.Price != 4 || p.Balance == nil || *p.Balance != 0 {
		t.Errorf("402 problem %s, want price 4 (a block) and balance 0", body)
	}
	if resp.Header.Get("Tollgate-Charged") != "3" {
		t.Errorf("Tollgate-Charged %q, want 3: what the forwarded blocks cost", resp.Header.Get("Tollgate-Charged"))
	}
	if n := received.Load(); n > 3<<10 {
		t.Errorf("the upstream got %d bytes, more than the 3 KiB paid for", n)
	}
	g.settled(t, "poor", 0, 3)
	if e := g.lastSettle(t, "poor"); !e.Detail.CutOff {
		t.Errorf("settle entry %+v, want cut off", e)
	}

	// Nothing at all: a 402 before forwarding.
	resp, body = g.postChunked(t, "/up", token(t, "broke"), make([]byte, 10))
	expectStatus(t, "an upload with no balance", resp, body, http.StatusPaymentRequired)
	g.settled(t, "broke", 0, 0)
}

// TestBrokenChunkedBodyIsPaid breaks a chunked upload with a bad chunk after
// 10 KiB went upstream: the failure is the client's, so the blocks it had
// forwarded are charged, whatever status reverse_proxy gives it.
func TestBrokenChunkedBodyIsPaid(t *testing.T) {
	srv := redistest.Start(t)
	up, received := uploadUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price * {
			request_bytes 1 per 1KiB
			hold_block 4KiB
		}
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 100)
	addr := strings.TrimPrefix(g.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n", addr, token(t, "alice"))
	for range 10 {
		fmt.Fprintf(conn, "400\r\n%s\r\n", strings.Repeat("a", 1024))
	}
	waitFor(t, "10 KiB to reach the upstream", func() bool { return received.Load() == 10<<10 })
	fmt.Fprint(conn, "zz\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("a broken body got %s", resp.Status)
	}
	waitFor(t, "the upload to settle", func() bool { return g.account(t, "alice").Held == 0 })
	g.settled(t, "alice", 90, 10)
}
