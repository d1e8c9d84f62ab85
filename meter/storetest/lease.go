package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// lease makes a call on a lease, failing the test on an error.
func lease(t *testing.T, s meter.Store, l meter.Lease) meter.LeaseReceipt {
	t.Helper()
	return must(s.Lease(ctx(t), l))(t)
}

// expectLease checks a lease receipt exactly, but for its expiry.
func expectLease(t *testing.T, what string, got, want meter.LeaseReceipt) {
	t.Helper()
	if got.Expires = (time.Time{}); got != want {
		t.Errorf("%s: %+v, want %+v", what, got, want)
	}
}

// sameLease reports whether two lease receipts are equal, their times
// compared as instants.
func sameLease(a, b meter.LeaseReceipt) bool {
	ea, eb := a.Expires, b.Expires
	a.Expires, b.Expires = time.Time{}, time.Time{}
	return a == b && ea.Equal(eb)
}

// replayedLease returns r as its replay reports it.
func replayedLease(r meter.LeaseReceipt) meter.LeaseReceipt {
	r.Replayed = true
	return r
}

// insufficientHeld checks err is an InsufficientError with balance, price
// and the account's held total.
func insufficientHeld(t *testing.T, what string, err error, balance, price, held int64) {
	t.Helper()
	insufficient(t, what, err, balance, price)
	var ie *meter.InsufficientError
	if errors.As(err, &ie) && ie.Held != held {
		t.Errorf("%s: insufficient with held %d, want %d", what, ie.Held, held)
	}
}

// leaseCharge is one method and route's spending from a lease.
func leaseCharge(route string, amount, count int64) meter.LeaseCharge {
	return meter.LeaseCharge{Method: "GET", Route: route, Amount: amount, Count: count}
}

func testLeaseTake(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)

	t.Run("holds up to grow", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 4})
		expectLease(t, "take of 4 on 10", r, meter.LeaseReceipt{Added: 4, Held: 4, Balance: 6})
		e := ledger(t, s, "alice")
		if len(e) != 2 {
			t.Fatalf("ledger %+v, want the credit and the lease's hold", e)
		}
		if e[0].Kind != meter.KindHold || e[0].Op != "L" || e[0].Amount != 4 || e[0].Balance != 6 ||
			e[0].Detail != (meter.Detail{Reason: meter.ReasonLease}) {
			t.Errorf("lease entry %+v, want a hold L of 4 with reason lease, balance 6", e[0])
		}
		if !near(r.Expires, e[0].Time.Add(time.Hour)) {
			t.Errorf("lease expires %v, want an hour after the take at %v", r.Expires, e[0].Time)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 6, Held: 4, Credited: 10})
	})

	t.Run("holds the balance when below grow", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 1, TTL: time.Hour, Grow: 100})
		expectLease(t, "take of up to 100 on 6", r, meter.LeaseReceipt{Added: 6, Held: 6, Balance: 0})
		expectTotals(t, s, "alice", meter.Account{Held: 10, Credited: 10})
	})

	t.Run("nothing to hold is insufficient and writes nothing", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Lease(c, meter.Lease{Account: "alice", Op: "N", Seq: 1, TTL: time.Hour, Grow: 5})
		insufficientHeld(t, "take on an empty balance", err, 0, 1, 10)
		unchanged(t, s, "alice", "a refused take", before)

		_, err = s.Lease(c, meter.Lease{Account: "bob", Op: "N", Seq: 1, TTL: time.Hour, Grow: 5})
		insufficientHeld(t, "take on a new account", err, 0, 1, 0)
		expectTotals(t, s, "bob", meter.Account{})
		if e := ledger(t, s, "bob"); len(e) != 0 {
			t.Errorf("ledger %+v, want none", e)
		}

		// The refused take left no op behind.
		must(s.Credit(c, meter.Transfer{Account: "alice", ID: "more", Amount: 3}))(t)
		r := lease(t, s, meter.Lease{Account: "alice", Op: "N", Seq: 1, TTL: time.Hour, Grow: 5})
		expectLease(t, "take after a refused take of the op", r, meter.LeaseReceipt{Added: 3, Held: 3, Balance: 0})
		expectTotals(t, s, "alice", meter.Account{Held: 13, Credited: 13})
	})

	for _, id := range []string{"alice", "bob"} {
		checkInvariant(t, s, id, false)
		clean(t, s, id)
	}
}

