package meter_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/faultproxy"
	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// newRedis returns a store on url, closed when the test ends.
func newRedis(t *testing.T, opts meter.RedisOptions) *meter.Redis {
	t.Helper()
	s, err := meter.NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRedisOptions(t *testing.T) {
	for _, opts := range []meter.RedisOptions{
		{},
		{URL: "http://127.0.0.1:6379"},
		{URL: "redis://127.0.0.1:6379", Prefix: "a{b"},
		{URL: "redis://127.0.0.1:6379", Prefix: "a b"},
		{URL: "redis://127.0.0.1:6379", Timeout: -time.Second},
	} {
		if _, err := meter.NewRedis(opts); err == nil {
			t.Errorf("NewRedis(%+v) succeeded, want an error", opts)
		}
	}
}

func TestRedisCheckConfig(t *testing.T) {
	safe := redistest.Start(t)
	risks, err := newRedis(t, meter.RedisOptions{URL: safe.URL()}).CheckConfig(context.Background())
	if err != nil || len(risks) != 0 {
		t.Errorf("safe server: risks %q, err %v; want none", risks, err)
	}

	risky := redistest.Start(t, redistest.Options{Args: []string{"--maxmemory-policy", "allkeys-lru", "--appendonly", "no"}})
	risks, err = newRedis(t, meter.RedisOptions{URL: risky.URL()}).CheckConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(risks, "\n")
	if len(risks) != 2 || !strings.Contains(joined, "allkeys-lru") || !strings.Contains(joined, "appendonly") {
		t.Errorf("risky server: risks %q; want maxmemory-policy and appendonly named", risks)
	}

	risky.Stop()
	if _, err := newRedis(t, meter.RedisOptions{URL: risky.URL()}).CheckConfig(context.Background()); err == nil {
		t.Error("stopped server: CheckConfig succeeded, want an error")
	}
}

// TestRedisScriptsRefuseBadArguments calls every script directly, past the
// Go validation, with amounts that are not strict decimal integers in
// [0, 2^53-1]: each is refused and nothing is written.
func TestRedisScriptsRefuseBadArguments(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	lib, err := os.ReadFile("scripts/lib.lua")
	if err != nil {
		t.Fatal(err)
	}
	script := func(name string) string {
		body, err := os.ReadFile("scripts/" + name + ".lua")
		if err != nil {
			t.Fatal(err)
		}
		return string(lib) + "\n" + string(body)
	}
	keys := []string{"p:{YQ}:acct", "p:{YQ}:ledger", "p:{YQ}:holds", "p:{YQ}:expiry", "p:{YQ}:op:o"}
	bad := []string{"", "0", "-1", "1.5", "1e3", "0x10", " 1", "1 ", "+1", "01", "abc", "9007199254740992", "99999999999999999999"}
	cases := []struct {
		script string
		zeroOK bool                 // whether 0 is valid in the tested place
		args   func(v string) []any // with v in the tested place
	}{
		{"charge", false, func(v string) []any { return []any{"0", "10", "1000", "o", v, "0", "GET", "/"} }},
		{"charge", true, func(v string) []any { return []any{"0", "10", "1000", "o", "1", v, "GET", "/"} }},
		{"charge", true, func(v string) []any { return []any{v, "10", "1000", "o", "1", "0", "GET", "/"} }},
		{"charge", false, func(v string) []any { return []any{"0", v, "1000", "o", "1", "0", "GET", "/"} }},
		{"charge", false, func(v string) []any { return []any{"0", "10", v, "o", "1", "0", "GET", "/"} }},
		{"hold", false, func(v string) []any { return []any{"0", "10", "1000", "o", v, "1", "1000", "0", "GET", "/"} }},
		{"hold", false, func(v string) []any { return []any{"0", "10", "1000", "o", "5", v, "1000", "0", "GET", "/"} }},
		{"hold", false, func(v string) []any { return []any{"0", "10", "1000", "o", "5", "1", v, "0", "GET", "/"} }},
		{"extend", false, func(v string) []any { return []any{"0", "10", "1000", "o", v, "1", "1", "1000"} }},
		{"extend", true, func(v string) []any { return []any{"0", "10", "1000", "o", "1", v, "0", "1000"} }},
		{"settle", true, func(v string) []any { return []any{"0", "10", "1000", "o", v, "0"} }},
		{"refund", false, func(v string) []any { return []any{"0", "10", "1000", "o", v, "refund_on"} }},
		{"transfer", false, func(v string) []any { return []any{"0", "10", "1000", "credit", "id", v, "", "by"} }},
		{"transfer", false, func(v string) []any { return []any{"0", "10", "1000", "debit", "id", v, "", "by"} }},
		{"account", true, func(v string) []any { return []any{"0", "10", "1000", "caller", v} }},
		{"ledger", false, func(v string) []any { return []any{"0", "10", "1000", "caller", "0", "", v} }},
	}
	for _, c := range cases {
		src := script(c.script)
		for _, v := range bad {
			if v == "0" && c.zeroOK {
				continue
			}
			args := c.args(v)
			reply, err := client.Eval(ctx, src, keys, args...).Slice()
			if err != nil {
				t.Fatalf("%s %q: %v", c.script, args, err)
			}
			if reply[0] != "INVALID" {
				t.Errorf("%s with %q: reply %v, want INVALID", c.script, args, reply)
			}
			if n := client.DBSize(ctx).Val(); n != 0 {
				t.Fatalf("%s with %q wrote %d keys", c.script, args, n)
			}
		}
	}
	for _, c := range []struct {
		script string
		args   []any
	}{
		{"settle", []any{"0", "10", "1000", "o", "1", "2"}},
		{"release", []any{"0", "10", "1000", "o", "expired"}},
		{"refund", []any{"0", "10", "1000", "o", "1", "because"}},
		{"transfer", []any{"0", "10", "1000", "gift", "id", "1", "", "by"}},
		{"account", []any{"0", "10", "1000", "admin", "0"}},
		{"ledger", []any{"0", "10", "1000", "caller", "0", "x-1", "5"}},
		{"ledger", []any{"0", "10", "1000", "caller", "0", "", "0"}},
		{"extend", []any{"0", "10", "1000", "o", "1", "5", "0", "1000"}},
		{"extend", []any{"0", "10", "1000", "o", "1", "1", "2", "1000"}},
	} {
		reply, err := client.Eval(ctx, script(c.script), keys, c.args...).Slice()
		if err != nil {
			t.Fatalf("%s %q: %v", c.script, c.args, err)
		}
		if reply[0] != "INVALID" {
			t.Errorf("%s with %q: reply %v, want INVALID", c.script, c.args, reply)
		}
		if n := client.DBSize(ctx).Val(); n != 0 {
			t.Fatalf("%s with %q wrote %d keys", c.script, c.args, n)
		}
	}
}

// TestRedisLostReplies drops a fraction of Redis's replies between go-redis
// and Redis, with go-redis's retries at their default. Every account's totals
// equal exactly the operations reported as done.
func TestRedisLostReplies(t *testing.T) {
	srv := redistest.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	faulty := newRedis(t, meter.RedisOptions{URL: "redis://" + proxy.Addr() + "/0", Timeout: 2 * time.Second})
	direct := newRedis(t, meter.RedisOptions{URL: srv.URL()})
	ctx := ctxTimeout(t, time.Minute)

	accounts := []string{"alice", "bob", "carol", "dave"}
	const start = 10_000
	for _, a := range accounts {
		if _, err := direct.Credit(ctx, meter.Transfer{Account: a, ID: "start", Amount: start}); err != nil {
			t.Fatal(err)
		}
	}
	proxy.DropReplies(0.1, 7)

	var (
		mu              sync.Mutex
		charged         = map[string]int64{}
		credited        = map[string]int64{}
		replays, failed atomic.Int64
		wg              sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				a := accounts[(w+i)%len(accounts)]
				amount := int64(1 + (w*7+i)%5)
				if i%4 == 0 {
					// A credit whose outcome is unknown is repeated with
					// its id until it is acknowledged, as an operator would.
					id := "w" + string(rune('a'+w)) + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
					for {
						r, err := faulty.Credit(ctx, meter.Transfer{Account: a, ID: id, Amount: amount})
						if err == nil {
							if r.Replayed {
								replays.Add(1)
							}
							break
						}
						if !errors.Is(err, meter.ErrUnavailable) {
							t.Errorf("credit: %v", err)
							return
						}
					}
					mu.Lock()
					credited[a] += amount
					mu.Unlock()
					continue
				}
				op := "op-" + string(rune('a'+w)) + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
				r, err := faulty.Charge(ctx, meter.Charge{Account: a, Op: op, Amount: amount})
				switch {
				case err == nil:
					if r.Replayed {
						replays.Add(1)
					}
					mu.Lock()
					charged[a] += amount
					mu.Unlock()
				case errors.Is(err, meter.ErrUnavailable):
					failed.Add(1) // cancelled in the background
				default:
					t.Errorf("charge: %v", err)
				}
			}
		})
	}
	wg.Wait()
	proxy.DropReplies(0, 0)
	if err := faulty.Drain(ctx); err != nil {
		t.Fatalf("background cancels never landed: %v", err)
	}
	if proxy.Dropped() == 0 || replays.Load() == 0 {
		t.Fatalf("dropped %d replies and saw %d replays: the test exercised nothing", proxy.Dropped(), replays.Load())
	}
	t.Logf("dropped %d replies, %d replayed results, %d charges reported failed", proxy.Dropped(), replays.Load(), failed.Load())
	for _, a := range accounts {
		got, err := direct.Account(ctx, meter.Read{Account: a})
		if err != nil {
			t.Fatal(err)
		}
		if want := start + credited[a] - charged[a]; got.Balance != want {
			t.Errorf("%s: balance %d, want %d", a, got.Balance, want)
		}
		if got.Credited != start+credited[a] || got.Charged-got.Refunded != charged[a] {
			t.Errorf("%s: credited %d charged %d refunded %d; want credited %d and net charged %d",
				a, got.Credited, got.Charged, got.Refunded, start+credited[a], charged[a])
		}
	}
}

