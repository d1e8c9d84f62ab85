package lease_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
)

// leased counts the requests paid from leases.
var leased atomic.Int64

// gateway is what a gateway does with a request priced at price: pay it
// from the lease, or charge it on its own, waiting for leases to drain
// before refusing it. It reports whether the request was paid.
func gateway(t *testing.T, m *lease.Manager, s meter.Store, account string, price int64, n *atomic.Int64) bool {
	if tk, ok := m.Take(account, "GET", "/x", "*", price); ok {
		leased.Add(1)
		tk.Done()
		return true
	}
	c := meter.Charge{Account: account, Op: fmt.Sprintf("op-%d-c", n.Add(1)), Amount: price, Method: "GET", Route: "/x"}
	var r meter.Receipt
	charge := func() (err error) {
		r, err = s.Charge(context.Background(), c)
		return err
	}
	err := charge()
	var short *meter.InsufficientError
	if errors.As(err, &short) && short.Held > 0 {
		err = m.Drain(context.Background(), account, charge)
	}
	switch {
	case err == nil:
		m.Observe(account, r.Balance, price)
		return true
	case errors.Is(err, meter.ErrInsufficient):
		return false
	}
	t.Errorf("charge: %v", err)
	return false
}

// newManager returns a Manager on s with a short flush, closed at the end
// of the test.
func newManager(t *testing.T, s meter.Store, cfg lease.Config) *lease.Manager {
	cfg.TTL = 10 * time.Second
	if cfg.Flush == 0 {
		cfg.Flush = 5 * time.Millisecond
	}
	m := lease.New(s, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m
}

// TestExactlyKPaid runs two gateways, each with its own Manager, and many
// clients sending requests until each is refused, against balances below,
// at and above the lease threshold, whole and not whole multiples of the
// price: exactly the balance is paid, and nothing stays held.
func TestExactlyKPaid(t *testing.T) {
	for _, tc := range []struct{ balance, price int64 }{
		{137, 1}, {999, 1}, {1000, 1}, {1001, 1}, {5000, 1}, {5003, 2}, {7919, 7},
	} {
		t.Run(fmt.Sprintf("%d by %d", tc.balance, tc.price), func(t *testing.T) {
			s := meter.NewMemory(meter.Config{})
			const account = "alice"
			if _, err := s.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: tc.balance}); err != nil {
				t.Fatal(err)
			}
			gws := []*lease.Manager{
				newManager(t, s, lease.Config{MinBalance: 1000}),
				newManager(t, s, lease.Config{MinBalance: 1000}),
			}
			var paid, ops atomic.Int64
			var byGateway [2]atomic.Int64
			var wg sync.WaitGroup
			for i := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					g := i % 2
					for gateway(t, gws[g], s, account, tc.price, &ops) {
						paid.Add(tc.price)
						byGateway[g].Add(1)
					}
				}()
			}
			wg.Wait()
			for _, m := range gws {
				if err := m.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.balance - tc.balance%tc.price
			if got := paid.Load(); got != want {
				t.Errorf("paid %d, want %d", got, want)
			}
			a, err := s.Account(context.Background(), meter.Read{Account: account})
			if err != nil {
				t.Fatal(err)
			}
			if a.Charged != want || a.Held != 0 || a.Balance != tc.balance-want {
				t.Errorf("account %+v: want charged %d, held 0, balance %d", a, want, tc.balance-want)
			}
			if n := byGateway[0].Load() + byGateway[1].Load(); n*tc.price != want {
				t.Errorf("the gateways paid %d and %d requests, want %d in all", byGateway[0].Load(), byGateway[1].Load(), want/tc.price)
			}
			checkClean(t, s, account)
			t.Logf("%d requests paid from leases, %d charged on their own", leased.Swap(0), ops.Load())
		})
	}
}

// checkClean verifies the account's records.
func checkClean(t *testing.T, s meter.Store, account string) {
	t.Helper()
	c, err := s.Verify(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Drift) > 0 {
		t.Errorf("verify: %+v", c.Drift)
	}
}