func testLeaseSpend(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 100)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 30})
	var renewed meter.LeaseReceipt

	t.Run("charges from the lease, one entry per method and route", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{
			{Method: "GET", Route: "/a", Amount: 5, Count: 5},
			{Method: "POST", Route: "/b", Amount: 12, Count: 3},
		}})
		expectLease(t, "charges of 5 and 12", r, meter.LeaseReceipt{Charged: 17, Held: 13, Balance: 70})
		e := ledger(t, s, "alice")
		if len(e) != 4 {
			t.Fatalf("ledger %+v, want credit, hold and two charges", e)
		}
		if op := meter.EpochOp("L", 2); op != "L2" || e[1].Op != op || e[0].Op != op {
			t.Errorf("charge ops %q and %q, want EpochOp(L, 2) = %q", e[1].Op, e[0].Op, op)
		}
		if e[1].Kind != meter.KindCharge || e[1].Amount != 5 || e[1].Balance != 70 ||
			e[1].Detail != (meter.Detail{Method: "GET", Route: "/a", Count: 5, Lease: "L"}) {
			t.Errorf("first charge entry %+v, want 5 for 5 GET /a from lease L, balance 70", e[1])
		}
		if e[0].Kind != meter.KindCharge || e[0].Amount != 12 || e[0].Balance != 70 ||
			e[0].Detail != (meter.Detail{Method: "POST", Route: "/b", Count: 3, Lease: "L"}) {
			t.Errorf("second charge entry %+v, want 12 for 3 POST /b from lease L, balance 70", e[0])
		}
		if !near(r.Expires, e[0].Time.Add(time.Hour)) {
			t.Errorf("lease expires %v, want an hour after the call at %v", r.Expires, e[0].Time)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 70, Held: 13, Credited: 100, Charged: 17})
	})

	t.Run("grows by up to grow from the balance", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Grow: 20})
		expectLease(t, "grow by 20", r, meter.LeaseReceipt{Added: 20, Held: 33, Balance: 50})
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindHold || e.Op != "L" || e.Amount != 20 || e.Balance != 50 || e.Detail != (meter.Detail{Reason: meter.ReasonLease}) {
			t.Errorf("grow entry %+v, want a hold L of 20 with reason lease, balance 50", e)
		}

		r = lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Grow: 1000, Charges: []meter.LeaseCharge{leaseCharge("/a", 3, 1)}})
		expectLease(t, "charge of 3 and grow by up to 1000 on 50", r, meter.LeaseReceipt{Charged: 3, Added: 50, Held: 80, Balance: 0})
		es := ledger(t, s, "alice")
		if es[1].Kind != meter.KindCharge || es[1].Op != "L4" || es[1].Amount != 3 || es[1].Balance != 50 ||
			es[0].Kind != meter.KindHold || es[0].Op != "L" || es[0].Amount != 50 || es[0].Balance != 0 {
			t.Errorf("newest entries %+v, %+v; want the charge of 3, then the hold of 50", es[1], es[0])
		}
		expectTotals(t, s, "alice", meter.Account{Held: 80, Credited: 100, Charged: 20})

		before := snap(t, s, "alice")
		r = lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 5, TTL: time.Hour, Grow: 10})
		expectLease(t, "grow on an empty balance", r, meter.LeaseReceipt{Held: 80, Balance: 0})
		unchanged(t, s, "alice", "a grow that adds nothing", before)
	})

	t.Run("shrink gives back exactly", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 6, TTL: time.Hour, Shrink: 40, Charges: []meter.LeaseCharge{leaseCharge("/a", 3, 1)}})
		expectLease(t, "charge of 3 and shrink by 40", r, meter.LeaseReceipt{Charged: 3, Released: 40, Held: 37, Balance: 40})
		e := ledger(t, s, "alice")
		if e[1].Kind != meter.KindCharge || e[1].Op != "L6" || e[1].Amount != 3 || e[1].Balance != 0 {
			t.Errorf("entry %+v, want the charge of 3 first", e[1])
		}
		if e[0].Kind != meter.KindRelease || e[0].Op != "L" || e[0].Amount != 40 || e[0].Balance != 40 || e[0].Detail != (meter.Detail{Reason: meter.ReasonLease}) {
			t.Errorf("shrink entry %+v, want a release L of 40 with reason lease, balance 40", e[0])
		}
		renewed = r
		expectTotals(t, s, "alice", meter.Account{Balance: 40, Held: 37, Credited: 100, Charged: 23})
	})

	t.Run("a renewal writes no entry", func(t *testing.T) {
		before := snap(t, s, "alice")
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 7, TTL: 2 * time.Hour})
		expectLease(t, "renewal", r, meter.LeaseReceipt{Held: 37, Balance: 40})
		if !r.Expires.After(renewed.Expires.Add(30 * time.Minute)) {
			t.Errorf("renewal by 2h expires %v, want about an hour after the last call's %v", r.Expires, renewed.Expires)
		}
		unchanged(t, s, "alice", "a renewal", before)
	})

	t.Run("close releases the rest", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 8, TTL: time.Hour, Close: true, Charges: []meter.LeaseCharge{leaseCharge("/a", 4, 2)}})
		expectLease(t, "close after a charge of 4", r, meter.LeaseReceipt{Charged: 4, Released: 33, Balance: 73})
		if !r.Expires.IsZero() {
			t.Errorf("a closed lease expires %v, want no expiry", r.Expires)
		}
		e := ledger(t, s, "alice")
		if e[1].Kind != meter.KindCharge || e[1].Op != "L8" || e[1].Amount != 4 || e[1].Detail.Count != 2 ||
			e[0].Kind != meter.KindRelease || e[0].Op != "L" || e[0].Amount != 33 || e[0].Balance != 73 || e[0].Detail.Reason != meter.ReasonLease {
			t.Errorf("newest entries %+v, %+v; want the charge of 4, then a release of 33 with reason lease", e[1], e[0])
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 73, Credited: 100, Charged: 27})

		before := snap(t, s, "alice")
		for _, l := range []meter.Lease{
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour},
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour, Grow: 5},
			{Account: "alice", Op: "L", Seq: 10, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}},
		} {
			_, err := s.Lease(ctx(t), l)
			isErr(t, fmt.Sprintf("call %d on a closed lease", l.Seq), err, meter.ErrGone)
		}
		again := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 8, TTL: time.Hour, Close: true, Charges: []meter.LeaseCharge{leaseCharge("/a", 4, 2)}})
		if !sameLease(again, replayedLease(r)) {
			t.Errorf("the close again: %+v, want %+v", again, replayedLease(r))
		}
		unchanged(t, s, "alice", "calls on a closed lease", before)
	})

	t.Run("a lease spent to 0 stays open without a hold", func(t *testing.T) {
		lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 1, TTL: time.Hour, Grow: 6})
		r := lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/m", 6, 2)}})
		expectLease(t, "charge of the whole lease", r, meter.LeaseReceipt{Charged: 6, Balance: 67})
		if !r.Expires.IsZero() {
			t.Errorf("a lease holding nothing expires %v, want no expiry", r.Expires)
		}
		if e := ledger(t, s, "alice")[0]; e.Kind != meter.KindCharge || e.Op != "M2" || e.Amount != 6 {
			t.Errorf("newest entry %+v, want the charge of 6 and no release of nothing", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 67, Credited: 100, Charged: 33})
		clean(t, s, "alice")

		// It still refunds what it charged, and grows again.
		r = lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 3, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 2, Count: 1}}})
		expectLease(t, "refund from a lease holding nothing", r, meter.LeaseReceipt{Refunded: 2, Balance: 69})
		_, err := s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "M", Seq: 4, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/m", 1, 1)}})
		isErr(t, "charge from a lease holding nothing", err, meter.ErrInvalid)
		r = lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 4, TTL: time.Hour, Grow: 5})
		expectLease(t, "grow of a lease holding nothing", r, meter.LeaseReceipt{Added: 5, Held: 5, Balance: 64})
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindHold || e.Op != "M" || e.Amount != 5 || e.Detail.Reason != meter.ReasonLease || !near(r.Expires, e.Time.Add(time.Hour)) {
			t.Errorf("grow entry %+v, lease expiring %v; want a hold M of 5 with reason lease, expiring an hour on", e, r.Expires)
		}
		r = lease(t, s, meter.Lease{Account: "alice", Op: "M", Seq: 5, TTL: time.Hour, Close: true})
		expectLease(t, "close", r, meter.LeaseReceipt{Released: 5, Balance: 69})
		_, err = s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "M", Seq: 6, TTL: time.Hour, Grow: 5})
		isErr(t, "call after the close", err, meter.ErrGone)

		// Shrunk to 0, it stays open too; closing it then releases nothing.
		lease(t, s, meter.Lease{Account: "alice", Op: "S", Seq: 1, TTL: time.Hour, Grow: 5})
		r = lease(t, s, meter.Lease{Account: "alice", Op: "S", Seq: 2, TTL: time.Hour, Shrink: 5})
		expectLease(t, "shrink of the whole lease", r, meter.LeaseReceipt{Released: 5, Balance: 69})
		before := snap(t, s, "alice")
		r = lease(t, s, meter.Lease{Account: "alice", Op: "S", Seq: 3, TTL: time.Hour, Close: true})
		expectLease(t, "close of a lease holding nothing", r, meter.LeaseReceipt{Balance: 69})
		_, err = s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "S", Seq: 4, TTL: time.Hour, Grow: 5})
		isErr(t, "call after the close", err, meter.ErrGone)
		unchanged(t, s, "alice", "closing a lease holding nothing", before)
		expectTotals(t, s, "alice", meter.Account{Balance: 69, Credited: 100, Charged: 33, Refunded: 2})
	})

	checkInvariant(t, s, "alice", false)
	clean(t, s, "alice")
}

