package caddymodule

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// heldConn is an upgraded connection (a WebSocket) under a byte price: what
// the client sends counts as request bytes, what it receives as response
// bytes, both held block by block. A block that cannot be paid closes the
// connection, which ends both directions of the tunnel.
type heldConn struct {
	net.Conn
	hr *held

	mu      sync.Mutex
	pending []byte // client bytes the server had read ahead before the hijack
}

// Read reads what the client sent and passes on what the hold pays for.
func (c *heldConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	var n int
	var err error
	if len(c.pending) > 0 {
		n = copy(p, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
	} else {
		c.mu.Unlock()
		n, err = c.Conn.Read(p)
	}
	if n <= 0 {
		return n, err
	}
	granted, cut := c.hr.grant(&c.hr.req, int64(n))
	if cut != nil {
		c.Conn.Close()
		return int(min(granted, int64(n))), cut
	}
	return n, err
}

// Write sends the client what the hold pays for.
func (c *heldConn) Write(p []byte) (int, error) {
	granted, cut := c.hr.grant(&c.hr.resp, int64(len(p)))
	granted = min(granted, int64(len(p)))
	n, err := c.Conn.Write(p[:granted])
	if int64(n) < granted {
		c.hr.unsent(&c.hr.resp, granted-int64(n))
	}
	if err == nil && cut != nil {
		c.Conn.Close()
		err = cut
	}
	return n, err
}

// CloseWrite half-closes the connection, so that the tunnel can pass on a
// half-close.
func (c *heldConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Hijack hands the connection over for an upgraded protocol. Under a byte
// price the connection it returns is metered in both directions, and the
// client bytes the server had already read come first through it.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(&w.ResponseWriterWrapper).Hijack()
	if err != nil || w.meter == nil {
		return conn, brw, err
	}
	hc := &heldConn{Conn: conn, hr: w.meter}
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n)
		hc.pending = append([]byte(nil), ahead...)
	}
	w.meter.hijacked(hc)
	return hc, bufio.NewReadWriter(bufio.NewReader(hc), bufio.NewWriter(hc)), nil
}

// Interface guards
var (
	_ http.Hijacker = (*responseWriter)(nil)
	_ net.Conn      = (*heldConn)(nil)
)
