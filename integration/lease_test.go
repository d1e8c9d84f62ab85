package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// leaseFlush is the flush of the lease tests' gateways: the default.
const leaseFlush = 100 * time.Millisecond

// timedShot is a shot with the gateway that answered it and when.
type timedShot struct {
	shot
	gateway    int
	start, end time.Time
}

// TestLeaseExactness sends many clients through two gateway processes with
// leases on (the default on Redis), each client until it is refused,
// against a balance below min_balance (137, never leased) and one above
// (5,000): exactly the balance is paid, forwarded and charged, and nothing
// stays held. Above, both gateways spend the last tokens, and no request
// that starts more than a flush after the first refusal is paid: no gateway
// refuses while the other holds lease tokens that could pay.
func TestLeaseExactness(t *testing.T) {
	logDuration(t)
	srv := redistest.Start(t)
	for _, k := range []int64{137, int64(chaosSize(5000, 1500))} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			up := newUpstream(t)
			prefix := fmt.Sprintf("lease-exact-%d", k)
			gws := startChaosGateways(t, 2, "url "+srv.URL()+"\n\t\t\ttimeout 2s", prefix, up)
			gws[0].mustCredit(t, "alice", k)
			tok := token(t, "alice")
			clients := chaosSize(1000, 200)

			var mu sync.Mutex
			var shots []timedShot
			ta := &tally{}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					<-start
					g := i % len(gws)
					for range k + 1 {
						at := time.Now()
						s := fire(gws[g].URL, "alice", tok)
						ta.add(s)
						mu.Lock()
						shots = append(shots, timedShot{s, g, at, at.Add(s.took)})
						mu.Unlock()
						if s.err != nil || s.status != http.StatusOK {
							return
						}
					}
				})
			}
			close(start)
			wg.Wait()

			as := gws[0].settled(t, "alice")
			ta.expectOnly(t, http.StatusOK, http.StatusPaymentRequired)
			if paid := ta.count(http.StatusOK); paid != k {
				t.Errorf("%d paid, want %d (%s)", paid, k, ta)
			}
			if as[0].Balance != 0 || as[0].Held != 0 {
				t.Errorf("account %+v: want balance 0, held 0", as[0])
			}
			expectExact(t, ta, up, as)
			verifyClean(t, gws[0])

			firstRefusal := time.Time{}
			var paid []timedShot
			for _, s := range shots {
				switch {
				case s.status == http.StatusOK:
					paid = append(paid, s)
				case s.status == http.StatusPaymentRequired && (firstRefusal.IsZero() || s.end.Before(firstRefusal)):
					firstRefusal = s.end
				}
			}
			late := 0
			for _, s := range paid {
				if s.start.After(firstRefusal.Add(leaseFlush)) {
					late++
				}
			}
			if late > 0 {
				t.Errorf("%d requests that started more than %v after the first refusal were paid", late, leaseFlush)
			}
			slices.SortFunc(paid, func(a, b timedShot) int { return a.end.Compare(b.end) })
			var last [2]int
			for _, s := range paid[len(paid)-min(len(paid), 50):] {
				last[s.gateway]++
			}
			if k >= 1000 && (last[0] == 0 || last[1] == 0) {
				t.Errorf("the last 50 paid requests went through the gateways %d and %d times", last[0], last[1])
			}
			t.Logf("%d clients against %d: %s; the last 50 paid through the gateways %d and %d times", clients, k, ta, last[0], last[1])
		})
	}
}

// TestLeaseRefundOn sends leased requests whose upstream answers 500 under
// refund_on 5xx: one answered before its lease's flush charged it, and one
// answered after. Neither pays anything: the second's charge entry has a
// refund entry under the same op.
func TestLeaseRefundOn(t *testing.T) {
	srv := redistest.Start(t)
	release := make(chan struct{})
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-fail" {
			<-release
		}
		if r.URL.Path != "/ok" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	g := startGateway(t, srv, "tollgate 1\n\treverse_proxy "+up, "lease {\n\t\t\tflush 50ms\n\t\t}")
	g.credit(t, "alice", 10_000)
	tok := token(t, "alice")
	// Requests charged on their own, back to back, have the account leased
	// for the ones that follow.
	oks := int64(0)
	waitFor(t, "a request paid from a lease", func() bool {
		for range 10 {
			resp, body := g.do(t, "GET", "/ok", tok)
			expectStatus(t, "a request that succeeds", resp, body, http.StatusOK)
			oks++
			if leaseOp(resp.Header.Get("Tollgate-Op")) {
				return true
			}
		}
		return false
	})

	resp, body := g.do(t, "GET", "/fail", tok)
	expectStatus(t, "a failing request before its flush", resp, body, http.StatusInternalServerError)
	if got := resp.Header.Get("Tollgate-Charged"); got != "0" || !leaseOp(resp.Header.Get("Tollgate-Op")) {
		t.Errorf("Tollgate-Charged %q and Tollgate-Op %q, want 0 and a lease's op", got, resp.Header.Get("Tollgate-Op"))
	}
	base := leaseCharged(t, g, "alice")

	type answer struct {
		resp *http.Response
		body string
	}
	done := make(chan answer, 1)
	go func() {
		resp, body := g.do(t, "GET", "/slow-fail", tok)
		done <- answer{resp, body}
	}()
	// The slow request's lease charges it while its upstream has not
	// answered: wait for a charge entry of a lease that covers a request.
	waitFor(t, "the slow request's lease to be flushed", func() bool {
		return leaseCharged(t, g, "alice") > base
	})
	close(release)
	a := <-done
	expectStatus(t, "a failing request after its flush", a.resp, a.body, http.StatusInternalServerError)
	op := a.resp.Header.Get("Tollgate-Op")
	waitFor(t, "the refund under "+op, func() bool { return entriesOf(t, g, "alice", meter.KindRefund, op) == 1 })
	var covered int64
	for _, e := range ledgerOf(t, g, "alice") {
		if e.Kind == meter.KindCharge && e.Op == op && e.Detail.Route == "/slow-fail" {
			covered += e.Detail.Count
		}
	}
	if covered != 1 {
		t.Errorf("charge entries under %s cover %d requests to /slow-fail, want 1", op, covered)
	}
	waitFor(t, "the net charge to be the requests that succeeded", func() bool {
		a := g.account(t, "alice")
		return a.Charged-a.Refunded == oks
	})
}