func testLeaseReplay(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 50)
	first := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 20})
	expectLease(t, "take", first, meter.LeaseReceipt{Added: 20, Held: 20, Balance: 30})

	t.Run("the last seq replays its first result", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Minute, Grow: 9})
		if !sameLease(again, replayedLease(first)) {
			t.Errorf("take again: %+v, want %+v", again, replayedLease(first))
		}
		unchanged(t, s, "alice", "a repeated take", before)

		call := meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Grow: 3, Charges: []meter.LeaseCharge{leaseCharge("/a", 5, 2)}}
		r := lease(t, s, call)
		expectLease(t, "charge of 5 and grow by 3", r, meter.LeaseReceipt{Charged: 5, Added: 3, Held: 18, Balance: 27})
		before = snap(t, s, "alice")
		other := call
		other.Charges, other.Grow, other.Close = []meter.LeaseCharge{leaseCharge("/a", 7, 1)}, 0, true
		for _, l := range []meter.Lease{call, other} {
			if again := lease(t, s, l); !sameLease(again, replayedLease(r)) {
				t.Errorf("call 2 again: %+v, want %+v", again, replayedLease(r))
			}
		}
		unchanged(t, s, "alice", "a repeated call", before)
	})

	t.Run("an older seq changes nothing and reports the lease as it is", func(t *testing.T) {
		r3 := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 2, 1)}})
		expectLease(t, "charge of 2", r3, meter.LeaseReceipt{Charged: 2, Held: 16, Balance: 27})
		before := snap(t, s, "alice")
		want := meter.LeaseReceipt{Held: 16, Balance: 27, Expires: r3.Expires, Replayed: true}
		for _, l := range []meter.Lease{
			{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Grow: 3, Charges: []meter.LeaseCharge{leaseCharge("/a", 5, 2)}},
			{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 20},
		} {
			if got := lease(t, s, l); !sameLease(got, want) {
				t.Errorf("call %d after call 3: %+v, want %+v", l.Seq, got, want)
			}
		}
		unchanged(t, s, "alice", "calls with older seqs", before)
	})

	t.Run("seqs may skip", func(t *testing.T) {
		r5 := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 5, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}})
		expectLease(t, "call 5 after call 3", r5, meter.LeaseReceipt{Charged: 1, Held: 15, Balance: 27})
		before := snap(t, s, "alice")
		for _, seq := range []int64{4, 3} {
			got := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: seq, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}})
			if want := (meter.LeaseReceipt{Held: 15, Balance: 27, Expires: r5.Expires, Replayed: true}); !sameLease(got, want) {
				t.Errorf("call %d after call 5: %+v, want %+v", seq, got, want)
			}
		}
		if again := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 5, TTL: time.Hour}); !sameLease(again, replayedLease(r5)) {
			t.Errorf("call 5 again: %+v, want %+v", again, replayedLease(r5))
		}
		unchanged(t, s, "alice", "calls with older seqs", before)
	})

	t.Run("after the close", func(t *testing.T) {
		closed := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 6, TTL: time.Hour, Close: true})
		expectLease(t, "close", closed, meter.LeaseReceipt{Released: 15, Balance: 42})
		before := snap(t, s, "alice")
		if again := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 6, TTL: time.Hour, Close: true}); !sameLease(again, replayedLease(closed)) {
			t.Errorf("close again: %+v, want %+v", again, replayedLease(closed))
		}
		if old := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 20}); !sameLease(old, meter.LeaseReceipt{Balance: 42, Replayed: true}) {
			t.Errorf("take again after the close: %+v, want a replay with nothing held", old)
		}
		_, err := s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "L", Seq: 7, TTL: time.Hour, Grow: 1})
		isErr(t, "call after the close", err, meter.ErrGone)
		unchanged(t, s, "alice", "calls after the close", before)
	})

	expectTotals(t, s, "alice", meter.Account{Balance: 42, Credited: 50, Charged: 8})
	if e := checkInvariant(t, s, "alice", false); len(e) != 7 {
		t.Errorf("%d ledger entries, want credit, hold, charge, hold, charge, charge, release and no more", len(e))
	}
	clean(t, s, "alice")
}

