package faultproxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/faultproxy"
	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// newClient returns a go-redis client through p that never retries.
func newClient(t *testing.T, p *faultproxy.Proxy) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ping(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func TestForwards(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr)
	c := newClient(t, p)
	if err := ping(c); err != nil {
		t.Fatalf("ping through proxy: %v", err)
	}
	if got := p.Dropped(); got != 0 {
		t.Errorf("Dropped() = %d, want 0", got)
	}
}

func TestDropReplies(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr)
	c := newClient(t, p)

	p.DropReplies(1, 1)
	if err := ping(c); err == nil {
		t.Fatal("ping with every reply dropped succeeded")
	}
	if got := p.Dropped(); got < 1 {
		t.Errorf("Dropped() = %d, want at least 1", got)
	}

	p.DropReplies(0, 1)
	before := p.Dropped()
	if err := ping(c); err != nil {
		t.Fatalf("ping with dropping off: %v", err)
	}
	if got := p.Dropped(); got != before {
		t.Errorf("Dropped() = %d after dropping was turned off, want %d", got, before)
	}
}

func TestDropRepliesOutOfRange(t *testing.T) {
	p := faultproxy.Start(t, "127.0.0.1:1") // never dialled
	defer func() {
		if recover() == nil {
			t.Error("DropReplies(1.5, 1) did not panic")
		}
	}()
	p.DropReplies(1.5, 1)
}

func TestCloseAll(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr)

	conn, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || line != "+PONG\r\n" {
		t.Fatalf("reply to PING = %q, %v; want +PONG", line, err)
	}

	p.CloseAll()
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("read after CloseAll: %v, want EOF", err)
	}

	// The proxy still accepts new connections.
	if err := ping(newClient(t, p)); err != nil {
		t.Fatalf("ping after CloseAll: %v", err)
	}
}

// TestDelay checks that a reply takes at least the delay set, and that
// turning the delay off makes replies prompt again on the same connection.
func TestDelay(t *testing.T) {
	s := redistest.Start(t)
	p := faultproxy.Start(t, s.Addr)
	c := newClient(t, p)
	if err := ping(c); err != nil {
		t.Fatalf("ping through proxy: %v", err)
	}

	const d = 300 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	if err := ping(c); err != nil {
		t.Fatalf("ping with a delay: %v", err)
	}
	if took := time.Since(start); took < d {
		t.Errorf("ping with a delay of %v took %v", d, took)
	}

	p.Delay(0)
	start = time.Now()
	if err := ping(c); err != nil {
		t.Fatalf("ping with the delay off: %v", err)
	}
	if took := time.Since(start); took >= d {
		t.Errorf("ping with the delay off took %v, want under %v", took, d)
	}
}

// TestDelayNegative checks that a negative delay panics.
func TestDelayNegative(t *testing.T) {
	p := faultproxy.Start(t, "127.0.0.1:1") // never dialled
	defer func() {
		if recover() == nil {
			t.Error("Delay(-1) did not panic")
		}
	}()
	p.Delay(-1)
}
