// Package faultproxy is a TCP proxy for tests that sits between a client and
// a server and injects faults into the traffic.
//
// Bytes from the client are forwarded untouched. Bytes from the server are
// forwarded in chunks, and DropReplies makes the proxy discard a chunk and
// cut the connection, so the client sees its reply lost: a request that may
// or may not have been executed. Delay makes the proxy hold each chunk
// before forwarding it, so the server looks slow.
package faultproxy

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// chunkSize is the size of the buffer for server-to-client reads.
	chunkSize = 32 << 10
	// dialTimeout bounds the connection to the target.
	dialTimeout = 5 * time.Second
)

// Proxy forwards TCP connections from its listening address to a target
// address.
type Proxy struct {
	target  string
	ln      net.Listener
	ctx     context.Context // cancelled when the proxy shuts down
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the accept loop and every connection's goroutines
	dropped atomic.Int64

	mu     sync.Mutex
	closed bool
	links  map[*link]struct{}
	frac   float64
	rng    *rand.Rand
	delay  time.Duration
}

// link is one proxied connection: the client's side and the server's side.
type link struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed when the link closes
}

// close closes both sides of the link.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// Start starts a proxy to target listening on a free port of 127.0.0.1. The
// proxy closes its listener and every connection, and waits for its
// goroutines, when the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		links:  make(map[*link]struct{}),
	}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.shutdown)
	return p
}

// Addr returns the address the proxy listens on, "127.0.0.1:port".
func (p *Proxy) Addr() string {
	return p.ln.Addr().String()
}

// DropReplies makes the proxy, for each chunk it reads from the server side,
// discard that chunk with probability frac and close both sides of that
// connection, so the client sees its reply lost (EOF). The draws come from a
// math/rand/v2 PCG source seeded with seed. A frac of 0 turns dropping off.
// DropReplies is safe to call while traffic flows; it panics if frac is
// outside [0, 1].
func (p *Proxy) DropReplies(frac float64, seed uint64) {
	if !(frac >= 0 && frac <= 1) {
		panic(fmt.Sprintf("faultproxy: drop fraction %v outside [0, 1]", frac))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frac = frac
	p.rng = rand.New(rand.NewPCG(seed, 0))
}

// Delay makes the proxy hold each chunk it reads from the server side for d
// before forwarding it to the client, on every connection, open or new. A
// chunk already held keeps the delay it was read with. A d of 0 turns
// delaying off. Delay is safe to call while traffic flows; it panics if d is
// negative.
func (p *Proxy) Delay(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("faultproxy: negative delay %v", d))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Dropped returns how many chunks from the server the proxy has dropped.
func (p *Proxy) Dropped() int64 {
	return p.dropped.Load()
}

// CloseAll closes every open connection now, on both sides. The proxy keeps
// accepting new connections.
func (p *Proxy) CloseAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// shutdown stops accepting, closes every connection and waits for all the
// proxy's goroutines to end.
func (p *Proxy) shutdown() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.cancel()
	p.CloseAll()
	p.wg.Wait()
}

// acceptLoop accepts client connections until the listener is closed.
func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects client to the target and forwards traffic both ways until
// either side closes, a reply is dropped or the proxy shuts down.
func (p *Proxy) serve(client net.Conn) {
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	if !p.track(l) {
		l.close()
		return
	}
	defer p.untrack(l)

	upstream := make(chan struct{})
	go func() {
		defer close(upstream)
		_, _ = io.Copy(server, client)
		l.close()
	}()
	p.forwardReplies(l)
	l.close()
	<-upstream
}

// forwardReplies copies the server's side of l to the client's side, chunk
// by chunk, until an error, a dropped chunk or l closing while a chunk is
// held.
func (p *Proxy) forwardReplies(l *link) {
	buf := make([]byte, chunkSize)
	for {
		n, err := l.server.Read(buf)
		if n > 0 {
			if p.drop() {
				p.dropped.Add(1)
				return
			}
			if !p.hold(l) {
				return
			}
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// drop reports whether the next chunk is to be dropped.
func (p *Proxy) drop() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frac <= 0 || p.rng == nil {
		return false
	}
	return p.rng.Float64() < p.frac
}

// hold waits for the delay set now, and reports false if l closed or the
// proxy shut down meanwhile.
func (p *Proxy) hold(l *link) bool {
	p.mu.Lock()
	d := p.delay
	p.mu.Unlock()
	if d == 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-l.done:
		return false
	case <-p.ctx.Done():
		return false
	}
}

// track registers l as open. It reports false if the proxy is shutting
// down, in which case the caller closes l.
func (p *Proxy) track(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.links[l] = struct{}{}
	return true
}

// untrack forgets l.
func (p *Proxy) untrack(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.links, l)
}