// leaseOp reports an op of a lease's call: 32 hex digits, "-l" and the
// call's number.
func leaseOp(op string) bool {
	_, seq, ok := strings.Cut(op, "-l")
	return ok && len(op) == 32+2+len(seq) && seq != "" && strings.Trim(seq, "0123456789") == ""
}

// leaseCharged returns how many requests the account's leases charged.
func leaseCharged(t *testing.T, g *gateway, account string) int64 {
	var n int64
	for _, e := range ledgerOf(t, g, account) {
		if e.Kind == meter.KindCharge && e.Detail.Lease != "" {
			n += e.Detail.Count
		}
	}
	return n
}

// entriesOf counts the account's entries of a kind under op.
func entriesOf(t *testing.T, g *gateway, account, kind, op string) int {
	n := 0
	for _, e := range ledgerOf(t, g, account) {
		if e.Kind == kind && e.Op == op {
			n++
		}
	}
	return n
}

// ledgerOf reads the account's newest 1,000 entries.
func ledgerOf(t *testing.T, g *gateway, account string) []meter.Entry {
	t.Helper()
	page, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meter.Read{Account: account}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// TestLeaseStoreCalls sends a hot account's load through a gateway process
// with leases on, and counts the store calls, the scripts Redis ran: at
// most 0.05 a request.
func TestLeaseStoreCalls(t *testing.T) {
	logDuration(t)
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startChaosGateway(t, "url "+srv.URL(), "lease-calls", up)
	g.mustCredit(t, "alice", 1_000_000)
	before := scriptCalls(t, srv)
	n := int64(chaosSize(20_000, 5_000))
	ta := loadSpec{gateways: []*chaosGateway{g}, accounts: []string{"alice"}, workers: 32, max: n, deadline: time.Minute}.run(t)
	calls := scriptCalls(t, srv) - before
	ta.expectOnly(t, http.StatusOK)
	perRequest := float64(calls) / float64(n)
	t.Logf("%d requests, %d store calls: %.4f a request", n, calls, perRequest)
	if perRequest > 0.05 {
		t.Errorf("%.4f store calls a request, want at most 0.05", perRequest)
	}
	as := g.settled(t, "alice")
	expectExact(t, ta, up, as)
	verifyClean(t, g)
}

// scriptCalls returns how many scripts Redis has run (EVALSHA and EVAL),
// from INFO commandstats: one a store call.
func scriptCalls(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	return redisCalls(t, srv, func(command string) bool { return command == "evalsha" || command == "eval" })
}

// TestLeaseDrainsForHold leases an account through a per-request price,
// then takes its whole available balance away, so that only the lease holds
// tokens: a request under a byte price, refused a hold at first, waits for
// the lease to give its tokens back, and is served.
func TestLeaseDrainsForHold(t *testing.T) {
	srv := redistest.Start(t)
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	g := startGateway(t, srv, `tollgate {
		price /fixed 1
		price /bytes {
			request 5
			response_bytes 1 per 1KiB
		}
	}
	reverse_proxy `+up, "lease {\n\t\t\tflush 50ms\n\t\t}")
	g.credit(t, "alice", 2000)
	tok := token(t, "alice")
	waitFor(t, "a request paid from a lease", func() bool {
		for range 10 {
			resp, body := g.do(t, "GET", "/fixed", tok)
			expectStatus(t, "a request under a per-request price", resp, body, http.StatusOK)
			if leaseOp(resp.Header.Get("Tollgate-Op")) {
				return true
			}
		}
		return false
	})
	a := g.account(t, "alice")
	if a.Held == 0 {
		t.Fatalf("account %+v: want the lease held", a)
	}
	if _, err := g.store.Debit(context.Background(), meter.Transfer{Account: "alice", ID: "take-all", Amount: a.Balance}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resp, body := g.do(t, "GET", "/bytes", tok)
	expectStatus(t, "a request under a byte price once only the lease holds tokens", resp, body, http.StatusOK)
	t.Logf("served after %v", time.Since(start).Round(time.Millisecond))
	released := false
	for _, e := range ledgerOf(t, g, "alice") {
		released = released || e.Kind == meter.KindRelease && e.Detail.Reason == meter.ReasonLease
	}
	if !released {
		t.Error("the lease gave nothing back")
	}
}
