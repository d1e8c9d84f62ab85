package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

func ping(t *testing.T, c *redis.Client, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

func TestStartPing(t *testing.T) {
	s := redistest.Start(t)
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Errorf("Addr = %q, want 127.0.0.1:port", s.Addr)
	}
	if want := "redis://" + s.Addr + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	if err := ping(t, s.Client(t), 5*time.Second); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestOptionsOverrideDefaults(t *testing.T) {
	s := redistest.Start(t, redistest.Options{Args: []string{"--maxmemory-policy", "allkeys-lru"}})
	got, err := s.Client(t).ConfigGet(context.Background(), "maxmemory-policy").Result()
	if err != nil {
		t.Fatalf("config get: %v", err)
	}
	if got["maxmemory-policy"] != "allkeys-lru" {
		t.Errorf("maxmemory-policy = %q, want allkeys-lru", got["maxmemory-policy"])
	}
}

func TestPauseResume(t *testing.T) {
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { _ = c.Close() })
	if err := ping(t, c, 5*time.Second); err != nil {
		t.Fatalf("ping before pause: %v", err)
	}

	s.Pause(t)
	start := time.Now()
	err := ping(t, c, 200*time.Millisecond)
	if err == nil {
		t.Fatal("ping while paused succeeded, want a timeout")
	}
	var netErr interface{ Timeout() bool }
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &netErr) && netErr.Timeout()) {
		t.Errorf("ping while paused: %v, want a timeout", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("ping while paused took %v, want about 200ms", elapsed)
	}

	s.Resume(t)
	if err := ping(t, c, 5*time.Second); err != nil {
		t.Fatalf("ping after resume: %v", err)
	}
}

func TestStopPaused(t *testing.T) {
	s := redistest.Start(t)
	s.Pause(t)
	done := make(chan struct{})
	go func() {
		s.Stop()
		s.Stop() // idempotent
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop on a paused server did not return")
	}
}

func TestRestartKeepsData(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.ConfigSet(ctx, "appendfsync", "always").Err(); err != nil {
		t.Fatalf("config set: %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}

	addr := s.Addr
	s.Restart(t)
	if s.Addr != addr {
		t.Errorf("Addr after restart = %q, want %q", s.Addr, addr)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if got != "v" {
		t.Errorf("get after restart = %q, want %q", got, "v")
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestRequireBinary(t *testing.T) {
	if path := redistest.RequireBinary(t, "redis-server"); path == "" {
		t.Error(`RequireBinary("redis-server") = ""`)
	}

	rec := &fatalRecorder{TB: t}
	redistest.RequireBinary(rec, "redistest-no-such-binary")
	if !strings.Contains(rec.msg, "apt-get install redis-server") {
		t.Errorf("RequireBinary for a missing binary failed with %q, want a hint to apt-get install redis-server", rec.msg)
	}
}