// leasedTicket takes a lease on the account by charging requests on their
// own until a lease pays one; it returns that request's ticket.
func leasedTicket(t *testing.T, m *lease.Manager, s meter.Store, account string) lease.Ticket {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if tk, ok := m.Take(account, "POST", "/y", "*", 5); ok {
			return tk
		}
		// Requests charged on their own, fast enough to be worth a lease.
		r, err := s.Charge(context.Background(), meter.Charge{Account: account, Op: fmt.Sprintf("%s-%d-c", account, i), Amount: 1})
		if err != nil {
			t.Fatal(err)
		}
		m.Observe(account, r.Balance, 1)
		if i >= 8 {
			// Enough to be leased: give the lease's first call a moment.
			pause()
		}
	}
	t.Fatal("no lease within 5s")
	return lease.Ticket{}
}

// pause yields to the Manager's goroutines for a moment.
func pause() { time.Sleep(time.Millisecond) }

// TestUnpay gives a ticket back before its lease's call charged it, and
// after: either way the request pays nothing, and the ledger shows the
// later one's charge and refund under the ticket's op.
func TestUnpay(t *testing.T) {
	s := meter.NewMemory(meter.Config{})
	const account = "bob"
	if _, err := s.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: 10_000}); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, s, lease.Config{MinBalance: 1000})

	before := leasedTicket(t, m, s, account)
	before.Unpay()
	before.Done()

	after := leasedTicket(t, m, s, account)
	op := after.Op()
	for deadline := time.Now().Add(5 * time.Second); sumOf(t, s, account, meter.KindCharge, op) != 5; pause() {
		if time.Now().After(deadline) {
			t.Fatalf("no charge of 5 under %s within 5s", op)
		}
	}
	after.Unpay()
	after.Done()
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sumOf(t, s, account, meter.KindRefund, op); got != 5 {
		t.Errorf("refunds under %s: %d, want 5", op, got)
	}
	a, err := s.Account(context.Background(), meter.Read{Account: account})
	if err != nil {
		t.Fatal(err)
	}
	if a.Charged-a.Refunded != sumOf(t, s, account, meter.KindCharge, "") || a.Held != 0 || a.Balance != 10_000-a.Charged+a.Refunded {
		t.Errorf("account %+v: want only the requests charged on their own charged, nothing held", a)
	}
	checkClean(t, s, account)
}

// sumOf adds up the account's entries of a kind under op, or, when op is
// empty, those of requests charged on their own.
func sumOf(t *testing.T, s meter.Store, account, kind, op string) int64 {
	t.Helper()
	page, err := s.Ledger(context.Background(), meter.LedgerQuery{Read: meter.Read{Account: account}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range page.Entries {
		if e.Kind == kind && (e.Op == op || op == "" && e.Detail.Lease == "") {
			n += e.Amount
		}
	}
	return n
}

// fakeClock is the memory store's clock, moved only by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestLongLabels sends a request whose route is longer than the ledger
// records: the lease does not pay it, so the store never refuses a call
// for it, and the lease goes on paying the others.
func TestLongLabels(t *testing.T) {
	s := meter.NewMemory(meter.Config{})
	const account = "dora"
	if _, err := s.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: 10_000}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	m := newManager(t, s, lease.Config{MinBalance: 1000, Lost: func(n int64) { lost.Add(n) }})
	tk := leasedTicket(t, m, s, account)
	tk.Done()
	if _, ok := m.Take(account, "GET", "/"+strings.Repeat("x", meter.MaxLabel), "*", 1); ok {
		t.Fatal("a lease paid a request whose route the store would refuse")
	}
	if _, ok := m.Take(account, strings.Repeat("M", meter.MaxLabel+1), "/y", "*", 1); ok {
		t.Fatal("a lease paid a request whose method the store would refuse")
	}
	other, ok := m.Take(account, "GET", "/y", "*", 1)
	if !ok {
		t.Fatal("the lease stopped paying")
	}
	other.Done()
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Account(context.Background(), meter.Read{Account: account}); a.Held != 0 || lost.Load() != 0 {
		t.Errorf("account %+v, %d lost: want nothing held or lost", a, lost.Load())
	}
	checkClean(t, s, account)
}

// TestRefundAfterLeaseGone charges a leased request, then lets the store
// expire the lease: the request's refund, given back after the gateway
// found the lease gone, still lands, as a call of refunds alone.
func TestRefundAfterLeaseGone(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := meter.NewMemory(meter.Config{Now: clock.Now})
	const account = "erin"
	if _, err := s.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: 10_000}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int64
	m := newManager(t, s, lease.Config{MinBalance: 1000, Lost: func(n int64) { lost.Add(n) }})
	tk := leasedTicket(t, m, s, account)
	op := tk.Op()
	for deadline := time.Now().Add(5 * time.Second); sumOf(t, s, account, meter.KindCharge, op) != 5; pause() {
		if time.Now().After(deadline) {
			t.Fatalf("no charge of 5 under %s within 5s", op)
		}
	}
	clock.advance(time.Hour) // past the lease's TTL on the store's clock
	for deadline := time.Now().Add(5 * time.Second); ; pause() {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not found gone within 5s")
		}
		if _, ok := m.Take(account, "POST", "/y", "*", 5); !ok {
			break
		}
	}
	tk.Unpay()
	tk.Done()
	for deadline := time.Now().Add(5 * time.Second); sumOf(t, s, account, meter.KindRefund, op) != 5; pause() {
		if time.Now().After(deadline) {
			t.Fatalf("refunds under %s: %d within 5s, want 5", op, sumOf(t, s, account, meter.KindRefund, op))
		}
	}
	checkClean(t, s, account)
}