func testLeaseRefunds(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 100)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 50})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 10, 4)}})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 6, 2)}})
	expectTotals(t, s, "alice", meter.Account{Balance: 50, Held: 34, Credited: 100, Charged: 16})

	t.Run("a refund of an earlier call", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 5, Count: 2}}})
		expectLease(t, "refund of 5 of call 2", r, meter.LeaseReceipt{Refunded: 5, Held: 34, Balance: 55})
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindRefund || e.Op != meter.EpochOp("L", 2) || e.Amount != 5 || e.Balance != 55 ||
			e.Detail != (meter.Detail{Reason: meter.ReasonRefundOn, Count: 2}) {
			t.Errorf("refund entry %+v, want a refund of 5 for 2 requests, op L2, reason refund_on, balance 55", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 55, Held: 34, Credited: 100, Charged: 16, Refunded: 5})
	})

	t.Run("what the lease cannot pay or give back is invalid", func(t *testing.T) {
		before := snap(t, s, "alice")
		for what, l := range map[string]meter.Lease{
			// 16 charged, 5 refunded: 11 left to refund.
			"refunds of 12 after 16 charged and 5 refunded":  {Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 6, Count: 1}, {Seq: 3, Amount: 6, Count: 1}}},
			"a refund of 12 after 16 charged and 5 refunded": {Refunds: []meter.LeaseRefund{{Seq: 3, Amount: 12, Count: 3}}},
			// 34 held.
			"a charge of 35":             {Charges: []meter.LeaseCharge{leaseCharge("/a", 35, 1)}},
			"charges of 20 and 15":       {Charges: []meter.LeaseCharge{leaseCharge("/a", 20, 1), leaseCharge("/b", 15, 1)}},
			"a shrink of 35":             {Shrink: 35},
			"a charge of 10, shrink 25":  {Charges: []meter.LeaseCharge{leaseCharge("/a", 10, 1)}, Shrink: 25},
			"a charge of 34, refund 12":  {Charges: []meter.LeaseCharge{leaseCharge("/a", 34, 1)}, Refunds: []meter.LeaseRefund{{Seq: 3, Amount: 46, Count: 1}}},
			"a valid refund, shrink 35":  {Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}, Shrink: 35},
			"a valid charge, refund 100": {Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 100, Count: 1}}},
		} {
			l.Account, l.Op, l.Seq, l.TTL = "alice", "L", 5, time.Hour
			_, err := s.Lease(ctx(t), l)
			isErr(t, what, err, meter.ErrInvalid)
		}
		unchanged(t, s, "alice", "refused calls", before)
	})

	t.Run("a refused call leaves its seq free", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 5, TTL: time.Hour, Shrink: 30,
			Charges: []meter.LeaseCharge{leaseCharge("/a", 4, 1)}, Refunds: []meter.LeaseRefund{{Seq: 3, Amount: 6, Count: 2}}})
		expectLease(t, "charge of 4, refund of 6, shrink of the other 30", r, meter.LeaseReceipt{Charged: 4, Refunded: 6, Released: 30, Balance: 91})
		if !r.Expires.IsZero() {
			t.Errorf("a lease holding nothing expires %v, want no expiry", r.Expires)
		}
		e := ledger(t, s, "alice")
		if e[2].Kind != meter.KindCharge || e[2].Op != "L5" || e[2].Amount != 4 || e[2].Balance != 55 ||
			e[1].Kind != meter.KindRefund || e[1].Op != "L3" || e[1].Amount != 6 || e[1].Balance != 61 || e[1].Detail.Count != 2 ||
			e[0].Kind != meter.KindRelease || e[0].Op != "L" || e[0].Amount != 30 || e[0].Balance != 91 {
			t.Errorf("newest entries %+v, %+v, %+v; want the charge, the refund, then the release", e[2], e[1], e[0])
		}
	})

	t.Run("a lease holding nothing refunds until it closes", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 6, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}})
		expectLease(t, "refund of 1 from a lease holding nothing", r, meter.LeaseReceipt{Refunded: 1, Balance: 92})
		// 20 charged, 12 refunded: 8 left to refund.
		before := snap(t, s, "alice")
		_, err := s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "L", Seq: 7, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 5, Amount: 9, Count: 1}}})
		isErr(t, "refund of 9 with 8 left to refund", err, meter.ErrInvalid)
		unchanged(t, s, "alice", "a refused refund", before)
		r = lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 7, TTL: time.Hour, Close: true})
		expectLease(t, "close", r, meter.LeaseReceipt{Balance: 92})
		// A closed lease still takes refunds alone, of what it charged.
		r = lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 8, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}})
		expectLease(t, "refund after the lease closed", r, meter.LeaseReceipt{Refunded: 1, Balance: 93})
		before = snap(t, s, "alice")
		_, err = s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 5, Amount: 8, Count: 1}}})
		isErr(t, "refund of 8 with 7 left to refund, after the close", err, meter.ErrInvalid)
		for _, call := range []meter.Lease{
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour, Charges: []meter.LeaseCharge{{Method: "GET", Route: "/a", Amount: 1, Count: 1}}},
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour, Grow: 5},
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}, Grow: 5},
			{Account: "alice", Op: "L", Seq: 9, TTL: time.Hour},
		} {
			_, err = s.Lease(ctx(t), call)
			isErr(t, fmt.Sprintf("%+v after the close", call), err, meter.ErrGone)
		}
		unchanged(t, s, "alice", "calls refused after the close", before)
	})

	expectTotals(t, s, "alice", meter.Account{Balance: 93, Credited: 100, Charged: 20, Refunded: 13})
	checkInvariant(t, s, "alice", false)
	clean(t, s, "alice")
}

