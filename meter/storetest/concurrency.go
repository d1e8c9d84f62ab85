package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// testConcurrentCharges runs 1,000 charges of 1 at once against a balance of
// exactly 137: exactly 137 succeed.
func testConcurrentCharges(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	const k = 137
	fund(t, s, "alice", k)
	var paid, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			_, err := s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1})
			switch {
			case err == nil:
				paid.Add(1)
			case errors.Is(err, meter.ErrInsufficient):
				refused.Add(1)
			default:
				t.Errorf("charge %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if paid.Load() != k || refused.Load() != 1000-k {
		t.Errorf("%d paid and %d refused, want %d and %d", paid.Load(), refused.Load(), k, 1000-k)
	}
	expectTotals(t, s, "alice", meter.Account{Credited: k, Charged: k})
	checkInvariant(t, s, "alice", false)
}

// testConcurrentHolds runs 500 holds at once: together they hold exactly
// what the balance had, never more.
func testConcurrentHolds(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 1000)
	var held, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			r, err := s.Hold(c, meter.Hold{Account: "alice", Op: fmt.Sprint("h", i), Max: 3, Min: 1, TTL: time.Hour})
			switch {
			case err == nil:
				held.Add(r.Amount)
			case errors.Is(err, meter.ErrInsufficient):
				refused.Add(1)
			default:
				t.Errorf("hold %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// 333 holds of 3 and one of 1 take all 1000; the rest are refused.
	if held.Load() != 1000 || refused.Load() != 500-334 {
		t.Errorf("held %d with %d refused, want 1000 with %d refused", held.Load(), refused.Load(), 500-334)
	}
	expectTotals(t, s, "alice", meter.Account{Credited: 1000, Held: 1000})
	checkInvariant(t, s, "alice", false)
}

// testConcurrentCredits sends one credit id 50 times at once: it is credited
// once and every caller gets the same result.
func testConcurrentCredits(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	results := make([]meter.TransferReceipt, 50)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			r, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 500, Reason: "purchase"})
			if err != nil {
				t.Errorf("credit %d: %v", i, err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	replayed := 0
	for _, r := range results {
		if r.Replayed {
			replayed++
		}
		if r.Entry.ID != results[0].Entry.ID || r.Balance != 500 || r.Entry.Amount != 500 {
			t.Errorf("credit result %+v differs from %+v", r, results[0])
		}
	}
	if replayed != 49 {
		t.Errorf("%d results replayed, want 49", replayed)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 500, Credited: 500})
	if n := len(ledger(t, s, "alice")); n != 1 {
		t.Errorf("%d ledger entries, want 1", n)
	}
}

// testConcurrentArrival sends a new account's first 100 caller operations at
// once: the bonus is credited once.
func testConcurrentArrival(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	const bonus = 50
	var paid atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = s.Account(c, meter.Read{Account: "new", Mode: meter.Caller, Bonus: bonus})
			case 1:
				_, err = s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "new", Mode: meter.Caller, Bonus: bonus}})
			default:
				if _, err = s.Charge(c, meter.Charge{Account: "new", Op: fmt.Sprint("op", i), Amount: 1, Bonus: bonus}); err == nil {
					paid.Add(1)
				} else if errors.Is(err, meter.ErrInsufficient) {
					err = nil
				}
			}
			if err != nil {
				t.Errorf("caller op %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	a := account(t, s, "new")
	if a.Credited != bonus || a.Charged != paid.Load() || paid.Load() != 33 {
		t.Errorf("%+v after %d paid charges, want the bonus of %d credited once and 33 paid", a, paid.Load(), bonus)
	}
	bonuses := 0
	for _, e := range ledger(t, s, "new") {
		if e.Kind == meter.KindCredit {
			bonuses++
		}
	}
	if bonuses != 1 {
		t.Errorf("%d credit entries, want one signup_bonus", bonuses)
	}
	checkInvariant(t, s, "new", false)
}
