package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// echoUpstream is a WebSocket server that sends back every message it gets.
func echoUpstream(t *testing.T) string {
	return httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
}

// wsSite prices both directions of a WebSocket at 1 token a KiB, in blocks
// of 4 KiB.
const wsSite = `tollgate {
		price * {
			request_bytes 1 per 1KiB
			response_bytes 1 per 1KiB
			hold_block 4KiB
		}
	}
	reverse_proxy `

// dialWS opens a WebSocket through the gateway at url.
func dialWS(t *testing.T, ctx context.Context, url, tok string) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1)+"/echo", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
	})
	if err != nil {
		t.Fatalf("dialing the WebSocket: %v", err)
	}
	return c, resp
}

// echo sends msg and reads it back.
func echo(ctx context.Context, c *websocket.Conn, msg []byte) error {
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		return err
	}
	_, got, err := c.Read(ctx)
	if err == nil && !bytes.Equal(got, msg) {
		panic("the echo differs")
	}
	return err
}

// A binary message of 1000 bytes is a frame of 1008 bytes from the client
// (2 header, 2 length, 4 mask) and of 1004 from the server; a close frame
// with a status is 8 bytes from the client and 4 from the server.
const (
	wsMessage     = 1000
	wsClientFrame = wsMessage + 8
	wsServerFrame = wsMessage + 4
)

func TestWebSocket(t *testing.T) {
	srv := redistest.Start(t)
	g := startGateway(t, srv, wsSite+echoUpstream(t), "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A session with enough balance is charged exactly for the bytes both
	// ways: 10 messages each way and the close handshake.
	g.credit(t, "alice", 100)
	c, resp := dialWS(t, ctx, g.URL, token(t, "alice"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Tollgate-Held") != "8" {
		t.Errorf("the upgrade: status %d, Tollgate-Held %q; want 101 and two first blocks of 4", resp.StatusCode, resp.Header.Get("Tollgate-Held"))
	}
	for range 10 {
		if err := echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to settle", func() bool { return g.account(t, "alice").Held == 0 })
	up, down := int64(10*wsClientFrame+8), int64(10*wsServerFrame+4)
	want := (up+1023)/1024 + (down+1023)/1024
	g.settled(t, "alice", 100-want, want)

	// A balance that runs out closes the connection, and nothing stays held.
	g.credit(t, "bob", 6)
	c, _ = dialWS(t, ctx, g.URL, token(t, "bob"))
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage))
	}
	if err == nil {
		t.Fatal("20 KiB each way went through for 6 tokens")
	}
	c.CloseNow()
	waitFor(t, "the cut session to settle", func() bool { return g.account(t, "bob").Held == 0 })
	a := g.account(t, "bob")
	if a.Charged+a.Balance != 6 || a.Charged < 5 {
		t.Errorf("account %+v: want 5 or 6 charged (what passed), and the rest back", a)
	}
	if e := g.lastSettle(t, "bob"); !e.Detail.CutOff {
		t.Errorf("settle entry %+v, want cut off", e)
	}
}

// TestIdleWebSocketRenewsItsHold keeps a WebSocket idle past hold_expiry:
// the renewals keep its hold, so the session stays open and is paid
// exactly.
func TestIdleWebSocketRenewsItsHold(t *testing.T) {
	srv := redistest.Start(t)
	g := startGateway(t, srv, wsSite+echoUpstream(t), "hold_expiry 10s")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g.credit(t, "alice", 100)
	c, _ := dialWS(t, ctx, g.URL, token(t, "alice"))
	if err := echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage)); err != nil {
		t.Fatal(err)
	}
	// The workload: idle for longer than the hold lives without renewal.
	time.Sleep(12 * time.Second)
	if err := echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage)); err != nil {
		t.Fatalf("after 12 s idle: %v", err)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the session to settle", func() bool { return g.account(t, "alice").Held == 0 })
	g.settled(t, "alice", 96, 4) // 2024 bytes up, 2012 down
	page, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meterRead("alice"), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if e.Kind == meter.KindRelease {
			t.Errorf("the hold was released (%+v): it expired", e)
		}
	}
}

