package storetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// sweep makes accounts with every operation in their history: credits and
// debits, a sign-up bonus, charges, holds with extensions, settles with and
// without a cut-off, releases, refunds, cancels of every kind, a hold that
// expired and was released, and an account created by a refused debit, with
// no entry at all. It returns the accounts it made.
func sweep(t *testing.T, h Harness) []string {
	t.Helper()
	s, c := h.Store, ctx(t)
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 1000, Reason: "purchase", By: "ops"}))(t)
	must(s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-1", Amount: 10, Reason: "correction", By: "ops"}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c1", Amount: 7, Bonus: 50, Method: "GET", Route: "/x"}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 20, Min: 1, TTL: time.Hour, Method: "POST", Route: "/up"}))(t)
	must(s.Extend(c, meter.Extend{Account: "alice", Op: "h1", Seq: 1, Max: 5, Min: 1, TTL: time.Hour}))(t)
	must(s.Extend(c, meter.Extend{Account: "alice", Op: "h1", Seq: 2, TTL: time.Hour}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h1", Amount: 12, CutOff: true}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h2", Max: 10, Min: 1, TTL: time.Hour}))(t)
	must(s.Release(c, meter.Release{Account: "alice", Op: "h2", Reason: meter.ReasonRefundOn}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c2", Amount: 9}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "c2", Amount: 4, Reason: meter.ReasonRefundOn}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "alice", Op: "c2"}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c3", Amount: 3}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "alice", Op: "c3"}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h3", Max: 6, Min: 6, TTL: time.Hour}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "alice", Op: "h3"}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "alice", Op: "never-applied"}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h4", Max: 5, Min: 1, TTL: time.Hour}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h4"}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h5", Max: 8, Min: 1, TTL: time.Hour}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h5", Amount: 8}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "h5", Amount: 8, Reason: meter.ReasonNotForwarded}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "open", Max: 30, Min: 1, TTL: time.Hour}))(t)

	must(s.Hold(c, meter.Hold{Account: "bob", Op: "lapsing", Max: 5, Min: 1, TTL: expiryTTL, Bonus: 20}))(t)
	h.Advance(t, expiryTTL+50*time.Millisecond)
	must(s.Account(c, meter.Read{Account: "bob", Mode: meter.Caller, Bonus: 20}))(t)

	must(s.Account(c, meter.Read{Account: "carol", Mode: meter.Caller, Bonus: 15}))(t)
	_, err := s.Debit(c, meter.Transfer{Account: "empty", ID: "too-much", Amount: 1})
	insufficient(t, "debit of a new account", err, 0, 1)
	return []string{"alice", "bob", "carol", "empty"}
}

// clean checks that an account verifies with no drift and a whole ledger.
func clean(t *testing.T, s meter.Store, id string) {
	t.Helper()
	got := must(s.Verify(ctx(t), id))(t)
	if got.Account != id || !got.WholeLedger || len(got.Drift) != 0 || got.Drift == nil {
		t.Errorf("verify %s: %+v, want a whole ledger and an empty drift list", id, got)
	}
}

// verifyAll walks every page of VerifyPage with limit and returns how many
// accounts it checked and the drift it found.
func verifyAll(t *testing.T, s meter.Store, limit int) (int, []meter.Drift) {
	t.Helper()
	checked, drift := 0, []meter.Drift{}
	cursor := ""
	for range 100000 {
		page := must(s.VerifyPage(ctx(t), cursor, limit))(t)
		if page.Drift == nil {
			t.Fatalf("verify page from %q: a nil drift list", cursor)
		}
		checked += page.Checked
		drift = append(drift, page.Drift...)
		if page.Next == nil {
			return checked, drift
		}
		cursor = *page.Next
	}
	t.Fatalf("the verify walk did not end")
	return 0, nil
}

// verifiesClean checks that every account of a store verifies with no
// drift, walking VerifyPage, and that the walk checks at least the n
// accounts the store has (duplicates are possible).
func verifiesClean(t *testing.T, s meter.Store, n int) {
	t.Helper()
	checked, drift := verifyAll(t, s, 2)
	if checked < n || len(drift) != 0 {
		t.Errorf("verifying every account: %d checked, drift %+v; want at least %d checked and no drift", checked, drift, n)
	}
}

func testVerify(t *testing.T, f Factory) {
	h := f(t, meter.Config{})
	s, c := h.Store, ctx(t)
	ids := sweep(t, h)

	t.Run("a sweep of every operation leaves no drift", func(t *testing.T) {
		for _, id := range ids {
			checkInvariant(t, s, id, false)
			clean(t, s, id)
		}
		verifiesClean(t, s, len(ids))
	})

	t.Run("verify changes nothing", func(t *testing.T) {
		before := snap(t, s, "alice")
		for range 3 {
			must(s.Verify(c, "alice"))(t)
			must(s.VerifyPage(c, "", 0))(t)
		}
		unchanged(t, s, "alice", "verify", before)
	})

	t.Run("an expired hold not yet released is no drift", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "dave", Op: "lapsed", Max: 4, Min: 1, TTL: expiryTTL, Bonus: 10}))(t)
		h.Advance(t, expiryTTL+50*time.Millisecond)
		clean(t, s, "dave")
		clean(t, s, "dave")
		expectTotals(t, s, "dave", meter.Account{Balance: 10, Credited: 10})
		if e := ledger(t, s, "dave"); e[0].Kind != meter.KindRelease || e[0].Detail.Reason != meter.ReasonExpired {
			t.Errorf("newest entry %+v, want the expired release", e[0])
		}
		clean(t, s, "dave")
	})

	t.Run("an account never seen is not found and not created", func(t *testing.T) {
		must(s.Cancel(c, meter.Cancel{Account: "ghost", Op: "x"}))(t)
		for _, id := range []string{"nobody", "ghost"} {
			_, err := s.Verify(c, id)
			isErr(t, "verify of "+id, err, meter.ErrNotFound)
			notFound(t, s, id)
		}
	})

	t.Run("bad input is refused", func(t *testing.T) {
		for _, id := range []string{"", "a b", "..", strings.Repeat("a", 129)} {
			_, err := s.Verify(c, id)
			isErr(t, fmt.Sprintf("verify of %q", id), err, meter.ErrInvalid)
		}
		_, err := s.VerifyPage(c, "not a cursor", 0)
		isErr(t, "verify from a bad cursor", err, meter.ErrInvalid)
	})

	t.Run("pages of every size check every account", func(t *testing.T) {
		for i := range 9 {
			fund(t, s, fmt.Sprint("acct-", i), int64(i+1))
		}
		for _, limit := range []int{1, 4, 1000} {
			checked, drift := verifyAll(t, s, limit)
			if checked < len(ids)+10 || len(drift) != 0 {
				t.Errorf("walk by %d: %d checked, drift %+v; want at least %d checked and no drift", limit, checked, drift, len(ids)+10)
			}
		}
	})
}

func testVerifyTrimmed(t *testing.T, f Factory) {
	h := f(t, meter.Config{Retention: 5})
	s, c := h.Store, ctx(t)
	// 20 changes: a credit and 19 charges.
	fund(t, s, "alice", 100)
	for i := range 19 {
		must(s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	whole := len(ledger(t, s, "alice")) == 20
	got := must(s.Verify(c, "alice"))(t)
	if got.WholeLedger != whole || len(got.Drift) != 0 {
		t.Errorf("verify: %+v, want no drift and whole_ledger %v, as the ledger kept %d entries of 20", got, whole, len(ledger(t, s, "alice")))
	}
}