// TestIdleLeaseDrains has one gateway lease an account with a fixed size,
// then go quiet, while another gateway's request is refused for the
// balance: the idle lease learns the account is draining within a flush and
// gives its tokens back, so the request is paid.
func TestIdleLeaseDrains(t *testing.T) {
	s := meter.NewMemory(meter.Config{})
	const account = "fay"
	if _, err := s.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: 10_000}); err != nil {
		t.Fatal(err)
	}
	a := newManager(t, s, lease.Config{MinBalance: 1000, Size: 2000, Flush: 20 * time.Millisecond})
	b := newManager(t, s, lease.Config{MinBalance: 1000, Size: 2000, Flush: 20 * time.Millisecond})
	tk := leasedTicket(t, a, s, account)
	tk.Done()
	// A burst of requests leaves the lease's rate high as it goes quiet.
	for range 200 {
		if tk, ok := a.Take(account, "POST", "/y", "*", 1); ok {
			tk.Done()
		}
	}
	for deadline := time.Now().Add(5 * time.Second); sumOf(t, s, account, meter.KindCharge, tk.Op()) < 100; pause() {
		if time.Now().After(deadline) {
			t.Fatal("the burst was not charged within 5s")
		}
	}
	acct, err := s.Account(context.Background(), meter.Read{Account: account})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Debit(context.Background(), meter.Transfer{Account: account, ID: "take-all", Amount: acct.Balance}); err != nil {
		t.Fatal(err)
	}
	c := meter.Charge{Account: account, Op: "refused-c", Amount: 1}
	_, err = s.Charge(context.Background(), c)
	var short *meter.InsufficientError
	if !errors.As(err, &short) || short.Held == 0 {
		t.Fatalf("charge: %v, want refused while the lease holds tokens", err)
	}
	err = b.Drain(context.Background(), account, func() error {
		_, err := s.Charge(context.Background(), c)
		return err
	})
	if err != nil {
		t.Fatalf("after draining: %v, want the request paid from what the lease gave back", err)
	}
}

// underReporting is a store whose reply to a lease's first call says it
// holds 3 tokens fewer than it does, as a store that lost a call in a
// failover would.
type underReporting struct{ meter.Store }

func (s underReporting) Lease(ctx context.Context, l meter.Lease) (meter.LeaseReceipt, error) {
	r, err := s.Store.Lease(ctx, l)
	if err == nil && l.Seq == 1 {
		r.Held -= 3
	}
	return r, err
}

// TestLeaseFollowsStore has a store report less than the gateway counted:
// the lease pays from what the store says it holds, never more.
func TestLeaseFollowsStore(t *testing.T) {
	mem := meter.NewMemory(meter.Config{})
	const account = "gus"
	if _, err := mem.Credit(context.Background(), meter.Transfer{Account: account, ID: "fund", Amount: 10_000}); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, underReporting{mem}, lease.Config{MinBalance: 1000, Size: 40, Flush: time.Hour})
	tk := leasedTicket(t, m, mem, account) // 5 of the 40 - 3 the store reported
	tk.Done()
	paid := int64(5)
	for {
		tk, ok := m.Take(account, "POST", "/y", "*", 1)
		if !ok {
			break
		}
		tk.Done()
		paid++
	}
	if paid != 37 {
		t.Errorf("the lease paid %d tokens, want the 37 its store reported", paid)
	}
}
