package integration

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// leasedBelowMinimum is the lease option of the chaos tests whose balances
// are below the default min_balance: their accounts are leased all the
// same.
const leasedBelowMinimum = "lease {\n\t\t\tmin_balance 10\n\t\t}"

// TestChaosLeaseLostReplies drops 10% of Redis's replies to two gateway
// processes that pay from leases, until two balances above min_balance run
// out: no lease call is counted twice and no request is charged twice or
// forwarded unpaid, so the 2xx answers, the upstream's hits and the requests
// charged are the same number, and verify finds no drift.
func TestChaosLeaseLostReplies(t *testing.T) {
	balance := int64(chaosSize(3000, 1500))
	ta, _, observer := lostReplies(t, "chaos-lease-replies", balance, 32, balance*2*5/4)
	leased := observer.leased(t, "alice", "bob")
	if leased == 0 {
		t.Error("no request was paid from a lease")
	}
	t.Logf("%s; %d requests paid from leases", ta, leased)
}

// TestChaosLeaseCrash kills one of two gateway processes with SIGKILL while
// a hot account's load runs through both. Once the dead gateway's lease has
// expired (hold_expiry 10s), verify finds no drift, nothing is held, and
// what was served but never charged is at most what the dead gateway served
// in two flushes: the loss bound of a crash. (A request whose answer the
// crash lost may have been charged all the same.)
func TestChaosLeaseCrash(t *testing.T) {
	logDuration(t)
	srv := redistest.Start(t)
	up := newUpstream(t)
	const prefix = "chaos-lease-crash"
	store := "url " + srv.URL()
	victim := startChaosGatewayWith(t, store, prefix, "hold_expiry 10s", up)
	survivor := startChaosGatewayWith(t, store, prefix, "hold_expiry 10s", up)
	survivor.mustCredit(t, "alice", 1_000_000)
	tok := token(t, "alice")

	var paid, victimPaid, failed atomic.Int64
	var killed atomic.Bool
	start, stop := time.Now(), make(chan struct{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			g := []*chaosGateway{victim, survivor}[i%2]
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := fire(g.URL, "alice", tok)
				switch {
				case s.err != nil && g == victim && killed.Load():
					failed.Add(1)
					return
				case s.err != nil || s.status != http.StatusOK:
					t.Errorf("a request got %d, %v", s.status, s.err)
					return
				}
				paid.Add(1)
				if g == victim {
					victimPaid.Add(1)
				}
			}
		})
	}
	waitFor(t, "the victim to serve 3,000 requests", func() bool { return victimPaid.Load() >= 3000 })
	killed.Store(true)
	victim.kill()
	rate := float64(victimPaid.Load()) / time.Since(start).Seconds()
	from := paid.Load()
	waitFor(t, "the survivor to serve 500 more", func() bool { return paid.Load() >= from+500 })
	close(stop)
	wg.Wait()

	as := survivor.settled(t, "alice")
	verifyClean(t, survivor)
	served, charged := paid.Load(), netCharged(as)
	lost := served - charged
	bound := int64(2*rate*leaseFlush.Seconds()) + 16
	t.Logf("served %d, charged %d: %d served and never charged after the crash; the victim served %.0f a second, so the bound is %d",
		served, charged, lost, rate, bound)
	// A request in flight to the victim when it died may have been
	// charged, its answer lost: it counts below 0.
	if lost < -failed.Load() || lost > bound {
		t.Errorf("%d requests served and never charged, want %d to %d", lost, -failed.Load(), bound)
	}
	// A request in flight to the victim when it died may have reached the
	// upstream, its answer lost.
	if hits := up.hits.Load(); hits < served || hits > served+failed.Load() {
		t.Errorf("%d upstream hits, %d paid answers and %d lost in the crash", hits, served, failed.Load())
	}
}
