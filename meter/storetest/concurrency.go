package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// call gives fn a context of its own, for a goroutine's call to the store.
func call(fn func(context.Context)) {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	fn(c)
}

// testConcurrentCharges runs 1000 charges of 1 at once against a balance of
// exactly 137: exactly 137 succeed and the rest are refused.
func testConcurrentCharges(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	const k = 137
	fund(t, s, "alice", k)
	var paid, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1})
				var ie *meter.InsufficientError
				switch {
				case err == nil && r.Amount == 1 && !r.Replayed && r.Balance >= 0 && r.Balance < k:
					paid.Add(1)
				case errors.As(err, &ie) && ie.Balance == 0 && ie.Price == 1:
					refused.Add(1)
				default:
					t.Errorf("charge %d: %+v, %v", i, r, err)
				}
			})
		})
	}
	wg.Wait()
	if paid.Load() != k || refused.Load() != 1000-k {
		t.Errorf("%d paid and %d refused, want %d and %d", paid.Load(), refused.Load(), k, 1000-k)
	}
	expectTotals(t, s, "alice", meter.Account{Credited: k, Charged: k})
	if e := checkInvariant(t, s, "alice", false); len(e) != k+1 {
		t.Errorf("%d ledger entries, want the credit and %d charges", len(e), k)
	}
}

// testConcurrentHolds runs 500 holds of up to 3 at once against 1000: the
// holds take what the balance had, never more.
func testConcurrentHolds(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 1000)
	var held, granted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.Hold(c, meter.Hold{Account: "alice", Op: fmt.Sprint("h", i), Max: 3, Min: 1, TTL: time.Hour})
				var ie *meter.InsufficientError
				switch {
				case err == nil && r.Amount >= 1 && r.Amount <= 3 && r.Held == r.Amount && r.Balance >= 0:
					held.Add(r.Amount)
					granted.Add(1)
				case errors.As(err, &ie) && ie.Balance == 0 && ie.Price == 1:
					refused.Add(1)
				default:
					t.Errorf("hold %d: %+v, %v", i, r, err)
				}
			})
		})
	}
	wg.Wait()
	a := account(t, s, "alice")
	invariantHolds(t, a)
	if held.Load() != 1000-a.Balance || a.Held != held.Load() {
		t.Errorf("holds granted %d, the account holds %d with balance %d: want granted == held == 1000 - balance", held.Load(), a.Held, a.Balance)
	}
	// 333 holds of 3 and one of 1 take all 1000; the other 166 are refused.
	if held.Load() != 1000 || granted.Load() != 334 || refused.Load() != 166 {
		t.Errorf("%d holds granted %d in all, %d refused; want 334 granting 1000, 166 refused", granted.Load(), held.Load(), refused.Load())
	}
	expectTotals(t, s, "alice", meter.Account{Credited: 1000, Held: 1000})
	checkInvariant(t, s, "alice", false)
}

// testConcurrentCredits sends one credit id 50 times at once: it is credited
// once and every caller gets the same entry and balance.
func testConcurrentCredits(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	results := make([]meter.TransferReceipt, 50)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 500, Reason: "purchase", By: fmt.Sprint("op", i)})
				if err != nil {
					t.Errorf("credit %d: %v", i, err)
				}
				results[i] = r
			})
		})
	}
	wg.Wait()
	replayed := 0
	var first meter.TransferReceipt
	for _, r := range results {
		if r.Replayed {
			replayed++
		} else {
			first = r
		}
	}
	if replayed != 49 {
		t.Fatalf("%d results replayed, want 49", replayed)
	}
	for i, r := range results {
		want := first
		want.Replayed = r.Replayed
		if !sameTransfer(r, want) || r.Balance != 500 || r.Entry.Amount != 500 {
			t.Errorf("credit %d: %+v, want %+v", i, r, want)
		}
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 500, Credited: 500})
	if e := checkInvariant(t, s, "alice", false); len(e) != 1 || !sameEntry(e[0], first.Entry) {
		t.Errorf("ledger %+v, want the one credit %+v", e, first.Entry)
	}
}

// testConcurrentArrival sends a new account's first 100 caller operations at
// once: the bonus is credited exactly once.
func testConcurrentArrival(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	const bonus = 50
	var paid atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			call(func(c context.Context) {
				var err error
				switch i % 4 {
				case 0:
					_, err = s.Account(c, meter.Read{Account: "new", Mode: meter.Caller, Bonus: bonus})
				case 1:
					_, err = s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "new", Mode: meter.Caller, Bonus: bonus}})
				default:
					if _, err = s.Charge(c, meter.Charge{Account: "new", Op: fmt.Sprint("op", i), Amount: 1, Bonus: bonus}); err == nil {
						paid.Add(1)
					}
				}
				if err != nil {
					t.Errorf("caller op %d: %v", i, err)
				}
			})
		})
	}
	wg.Wait()
	// 50 charges of 1 against the bonus of 50: all are paid.
	if paid.Load() != 50 {
		t.Errorf("%d charges paid, want 50", paid.Load())
	}
	expectTotals(t, s, "new", meter.Account{Credited: bonus, Charged: 50})
	bonuses := 0
	for _, e := range checkInvariant(t, s, "new", false) {
		if e.Kind == meter.KindCredit {
			bonuses++
			if e.Op != meter.ReasonSignupBonus || e.Amount != bonus || e.Detail.Reason != meter.ReasonSignupBonus || e.Detail.By != "tollgate" {
				t.Errorf("credit entry %+v, want the signup_bonus", e)
			}
		}
	}
	if bonuses != 1 {
		t.Errorf("%d credit entries, want one signup_bonus", bonuses)
	}
}