// TestRedisFrozen stops Redis with SIGSTOP while a charge is in flight and
// resumes it after the charge has timed out: the charge reported as failed
// never lands, whatever the gateway's clock says.
func TestRedisFrozen(t *testing.T) {
	for _, skew := range []time.Duration{0, time.Hour, -time.Hour} {
		t.Run("skew "+skew.String(), func(t *testing.T) {
			srv := redistest.Start(t)
			s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Config: meter.Config{Now: skewed(skew)}})
			ctx := ctxTimeout(t, time.Minute)
			if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "start", Amount: 100}); err != nil {
				t.Fatal(err)
			}
			// Load the scripts, so the frozen call is one EVALSHA that
			// Redis runs as soon as it wakes.
			if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "warm", Amount: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Cancel(ctx, meter.Cancel{Account: "alice", Op: "warm"}); err != nil {
				t.Fatal(err)
			}

			srv.Pause(t)
			_, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "frozen", Amount: 10})
			if !errors.Is(err, meter.ErrUnavailable) {
				srv.Resume(t)
				t.Fatalf("charge against a frozen redis: %v, want ErrUnavailable", err)
			}
			if s.Pending() != 1 {
				t.Errorf("%d background cancels, want 1", s.Pending())
			}
			srv.Resume(t)
			if err := s.Drain(ctx); err != nil {
				t.Fatalf("the background cancel never landed: %v", err)
			}

			got, err := s.Account(ctx, meter.Read{Account: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if got.Balance != 100 {
				t.Errorf("balance %d, want 100", got.Balance)
			}
			page, err := s.Ledger(ctx, meter.LedgerQuery{Read: meter.Read{Account: "alice"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Entries {
				if e.Op == "frozen" {
					t.Errorf("the frozen charge left a %s entry of %d", e.Kind, e.Amount)
				}
			}
			// The op is tombstoned: applying it now changes nothing.
			if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "frozen", Amount: 10}); !errors.Is(err, meter.ErrCancelled) {
				t.Errorf("charge after the cancel: %v, want ErrCancelled", err)
			}
		})
	}
}

