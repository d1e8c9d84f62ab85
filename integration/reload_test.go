package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// hammer sends requests from workers until stop is closed, and counts the
// answers by status, 0 for a request that got no answer. A connection queued
// on a listener that a reload closes is reset unread: such requests are
// never handled, so never charged. total counts every answer so far.
func hammer(t *testing.T, g *gateway, path, tok string, workers int, stop <-chan struct{}) (wait func() map[int]int64, total *atomic.Int64) {
	total = new(atomic.Int64)
	var (
		mu     sync.Mutex
		counts = map[int]int64{}
		wg     sync.WaitGroup
	)
	// A new connection a request: a reload closes idle keep-alive
	// connections, and that race says nothing about metering.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", g.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				status := 0
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
				total.Add(1)
			}
		})
	}
	return func() map[int]int64 {
		wg.Wait()
		return counts
	}, total
}

// reloadTen reloads the last config ten times, each after some requests.
func reloadTen(t *testing.T, total *atomic.Int64) {
	t.Helper()
	for range 10 {
		from := total.Load()
		waitFor(t, "requests between reloads", func() bool { return total.Load() >= from+20 })
		if err := caddy.Load(lastConfig, true); err != nil {
			t.Fatal(err)
		}
	}
}

// redisClients counts the connections Redis has open.
func redisClients(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	list, err := srv.Client(t).ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(list, "\n")
}

// TestReloadsUnderLoad reloads the config 10 times while requests flow,
// paid from leases (the default on Redis): every paid request is charged
// once, every lease is flushed and given back, and the store's connections
// are shared across configs rather than opened anew.
func TestReloadsUnderLoad(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 1_000_000)
	tok := token(t, "alice")
	for range 20 {
		g.do(t, "GET", "/warm", tok)
	}
	before := redisClients(t, srv)

	stop := make(chan struct{})
	wait, total := hammer(t, g, "/x", tok, 8, stop)
	reloadTen(t, total)
	close(stop)
	counts := wait()
	t.Logf("answers by status (0: reset unread by a reload): %v", counts)
	if counts[http.StatusOK] < 100 || len(counts) > 2 || (len(counts) == 2 && counts[0] == 0) {
		t.Fatalf("answers during reloads: %v, want 200s and connections reset unread", counts)
	}
	// Leases charge what they spent within a flush; every old config's
	// leases were flushed and given back as it stopped.
	paid := counts[http.StatusOK] + 20
	waitFor(t, "the charges of every paid answer", func() bool {
		a := g.account(t, "alice")
		return a.Charged >= paid && a.Held == 0
	})
	if a := g.account(t, "alice"); a.Charged != paid || up.hits.Load() != paid {
		t.Errorf("%d paid answers, %d charged, %d upstream hits: want them equal", paid, a.Charged, up.hits.Load())
	}
	if after := redisClients(t, srv); after-before >= 20 {
		t.Errorf("redis has %d connections after 10 reloads, %d before: configs do not share the store", after, before)
	}
}

// TestReloadWhileUpstreamFails reloads while the upstream answers 500: every
// charge is still refunded.
func TestReloadWhileUpstreamFails(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 2\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 1_000_000)
	stop := make(chan struct{})
	wait, total := hammer(t, g, "/fail", token(t, "alice"), 8, stop)
	reloadTen(t, total)
	close(stop)
	counts := wait()
	if counts[http.StatusInternalServerError] < 100 || len(counts) > 2 || (len(counts) == 2 && counts[0] == 0) {
		t.Fatalf("answers: %v, want 500s and connections reset unread", counts)
	}
	// A leased request answered before its lease's flush is never charged;
	// one answered after is charged and refunded.
	waitFor(t, "every charge refunded", func() bool {
		a := g.account(t, "alice")
		return a.Refunded == a.Charged && a.Held == 0 && a.Balance == 1_000_000
	})
}

// TestRefundMeetsFrozenRedis refunds a failed request while Redis is frozen:
// the refund lands once Redis wakes.
func TestRefundMeetsFrozenRedis(t *testing.T) {
	srv := redistest.Start(t)
	var slow atomic.Bool
	release := make(chan struct{})
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			srv.Pause(t) // Redis freezes while the upstream answers
			close(release)
		}
		w.WriteHeader(http.StatusBadGateway)
	})
	g := startGateway(t, srv, "tollgate 5\nreverse_proxy "+up, "")
	g.credit(t, "alice", 100)
	slow.Store(true)
	resp, body := g.do(t, "GET", "/x", token(t, "alice"))
	<-release
	srv.Resume(t)
	expectStatus(t, "failed upstream", resp, body, http.StatusBadGateway)
	if resp.Header.Get("Tollgate-Charged") != "5" {
		t.Errorf("charged %q: the refund cannot have landed while Redis was frozen", resp.Header.Get("Tollgate-Charged"))
	}
	waitFor(t, "the refund to land", func() bool {
		a := g.account(t, "alice")
		return a.Balance == 100 && a.Refunded == 5
	})
}

// TestMemoryStoreSurvivesReloads credits the memory store, reloads, and finds
// the balance kept.
func TestMemoryStoreSurvivesReloads(t *testing.T) {
	port, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		jwt {
			hmac_secret %s
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	tollgate 1
	respond ok
}
`, adminPort, secret, port)
	if err := load(t, cfg); err != nil {
		t.Fatal(err)
	}
	g := &gateway{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort), client: http.DefaultClient}
	// The memory store lives as long as this process: a name of its own.
	memo := fmt.Sprint("memo-", time.Now().UnixNano())
	resp, body := g.admin(t, "POST", "/accounts/"+memo+"/credit", `{"amount":50,"id":"m1"}`)
	expectStatus(t, "credit", resp, body, http.StatusOK)
	for range 3 {
		if err := load(t, cfg); err != nil {
			t.Fatal(err)
		}
	}
	r, b := g.do(t, "GET", "/", tokenPlain(t, memo))
	expectStatus(t, "paid request after reloads", r, b, http.StatusOK)
	if r.Header.Get("Tollgate-Balance") != "49" {
		t.Errorf("balance %q after reloads, want 49", r.Header.Get("Tollgate-Balance"))
	}
}