// testConcurrentHoldLifecycle races settles, releases, extensions and
// cancels of one hold: the first settle, release or cancel closes it, and
// the account ends as exactly one of them left it.
func testConcurrentHoldLifecycle(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	const rounds = 20
	for round := range rounds {
		c := ctx(t)
		id := fmt.Sprint("acct", round)
		fund(t, s, id, 10)
		must(s.Hold(c, meter.Hold{Account: id, Op: "h", Max: 6, Min: 1, TTL: time.Hour}))(t)
		var settled, released, cancelled, extended atomic.Int64
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				call(func(c context.Context) {
					var (
						r       meter.Receipt
						err     error
						applied *atomic.Int64
					)
					switch i % 4 {
					case 0:
						r, err = s.Settle(c, meter.Settle{Account: id, Op: "h", Amount: 4})
						applied = &settled
					case 1:
						r, err = s.Release(c, meter.Release{Account: id, Op: "h", Reason: meter.ReasonRefundOn})
						applied = &released
					case 2:
						r, err = s.Cancel(c, meter.Cancel{Account: id, Op: "h"})
						applied = &cancelled
					default:
						r, err = s.Extend(c, meter.Extend{Account: id, Op: "h", Seq: int64(i), Max: 1, Min: 1, TTL: time.Hour})
						applied = &extended
					}
					switch {
					case err == nil && !r.Replayed:
						applied.Add(1)
					case err == nil, errors.Is(err, meter.ErrGone), errors.Is(err, meter.ErrCancelled), errors.Is(err, meter.ErrInsufficient):
					default:
						t.Errorf("%s, call %d: %v", id, i, err)
					}
				})
			})
		}
		wg.Wait()
		if settled.Load() > 1 || released.Load() > 1 || cancelled.Load() > 1 || settled.Load()+released.Load() > 1 {
			t.Errorf("%s: applied %d settles, %d releases, %d cancels; want at most one of settle and release, and one cancel",
				id, settled.Load(), released.Load(), cancelled.Load())
		}
		a := account(t, s, id)
		ext := extended.Load()
		var want meter.Account
		switch {
		case settled.Load() == 1 && cancelled.Load() == 1:
			// Settled, then the cancel refunded the charge.
			want = meter.Account{Balance: 10, Credited: 10, Charged: 4, Refunded: 4}
		case settled.Load() == 1:
			want = meter.Account{Balance: 6, Credited: 10, Charged: 4}
		default:
			want = meter.Account{Balance: 10, Credited: 10}
		}
		if totals(a) != want {
			t.Errorf("%s after %d settles, %d releases, %d cancels, %d extensions: %+v, want %+v",
				id, settled.Load(), released.Load(), cancelled.Load(), ext, totals(a), want)
		}
		if settled.Load()+released.Load()+cancelled.Load() == 0 {
			t.Errorf("%s: nothing closed the hold", id)
		}
		e := checkInvariant(t, s, id, false)
		holdEntries := int64(0)
		for _, x := range e {
			if x.Kind == meter.KindHold {
				holdEntries++
			}
		}
		if holdEntries != 1+ext {
			t.Errorf("%s: %d hold entries, want the hold and %d extensions", id, holdEntries, ext)
		}
	}
}

// testConcurrentRefundsAndDebits races one refund many times and distinct
// debits against a balance: the refund lands once, and the debits take
// exactly what the balance had.
func testConcurrentRefundsAndDebits(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 255)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 5}))(t)
	var refunds, debits, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			call(func(c context.Context) {
				if i%5 == 0 {
					r, err := s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 5, Reason: meter.ReasonRefundOn})
					switch {
					case err == nil && r.Amount == 5 && !r.Replayed:
						refunds.Add(1)
					case err == nil && r.Amount == 5:
					default:
						t.Errorf("refund %d: %+v, %v", i, r, err)
					}
					return
				}
				_, err := s.Debit(c, meter.Transfer{Account: "alice", ID: fmt.Sprint("d", i), Amount: 10})
				switch {
				case err == nil:
					debits.Add(1)
				case errors.Is(err, meter.ErrInsufficient):
					refused.Add(1)
				default:
					t.Errorf("debit %d: %v", i, err)
				}
			})
		})
	}
	wg.Wait()
	a := account(t, s, "alice")
	if refunds.Load() != 1 || a.Refunded != 5 {
		t.Errorf("%d refunds applied, %d refunded; want one of 5", refunds.Load(), a.Refunded)
	}
	// 255 - 5 + 5 = 255, or 250 before the refund lands: 25 debits of 10
	// always fit, and a 26th never does.
	if debits.Load() != 25 || refused.Load() != 160-25 {
		t.Errorf("%d debits, %d refused; want 25 and %d", debits.Load(), refused.Load(), 160-25)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 5, Credited: 255, Charged: 5, Refunded: 5, Debited: 250})
	checkInvariant(t, s, "alice", false)
}