// TestGatewayKilledDuringWebSocket kills the gateway process in the middle
// of a WebSocket session: its hold expires and is released in full.
func TestGatewayKilledDuringWebSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and waits for a hold to expire")
	}
	srv := redistest.Start(t)
	g := holdStore(t, srv)
	p := startProcess(t, srv, g, wsSite+echoUpstream(t), "hold_expiry 10s")
	g.credit(t, "alice", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, resp := dialWS(t, ctx, p.URL, token(t, "alice"))
	defer c.CloseNow()
	op := resp.Header.Get("Tollgate-Op")
	if err := echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage)); err != nil {
		t.Fatal(err)
	}
	p.kill()
	if a := g.account(t, "alice"); a.Held != 8 || a.Charged != 0 {
		t.Fatalf("right after the kill: account %+v, want the two first blocks held", a)
	}
	if err := echo(ctx, c, []byte("anyone there?")); err == nil {
		t.Error("the session went on after the gateway died")
	}
	holdPoll(t, "the hold to expire", 2*holdExpiry, func() bool { return g.account(t, "alice").Held == 0 })
	if a := g.account(t, "alice"); a.Balance != 100 || a.Charged != 0 {
		t.Errorf("after expiry: account %+v, want everything back", a)
	}
	if rel := holdExpired(t, g, "alice", op); len(rel) != 1 || rel[0].Amount != 8 {
		t.Errorf("expired releases of op %s: %+v, want one of 8", op, rel)
	}
}

// TestWebSocketOverHTTP2 runs a WebSocket over HTTP/2's extended CONNECT
// (RFC 8441, cleartext h2c): the client's frames go through the request
// body, the server's through the response writer, and both are charged as
// over HTTP/1.1. Go's HTTP/2 server offers extended CONNECT only under
// GODEBUG=http2xconnect=1, so the gateway runs as its own process.
func TestWebSocketOverHTTP2(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	g := holdStore(t, srv)
	port, adminPort := freePort(t), freePort(t)
	cfg := strings.Replace(gatewayConfig(srv, g.prefix, adminPort, port, wsSite+echoUpstream(t), ""),
		"persist_config off", "persist_config off\n\tservers {\n\t\tprotocols h1 h2c\n\t}", 1)
	p := runProcess(t, port, cfg, "GODEBUG=http2xconnect=1")
	g.credit(t, "alice", 100)

	// net/http's Transport refuses the :protocol pseudo-header; the HTTP/2
	// transport it bundles takes it.
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	up, frames := io.Pipe()
	defer frames.Close()
	req, err := http.NewRequest(http.MethodConnect, p.URL+"/echo", up)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(":protocol", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Authorization", "Bearer "+token(t, "alice"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.Header.Get("Tollgate-Held") != "8" {
		t.Fatalf("extended CONNECT: %s over HTTP/%d, Tollgate-Held %q; want 200 over HTTP/2 and 8 held", resp.Status, resp.ProtoMajor, resp.Header.Get("Tollgate-Held"))
	}
	msg := bytes.Repeat([]byte("m"), wsMessage)
	for range 10 {
		if _, err := frames.Write(wsFrame(websocket.MessageBinary, msg)); err != nil {
			t.Fatal(err)
		}
		echoed := make([]byte, wsServerFrame)
		if _, err := io.ReadFull(resp.Body, echoed); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(echoed[4:], msg) {
			t.Fatal("the echo differs")
		}
	}
	// Close: a close frame with status 1000 each way, then the stream ends.
	if _, err := frames.Write(wsFrame(0x8, []byte{0x03, 0xe8})); err != nil {
		t.Fatal(err)
	}
	if closing := make([]byte, 4); func() error { _, err := io.ReadFull(resp.Body, closing); return err }() != nil || closing[0] != 0x88 {
		t.Fatalf("no close frame came back: %x", closing)
	}
	frames.Close()
	io.Copy(io.Discard, resp.Body)
	waitFor(t, "the session to settle", func() bool { return g.account(t, "alice").Held == 0 })
	up2, down := int64(10*wsClientFrame+8), int64(10*wsServerFrame+4)
	want := (up2+1023)/1024 + (down+1023)/1024
	g.settled(t, "alice", 100-want, want)
}