func testLeaseExpiry(t *testing.T, f Factory) {
	h := f(t, meter.Config{})
	s := h.Store
	fund(t, s, "alice", 20)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: expiryTTL, Grow: 8})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: expiryTTL, Charges: []meter.LeaseCharge{leaseCharge("/a", 3, 1)}})
	lease(t, s, meter.Lease{Account: "alice", Op: "R", Seq: 1, TTL: expiryTTL, Grow: 4})
	lease(t, s, meter.Lease{Account: "alice", Op: "R", Seq: 2, TTL: time.Hour})
	expectTotals(t, s, "alice", meter.Account{Balance: 8, Held: 9, Credited: 20, Charged: 3})

	h.Advance(t, expiryTTL+50*time.Millisecond)

	t.Run("the expired lease is released and gone", func(t *testing.T) {
		_, err := s.Lease(ctx(t), meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 2, 1)}})
		isErr(t, "call on an expired lease", err, meter.ErrGone)
		e := ledger(t, s, "alice")
		if len(e) != 5 || e[0].Kind != meter.KindRelease || e[0].Op != "L" || e[0].Amount != 5 || e[0].Balance != 13 ||
			e[0].Detail != (meter.Detail{Reason: meter.ReasonExpired}) {
			t.Fatalf("ledger %+v, want the expired release of the 5 left in L newest", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 13, Held: 4, Credited: 20, Charged: 3})

		before := snap(t, s, "alice")
		for _, l := range []meter.Lease{
			{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 2, 1)}},
			{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Grow: 5},
			{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Close: true},
		} {
			_, err := s.Lease(ctx(t), l)
			isErr(t, fmt.Sprintf("call %d on an expired lease", l.Seq), err, meter.ErrGone)
		}
		if old := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 8}); !sameLease(old, meter.LeaseReceipt{Balance: 13, Replayed: true}) {
			t.Errorf("call 1 again after expiry: %+v, want a replay with nothing held", old)
		}
		unchanged(t, s, "alice", "calls on an expired lease", before)
	})

	t.Run("a renewed lease lives on", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "R", Seq: 3, TTL: time.Hour, Close: true})
		expectLease(t, "close of the renewed lease", r, meter.LeaseReceipt{Released: 4, Balance: 17})
	})

	// What L held and never charged went back: only its first 3 are charged.
	expectTotals(t, s, "alice", meter.Account{Balance: 17, Credited: 20, Charged: 3})
	checkInvariant(t, s, "alice", false)
	clean(t, s, "alice")
}