// skewed returns a clock off by d, without a monotonic reading, so that
// intervals are measured on the skewed wall clock itself.
func skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Round(0).Add(d) }
}

// TestRedisClockSkew runs charges through stores whose clocks are an hour off
// Redis's: none fails its deadline.
func TestRedisClockSkew(t *testing.T) {
	srv := redistest.Start(t)
	ctx := ctxTimeout(t, time.Minute)
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Config: meter.Config{Now: skewed(skew)}})
		account := "skew" + skew.String()
		if _, err := s.Credit(ctx, meter.Transfer{Account: account, ID: "start", Amount: 1000}); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			op := account + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			if _, err := s.Charge(ctx, meter.Charge{Account: account, Op: op, Amount: 1}); err != nil {
				t.Fatalf("skew %v: charge %d: %v", skew, i, err)
			}
			if _, err := s.Hold(ctx, meter.Hold{Account: account, Op: op + "h", Max: 1, Min: 1, TTL: time.Minute}); err != nil {
				t.Fatalf("skew %v: hold %d: %v", skew, i, err)
			}
		}
		if offset, rtt := s.ClockOffset(); (offset+skew).Abs() > time.Second || rtt <= 0 {
			t.Errorf("skew %v: offset %v with a round trip of %v, want about %v", skew, offset, rtt, -skew)
		}
		got, err := s.Account(ctx, meter.Read{Account: account})
		if err != nil {
			t.Fatal(err)
		}
		if got.Charged != 100 || got.Held != 100 {
			t.Errorf("skew %v: charged %d held %d, want 100 and 100", skew, got.Charged, got.Held)
		}
		// Holds expire on Redis's clock: a minute, not an hour off.
		page, _ := s.Ledger(ctx, meter.LedgerQuery{Read: meter.Read{Account: account}, Limit: 1})
		r, _ := s.Hold(ctx, meter.Hold{Account: account, Op: "probe", Max: 1, Min: 1, TTL: time.Minute})
		if d := r.Expires.Sub(page.Entries[0].Time); d < 59*time.Second || d > 61*time.Second {
			t.Errorf("skew %v: hold expires %v after the last entry, want a minute", skew, d)
		}
	}
}