// wsFrame is a final, masked client frame of the given opcode (RFC 6455):
// 2 header bytes, the extended length for 126 to 65535 bytes, and a mask.
func wsFrame(opcode websocket.MessageType, payload []byte) []byte {
	f := []byte{0x80 | byte(opcode)}
	if n := len(payload); n < 126 {
		f = append(f, 0x80|byte(n))
	} else {
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	}
	mask := []byte{1, 2, 3, 4}
	f = append(f, mask...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

// TestWebSocketFirstFrameWithTheUpgrade sends the first frame in the same
// write as the upgrade request, so that the server has read it ahead: it
// still reaches the upstream, and is paid for.
func TestWebSocketFirstFrameWithTheUpgrade(t *testing.T) {
	srv := redistest.Start(t)
	g := startGateway(t, srv, wsSite+echoUpstream(t), "")
	g.credit(t, "alice", 100)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("m"), wsMessage)
	upgrade := "GET /echo HTTP/1.1\r\nHost: " + strings.TrimPrefix(g.URL, "http://") + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: Bearer " + token(t, "alice") + "\r\n\r\n"
	out := append([]byte(upgrade), wsFrame(websocket.MessageBinary, msg)...)
	out = append(out, wsFrame(0x8, []byte{0x03, 0xe8})...)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the upgrade: %v, %v", resp, err)
	}
	in := make([]byte, wsServerFrame+4)
	if _, err := io.ReadFull(br, in); err != nil {
		t.Fatalf("reading the echo and the close: %v", err)
	}
	if !bytes.Equal(in[4:wsServerFrame], msg) || in[wsServerFrame] != 0x88 {
		t.Fatalf("the echo and close frames are not what was sent")
	}
	conn.Close()
	waitFor(t, "the session to settle", func() bool { return g.account(t, "alice").Held == 0 })
	// 1016 bytes up and 1008 down: a started KiB each way.
	g.settled(t, "alice", 98, 2)
}

// TestWebSocketHoldGone closes an idle WebSocket whose hold is found gone at
// its next renewal.
func TestWebSocketHoldGone(t *testing.T) {
	srv := redistest.Start(t)
	g := startGateway(t, srv, wsSite+echoUpstream(t), "hold_expiry 10s")
	g.credit(t, "alice", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, resp := dialWS(t, ctx, g.URL, token(t, "alice"))
	defer c.CloseNow()
	if err := echo(ctx, c, bytes.Repeat([]byte("m"), wsMessage)); err != nil {
		t.Fatal(err)
	}
	// The hold goes away behind the gateway's back, as when Redis loses it.
	if _, err := g.store.Cancel(ctx, meter.Cancel{Account: "alice", Op: resp.Header.Get("Tollgate-Op")}); err != nil {
		t.Fatal(err)
	}
	// The next renewal (every hold_expiry/3) finds it gone and closes the
	// connection: the idle client's read ends.
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the read ended with %v (context: %v); want the connection closed", err, ctx.Err())
	}
	if a := g.account(t, "alice"); a.Held != 0 || a.Balance != 100 {
		t.Errorf("account %+v, want everything released", a)
	}
}

// TestWebSocketUsagePrice opens a WebSocket under a price with no byte
// terms, whose upstream reports usage in its 101: the session is settled at
// the upgrade and goes on unmetered, and the report stays with the gateway.
func TestWebSocketUsagePrice(t *testing.T) {
	srv := redistest.Start(t)
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Usage", "3")
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
	})
	g := startGateway(t, srv, `tollgate {
		price * {
			request 1
			usage_header X-Usage 1 reserve 10
		}
	}
	reverse_proxy `+up, "")
	g.credit(t, "alice", 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp := dialWS(t, ctx, g.URL, token(t, "alice"))
	defer c.CloseNow()
	if resp.Header.Get("X-Usage") != "" || resp.Header.Get("Tollgate-Charged") != "4" || resp.Header.Get("Tollgate-Held") != "0" {
		t.Errorf("101 headers: X-Usage %q, charged %q, held %q; want none, 4 and 0", resp.Header.Get("X-Usage"), resp.Header.Get("Tollgate-Charged"), resp.Header.Get("Tollgate-Held"))
	}
	for range 3 {
		if err := echo(ctx, c, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	g.settled(t, "alice", 96, 4)
}