func testLeaseOps(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 20)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 2}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 3, Min: 1, TTL: time.Hour}))(t)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 5})
	expectTotals(t, s, "alice", meter.Account{Balance: 10, Held: 8, Credited: 20, Charged: 2})

	t.Run("a call on a lease never taken is not found", func(t *testing.T) {
		before := snap(t, s, "alice")
		for _, l := range []meter.Lease{
			{Account: "alice", Op: "nope", Seq: 2, TTL: time.Hour, Grow: 5},
			{Account: "alice", Op: "nope", Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}},
			{Account: "alice", Op: "nope", Seq: 2, TTL: time.Hour, Close: true},
		} {
			_, err := s.Lease(c, l)
			isErr(t, fmt.Sprintf("call %d on an op never taken", l.Seq), err, meter.ErrNotFound)
		}
		unchanged(t, s, "alice", "calls on a lease never taken", before)
		_, err := s.Lease(c, meter.Lease{Account: "nobody", Op: "L", Seq: 2, TTL: time.Hour, Grow: 5})
		isErr(t, "call on an unseen account", err, meter.ErrNotFound)
		notFound(t, s, "nobody")
	})

	t.Run("an op leases, charges or holds, only one of them", func(t *testing.T) {
		before := snap(t, s, "alice")
		for what, l := range map[string]meter.Lease{
			"take with a charge's op":   {Account: "alice", Op: "c", Seq: 1, TTL: time.Hour, Grow: 1},
			"call 2 with a charge's op": {Account: "alice", Op: "c", Seq: 2, TTL: time.Hour, Close: true},
			"take with a hold's op":     {Account: "alice", Op: "h", Seq: 1, TTL: time.Hour, Grow: 1},
			"call 2 with a hold's op":   {Account: "alice", Op: "h", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 1, 1)}},
		} {
			_, err := s.Lease(c, l)
			isErr(t, what, err, meter.ErrConflict)
		}
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "L", Amount: 1})
		isErr(t, "charge with a lease's op", err, meter.ErrConflict)
		_, err = s.Hold(c, meter.Hold{Account: "alice", Op: "L", Max: 1, Min: 1, TTL: time.Hour})
		isErr(t, "hold with a lease's op", err, meter.ErrConflict)
		_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "L", Seq: 2, Max: 1, Min: 1, TTL: time.Hour})
		isErr(t, "extend of a lease", err, meter.ErrConflict)
		_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "L", Amount: 1})
		isErr(t, "settle of a lease", err, meter.ErrConflict)
		_, err = s.Release(c, meter.Release{Account: "alice", Op: "L", Reason: meter.ReasonRefundOn})
		isErr(t, "release of a lease", err, meter.ErrConflict)
		_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "L", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of a lease's op", err, meter.ErrInvalid)
		unchanged(t, s, "alice", "calls mixing a lease's op with others", before)
	})

	t.Run("the lease, the charge and the hold go on", func(t *testing.T) {
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 5, 1)}})
		expectLease(t, "charge of the whole lease", r, meter.LeaseReceipt{Charged: 5, Balance: 10})
		must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1}))(t)
		must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 2, Reason: meter.ReasonRefundOn}))(t)
		expectTotals(t, s, "alice", meter.Account{Balance: 14, Credited: 20, Charged: 8, Refunded: 2})
	})

	t.Run("lease ops are per account", func(t *testing.T) {
		fund(t, s, "bob", 3)
		r := lease(t, s, meter.Lease{Account: "bob", Op: "L", Seq: 1, TTL: time.Hour, Grow: 5})
		expectLease(t, "bob's take with alice's lease op", r, meter.LeaseReceipt{Added: 3, Held: 3, Balance: 0})
	})

	for _, id := range []string{"alice", "bob"} {
		checkInvariant(t, s, id, false)
		clean(t, s, id)
	}
}