// TestRedisUnreachable gives ErrUnavailable within the timeout, and changes
// nothing once Redis is back.
func TestRedisUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	s := newRedis(t, meter.RedisOptions{URL: srv.URL()})
	ctx := ctxTimeout(t, time.Minute)
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "start", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "down", Amount: 10}); !errors.Is(err, meter.ErrUnavailable) {
		t.Fatalf("charge with redis down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Account(ctx, meter.Read{Account: "alice"}); !errors.Is(err, meter.ErrUnavailable) {
		t.Fatalf("read with redis down: %v, want ErrUnavailable", err)
	}
	srv.Restart(t)
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.Account(ctx, meter.Read{Account: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Balance != 100 || got.Charged != 0 {
		t.Errorf("after restart: balance %d charged %d, want 100 and 0", got.Balance, got.Charged)
	}
}

// TestRedisCloseWaitsForCancels closes a store while a cancel is still
// trying: the client stays open until the cancel lands.
func TestRedisCloseWaitsForCancels(t *testing.T) {
	srv := redistest.Start(t)
	s, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, time.Minute)
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "start", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "late", Amount: 10}); !errors.Is(err, meter.ErrUnavailable) {
		srv.Resume(t)
		t.Fatalf("charge against a frozen redis: %v, want ErrUnavailable", err)
	}
	s.Close()
	srv.Resume(t)
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	other := newRedis(t, meter.RedisOptions{URL: srv.URL()})
	if _, err := other.Charge(ctx, meter.Charge{Account: "alice", Op: "late", Amount: 10}); !errors.Is(err, meter.ErrCancelled) {
		t.Errorf("charge after the cancel: %v, want ErrCancelled: the cancel never landed", err)
	}
	if _, err := s.Account(ctx, meter.Read{Account: "alice"}); err == nil {
		t.Error("the closed store still answers once its background work is done")
	}
}

// TestRedisClockResample moves the gateway's clock on by two minutes: the
// next operation measures the offset to Redis's clock again.
func TestRedisClockResample(t *testing.T) {
	srv := redistest.Start(t)
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Round(0).Add(time.Duration(ahead.Load())) }
	s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Config: meter.Config{Now: now}})
	ctx := ctxTimeout(t, time.Minute)
	if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "first", Amount: 1, Bonus: 10}); err != nil {
		t.Fatal(err)
	}
	if offset, _ := s.ClockOffset(); offset.Abs() > time.Second {
		t.Fatalf("offset %v, want about 0", offset)
	}
	ahead.Store(int64(2 * time.Minute))
	if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "second", Amount: 1}); err != nil {
		t.Fatal(err)
	}
	// The resample runs in the background; wait for it, bounded.
	for deadline := time.Now().Add(10 * time.Second); ; {
		offset, _ := s.ClockOffset()
		if (offset + 2*time.Minute).Abs() < time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offset %v after the clock moved on by 2m, want about -2m", offset)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisCloseWaitsForUses closes a store while a request still uses it:
// the request's later calls still work, and the store closes when it ends.
func TestRedisCloseWaitsForUses(t *testing.T) {
	srv := redistest.Start(t)
	s, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, time.Minute)
	done := s.Use()
	s.Close()
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "in-flight", Amount: 5}); err != nil {
		t.Fatalf("a call of a request in flight after Close: %v", err)
	}
	done()
	done() // ending a use twice changes nothing
	if _, err := s.Account(ctx, meter.Read{Account: "alice"}); !errors.Is(err, meter.ErrUnavailable) {
		t.Errorf("a call after the last use ended: %v, want ErrUnavailable from a closed store", err)
	}
}