func testLeaseDraining(t *testing.T, f Factory) {
	h := f(t, meter.Config{})
	s, c := h.Store, ctx(t)
	fund(t, s, "alice", 10)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 10})

	t.Run("a refusal beside a lease is draining", func(t *testing.T) {
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "c1", Amount: 1})
		insufficientHeld(t, "charge beside a lease of the whole balance", err, 0, 1, 10)
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Drain: time.Second})
		expectLease(t, "call after the refusal", r, meter.LeaseReceipt{Held: 10, Draining: true})
		if again := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour}); !sameLease(again, replayedLease(r)) {
			t.Errorf("call 2 again: %+v, want %+v", again, replayedLease(r))
		}
	})

	t.Run("a refusal before the drain window is not", func(t *testing.T) {
		h.Advance(t, 10*time.Millisecond)
		r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour})
		expectLease(t, "call with no drain window, 10ms after the refusal", r, meter.LeaseReceipt{Held: 10})
		r = lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Drain: time.Second})
		expectLease(t, "call with a 1s drain window, 10ms after the refusal", r, meter.LeaseReceipt{Held: 10, Draining: true})
	})

	t.Run("a refused hold beside a lease is draining", func(t *testing.T) {
		fund(t, s, "bob", 5)
		lease(t, s, meter.Lease{Account: "bob", Op: "L", Seq: 1, TTL: time.Hour, Grow: 5})
		_, err := s.Hold(c, meter.Hold{Account: "bob", Op: "h", Max: 2, Min: 1, TTL: time.Hour})
		insufficientHeld(t, "hold beside a lease of the whole balance", err, 0, 1, 5)
		r := lease(t, s, meter.Lease{Account: "bob", Op: "L", Seq: 2, TTL: time.Hour, Drain: time.Hour})
		expectLease(t, "call after the refused hold", r, meter.LeaseReceipt{Held: 5, Draining: true})
	})

	t.Run("a refusal while nothing is held is not", func(t *testing.T) {
		fund(t, s, "carol", 1)
		must(s.Charge(c, meter.Charge{Account: "carol", Op: "c1", Amount: 1}))(t)
		_, err := s.Charge(c, meter.Charge{Account: "carol", Op: "c2", Amount: 1})
		insufficientHeld(t, "charge with nothing held", err, 0, 1, 0)
		_, err = s.Hold(c, meter.Hold{Account: "carol", Op: "h", Max: 1, Min: 1, TTL: time.Hour})
		insufficientHeld(t, "hold with nothing held", err, 0, 1, 0)
		must(s.Credit(c, meter.Transfer{Account: "carol", ID: "more", Amount: 5}))(t)
		lease(t, s, meter.Lease{Account: "carol", Op: "L", Seq: 1, TTL: time.Hour, Grow: 5})
		r := lease(t, s, meter.Lease{Account: "carol", Op: "L", Seq: 2, TTL: time.Hour, Drain: time.Hour})
		expectLease(t, "call after refusals with nothing held", r, meter.LeaseReceipt{Held: 5})
	})

	t.Run("a refused take is not", func(t *testing.T) {
		fund(t, s, "dave", 2)
		lease(t, s, meter.Lease{Account: "dave", Op: "L", Seq: 1, TTL: time.Hour, Grow: 2})
		_, err := s.Lease(c, meter.Lease{Account: "dave", Op: "M", Seq: 1, TTL: time.Hour, Grow: 2})
		insufficientHeld(t, "take beside a lease of the whole balance", err, 0, 1, 2)
		r := lease(t, s, meter.Lease{Account: "dave", Op: "L", Seq: 2, TTL: time.Hour, Drain: time.Hour})
		expectLease(t, "call after a refused take", r, meter.LeaseReceipt{Held: 2})
	})

	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		checkInvariant(t, s, id, false)
		clean(t, s, id)
	}
}

func testLeaseEntryJSON(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 20)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: 10})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 2, TTL: time.Hour, Charges: []meter.LeaseCharge{leaseCharge("/a", 3, 2)}})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 3, TTL: time.Hour, Shrink: 2, Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}})
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 4, TTL: time.Hour, Close: true})

	want := []string{ // oldest first
		`{"by":"","reason":""}`,
		`{"reason":"lease"}`,
		`{"count":2,"lease":"L","method":"GET","route":"/a"}`,
		`{"count":1,"reason":"refund_on"}`,
		`{"reason":"lease"}`,
		`{"reason":"lease"}`,
	}
	entries := ledger(t, s, "alice")
	if len(entries) != len(want) {
		t.Fatalf("%d entries, want credit, hold, charge, refund, and two releases", len(entries))
	}
	for i, w := range want {
		e := entries[len(entries)-1-i]
		m := entryJSON(t, e)
		if len(m) != 7 || m["op"] != e.Op || m["amount"] != float64(e.Amount) {
			t.Errorf("%s entry JSON %v, want id, time, kind, amount, balance, op and detail of %+v", e.Kind, m, e)
		}
		if detail := string(must(json.Marshal(m["detail"]))(t)); detail != w {
			t.Errorf("%s entry of %s: detail %s, want %s", e.Kind, e.Op, detail, w)
		}
	}
	checkInvariant(t, s, "alice", false)
}

// testConcurrentLeaseCalls sends each call on a lease 25 times at once, as a
// gateway whose replies were lost would: each call applies once, and every
// caller gets its first result.
func testConcurrentLeaseCalls(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	fund(t, s, "alice", 100)
	const callers = 25
	for seq := int64(1); seq <= 6; seq++ {
		l := meter.Lease{Account: "alice", Op: "L", Seq: seq, TTL: time.Hour}
		switch seq {
		case 1:
			l.Grow = 50
		case 6:
			l.Close = true
		default:
			l.Charges = []meter.LeaseCharge{leaseCharge("/a", 7, 3), leaseCharge("/b", 1, 1)}
		}
		results := make([]meter.LeaseReceipt, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				call(func(c context.Context) {
					r, err := s.Lease(c, l)
					if err != nil {
						t.Errorf("call %d, caller %d: %v", seq, i, err)
					}
					results[i] = r
				})
			})
		}
		wg.Wait()
		var first meter.LeaseReceipt
		applied := 0
		for _, r := range results {
			if !r.Replayed {
				applied++
				first = r
			}
		}
		if applied != 1 {
			t.Fatalf("call %d applied %d times, want once", seq, applied)
		}
		for i, r := range results {
			if r.Replayed && !sameLease(r, replayedLease(first)) {
				t.Errorf("call %d, caller %d: %+v, want the first result %+v", seq, i, r, replayedLease(first))
			}
		}
	}
	// 4 calls charged 8 each from the lease of 50; the close gave back 18.
	expectTotals(t, s, "alice", meter.Account{Balance: 68, Credited: 100, Charged: 32})
	if e := checkInvariant(t, s, "alice", false); len(e) != 1+1+8+1 {
		t.Errorf("%d ledger entries, want credit, hold, 8 charges and the release", len(e))
	}
	clean(t, s, "alice")
}

// testConcurrentChargesBesideLease runs 1000 charges of 1 at once against an
// account with an open lease, while the lease is spent: the charges take
// exactly the balance outside the lease, never the lease's tokens.
func testConcurrentChargesBesideLease(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	const k, leased = 137, 163
	fund(t, s, "alice", k+leased)
	lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 1, TTL: time.Hour, Grow: leased})
	var paid, refused atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		// The lease spends 100 of its tokens meanwhile, 10 at a call.
		for seq := int64(2); seq <= 11; seq++ {
			call(func(c context.Context) {
				if _, err := s.Lease(c, meter.Lease{Account: "alice", Op: "L", Seq: seq, TTL: time.Hour,
					Charges: []meter.LeaseCharge{leaseCharge("/l", 10, 10)}}); err != nil {
					t.Errorf("lease call %d: %v", seq, err)
				}
			})
		}
	})
	for i := range 1000 {
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1})
				var ie *meter.InsufficientError
				switch {
				case err == nil && r.Amount == 1 && !r.Replayed && r.Balance >= 0 && r.Balance < k:
					paid.Add(1)
				case errors.As(err, &ie) && ie.Balance == 0 && ie.Price == 1 && ie.Held >= leased-100 && ie.Held <= leased:
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
	expectTotals(t, s, "alice", meter.Account{Held: leased - 100, Credited: k + leased, Charged: k + 100})
	r := lease(t, s, meter.Lease{Account: "alice", Op: "L", Seq: 12, TTL: time.Hour, Close: true, Drain: time.Hour})
	expectLease(t, "close after the refusals", r, meter.LeaseReceipt{Released: leased - 100, Balance: leased - 100, Draining: true})
	if e := checkInvariant(t, s, "alice", false); len(e) != 1+1+k+10+1 {
		t.Errorf("%d ledger entries, want credit, hold, %d charges, 10 lease charges and the release", len(e), k)
	}
	clean(t, s, "alice")
}
