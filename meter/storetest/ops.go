package storetest

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

func testCharge(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)

	r := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: 7, Method: "GET", Route: "/v1/*"}))(t)
	if r.Amount != 7 || r.Balance != 3 || r.Replayed {
		t.Errorf("charge: %+v, want 7 charged, balance 3", r)
	}
	again := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: 7, Method: "GET", Route: "/v1/*"}))(t)
	if again.Amount != 7 || again.Balance != 3 || !again.Replayed {
		t.Errorf("repeated charge: %+v, want the first result replayed", again)
	}
	_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "op2", Amount: 4})
	insufficient(t, "charge above the balance", err, 3, 4)
	r = must(s.Charge(c, meter.Charge{Account: "alice", Op: "op3", Amount: 3}))(t)
	if r.Balance != 0 {
		t.Errorf("charge of the whole balance: balance %d, want 0", r.Balance)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 0, Credited: 10, Charged: 10})

	e := ledger(t, s, "alice")
	if len(e) != 3 || e[1].Kind != meter.KindCharge || e[1].Op != "op1" || e[1].Amount != 7 || e[1].Balance != 3 ||
		e[1].Detail.Method != "GET" || e[1].Detail.Route != "/v1/*" {
		t.Errorf("ledger %+v, want credit, charge op1 of 7, charge op3", e)
	}
	checkInvariant(t, s, "alice", false)

	// A charge of an unseen account creates it, even when refused.
	_, err = s.Charge(c, meter.Charge{Account: "bob", Op: "op1", Amount: 1})
	insufficient(t, "charge of a new account", err, 0, 1)
	expectTotals(t, s, "bob", meter.Account{})
}

func testSignupBonus(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)

	// The first caller operation credits the bonus before anything else.
	r := must(s.Charge(c, meter.Charge{Account: "new", Op: "op1", Amount: 30, Bonus: 100}))(t)
	if r.Balance != 70 {
		t.Errorf("first charge with a bonus of 100: balance %d, want 70", r.Balance)
	}
	must(s.Charge(c, meter.Charge{Account: "new", Op: "op2", Amount: 30, Bonus: 100}))(t)
	must(s.Account(c, meter.Read{Account: "new", Mode: meter.Caller, Bonus: 100}))(t)
	expectTotals(t, s, "new", meter.Account{Balance: 40, Credited: 100, Charged: 60})
	e := ledger(t, s, "new")
	bonus := e[len(e)-1]
	if bonus.Kind != meter.KindCredit || bonus.Amount != 100 || bonus.Op != meter.ReasonSignupBonus ||
		bonus.Detail.Reason != meter.ReasonSignupBonus || bonus.Detail.By != "tollgate" {
		t.Errorf("oldest entry %+v, want the signup_bonus credit by tollgate", bonus)
	}

	// An operator's credit is not the caller's arrival.
	fund(t, s, "bought", 5)
	must(s.Account(c, meter.Read{Account: "bought", Mode: meter.Operator, Bonus: 100}))(t)
	expectTotals(t, s, "bought", meter.Account{Balance: 5, Credited: 5})
	must(s.Hold(c, meter.Hold{Account: "bought", Op: "h", Max: 1, Min: 1, TTL: time.Hour, Bonus: 100}))(t)
	expectTotals(t, s, "bought", meter.Account{Balance: 104, Held: 1, Credited: 105})

	// Arrival under a bonus of 0 is recorded: no bonus later.
	must(s.Account(c, meter.Read{Account: "early", Mode: meter.Caller}))(t)
	must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "early", Mode: meter.Caller, Bonus: 100}}))(t)
	_, err := s.Charge(c, meter.Charge{Account: "early", Op: "op", Amount: 1, Bonus: 100})
	insufficient(t, "charge after arriving under no bonus", err, 0, 1)
	expectTotals(t, s, "early", meter.Account{})

	// A caller's ledger read is an arrival too.
	page := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "reader", Mode: meter.Caller, Bonus: 9}}))(t)
	if len(page.Entries) != 1 || page.Entries[0].Amount != 9 {
		t.Errorf("a caller's first ledger read: %+v, want the bonus entry", page.Entries)
	}
}

func testHold(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)

	r := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 4, Min: 1, TTL: time.Hour, Method: "POST", Route: "/chat"}))(t)
	if r.Amount != 4 || r.Held != 4 || r.Balance != 6 || r.Expires.IsZero() {
		t.Errorf("hold: %+v, want 4 held, balance 6, an expiry", r)
	}
	again := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 4, Min: 1, TTL: time.Hour}))(t)
	if again.Amount != 4 || again.Balance != 6 || !again.Replayed || !again.Expires.Equal(r.Expires) {
		t.Errorf("repeated hold: %+v, want the first result replayed", again)
	}
	// Up to 9, at least 2: the balance covers 6.
	r = must(s.Hold(c, meter.Hold{Account: "alice", Op: "h2", Max: 9, Min: 2, TTL: time.Hour}))(t)
	if r.Amount != 6 || r.Balance != 0 {
		t.Errorf("hold up to 9 of 6: %+v, want 6 held, balance 0", r)
	}
	_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "h3", Max: 5, Min: 1, TTL: time.Hour})
	insufficient(t, "hold on an empty balance", err, 0, 1)
	expectTotals(t, s, "alice", meter.Account{Held: 10, Credited: 10})
	e := ledger(t, s, "alice")
	if len(e) != 3 || e[1].Kind != meter.KindHold || e[1].Amount != 4 || e[1].Detail.Method != "POST" || e[1].Detail.Route != "/chat" {
		t.Errorf("ledger %+v, want credit, hold of 4, hold of 6", e)
	}
	checkInvariant(t, s, "alice", false)

	// An op holds or charges, not both.
	must(s.Charge(c, meter.Charge{Account: "bob", Op: "x", Amount: 1, Bonus: 5}))(t)
	_, err = s.Hold(c, meter.Hold{Account: "bob", Op: "x", Max: 1, Min: 1, TTL: time.Hour})
	isErr(t, "hold with a charge's op", err, meter.ErrConflict)
	_, err = s.Charge(c, meter.Charge{Account: "alice", Op: "h1", Amount: 1})
	isErr(t, "charge with a hold's op", err, meter.ErrConflict)
}

func testExtend(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	h := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 2, Min: 1, TTL: time.Minute}))(t)

	r := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: 3, Min: 1, TTL: time.Hour}))(t)
	if r.Amount != 3 || r.Held != 5 || r.Balance != 5 || !r.Expires.After(h.Expires) {
		t.Errorf("extend by 3: %+v, want 3 added, 5 held, balance 5, a later expiry", r)
	}
	again := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: 3, Min: 1, TTL: time.Hour}))(t)
	if again.Amount != 3 || again.Held != 5 || again.Balance != 5 || !again.Replayed {
		t.Errorf("repeated extend: %+v, want the first result replayed", again)
	}
	// Up to 9, at least 1: the balance covers 5.
	r = must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 2, Max: 9, Min: 1, TTL: time.Hour}))(t)
	if r.Amount != 5 || r.Held != 10 || r.Balance != 0 {
		t.Errorf("extend up to 9 of 5: %+v, want 5 added, 10 held", r)
	}
	_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 3, Max: 2, Min: 1, TTL: time.Hour})
	insufficient(t, "extend on an empty balance", err, 0, 1)

	// A renewal adds nothing and writes no entry.
	before := len(ledger(t, s, "alice"))
	r = must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 4, TTL: 2 * time.Hour}))(t)
	if r.Amount != 0 || r.Held != 10 || r.Replayed {
		t.Errorf("renewal: %+v, want nothing added, 10 held", r)
	}
	if after := len(ledger(t, s, "alice")); after != before {
		t.Errorf("a renewal wrote %d ledger entries, want none", after-before)
	}
	// An older sequence number changes nothing.
	old := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 2, Max: 9, Min: 1, TTL: time.Hour}))(t)
	if old.Amount != 0 || old.Held != 10 || !old.Replayed {
		t.Errorf("extend with an old seq: %+v, want no change", old)
	}
	expectTotals(t, s, "alice", meter.Account{Held: 10, Credited: 10})
	e := ledger(t, s, "alice")
	if e[0].Kind != meter.KindHold || e[0].Amount != 5 || e[1].Amount != 3 {
		t.Errorf("ledger %+v, want hold entries for the amounts added", e)
	}
	checkInvariant(t, s, "alice", false)

	_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "nope", Seq: 1, Max: 1, Min: 1, TTL: time.Hour})
	isErr(t, "extend of an unknown op", err, meter.ErrNotFound)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1}))(t)
	_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 5, TTL: time.Hour})
	isErr(t, "extend of a settled hold", err, meter.ErrGone)
}

func testSettle(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 6, Min: 1, TTL: time.Hour}))(t)

	_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 7})
	isErr(t, "settle above the hold", err, meter.ErrInvalid)
	expectTotals(t, s, "alice", meter.Account{Balance: 4, Held: 6, Credited: 10})

	r := must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
	if r.Amount != 2 || r.Released != 4 || r.Balance != 8 || r.Held != 0 {
		t.Errorf("settle 2 of 6: %+v, want 2 charged, 4 released, balance 8", r)
	}
	again := must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
	if again.Amount != 2 || again.Released != 4 || again.Balance != 8 || !again.Replayed {
		t.Errorf("repeated settle: %+v, want the first result replayed", again)
	}
	_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 3})
	isErr(t, "settle again with another amount", err, meter.ErrConflict)
	_, err = s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn})
	isErr(t, "release after settle", err, meter.ErrGone)
	again = must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
	if !again.Replayed || again.Amount != 2 {
		t.Errorf("settle after release: %+v, want the first settle replayed", again)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 8, Credited: 10, Charged: 2})
	e := ledger(t, s, "alice")[0]
	if e.Kind != meter.KindSettle || e.Amount != 2 || e.Detail.Released != 4 || !e.Detail.CutOff || e.Balance != 8 {
		t.Errorf("settle entry %+v, want 2 settled, 4 released, cut off", e)
	}

	// A zero settle charges nothing and releases all.
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "z", Max: 5, Min: 5, TTL: time.Hour}))(t)
	r = must(s.Settle(c, meter.Settle{Account: "alice", Op: "z"}))(t)
	if r.Amount != 0 || r.Released != 5 || r.Balance != 8 {
		t.Errorf("zero settle: %+v, want 5 released, balance 8", r)
	}
	checkInvariant(t, s, "alice", false)

	_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "nope", Amount: 1})
	isErr(t, "settle of an unknown op", err, meter.ErrNotFound)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 1}))(t)
	_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "c", Amount: 1})
	isErr(t, "settle of a charge", err, meter.ErrConflict)
}

func testRelease(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 6, Min: 1, TTL: time.Hour}))(t)

	_, err := s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: "because"})
	isErr(t, "release with an unknown reason", err, meter.ErrInvalid)
	r := must(s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn}))(t)
	if r.Amount != 6 || r.Balance != 10 {
		t.Errorf("release: %+v, want 6 released, balance 10", r)
	}
	again := must(s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn}))(t)
	if again.Amount != 6 || again.Balance != 10 || !again.Replayed {
		t.Errorf("repeated release: %+v, want the first result replayed", again)
	}
	_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1})
	isErr(t, "settle after release", err, meter.ErrGone)
	e := ledger(t, s, "alice")[0]
	if e.Kind != meter.KindRelease || e.Amount != 6 || e.Detail.Reason != meter.ReasonRefundOn {
		t.Errorf("release entry %+v, want 6 released for refund_on", e)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 10, Credited: 10})
	checkInvariant(t, s, "alice", false)
}

func testRefund(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 4}))(t)

	_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 5, Reason: meter.ReasonRefundOn})
	isErr(t, "refund above the charge", err, meter.ErrInvalid)
	r := must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 4, Reason: meter.ReasonRefundOn}))(t)
	if r.Amount != 4 || r.Balance != 10 {
		t.Errorf("refund: %+v, want 4 refunded, balance 10", r)
	}
	again := must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 4, Reason: meter.ReasonRefundOn}))(t)
	if again.Amount != 4 || again.Balance != 10 || !again.Replayed {
		t.Errorf("repeated refund: %+v, want the first result replayed", again)
	}
	_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 3, Reason: meter.ReasonRefundOn})
	isErr(t, "second refund with another amount", err, meter.ErrConflict)
	_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "nope", Amount: 1, Reason: meter.ReasonRefundOn})
	isErr(t, "refund of an unknown op", err, meter.ErrNotFound)

	// A settled hold is refunded like a charge; an open one is not.
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 5, Min: 1, TTL: time.Hour}))(t)
	_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "h", Amount: 1, Reason: meter.ReasonRefundOn})
	isErr(t, "refund of an open hold", err, meter.ErrInvalid)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 3}))(t)
	r = must(s.Refund(c, meter.Refund{Account: "alice", Op: "h", Amount: 3, Reason: meter.ReasonRefundOn}))(t)
	if r.Balance != 10 {
		t.Errorf("refund of a settled hold: balance %d, want 10", r.Balance)
	}
	e := ledger(t, s, "alice")[0]
	if e.Kind != meter.KindRefund || e.Amount != 3 || e.Op != "h" || e.Detail.Reason != meter.ReasonRefundOn {
		t.Errorf("refund entry %+v, want 3 refunded for refund_on", e)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 10, Credited: 10, Charged: 7, Refunded: 7})
	checkInvariant(t, s, "alice", false)
}

func testCancel(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	// Each account ends as if its op never happened.
	for _, id := range []string{"charged", "held", "first", "refunded", "settled"} {
		fund(t, s, id, 10)
	}

	must(s.Charge(c, meter.Charge{Account: "charged", Op: "op", Amount: 4}))(t)
	r := must(s.Cancel(c, meter.Cancel{Account: "charged", Op: "op"}))(t)
	if r.Amount != 4 || r.Balance != 10 {
		t.Errorf("cancel of a charge: %+v, want 4 given back", r)
	}
	again := must(s.Cancel(c, meter.Cancel{Account: "charged", Op: "op"}))(t)
	if again.Amount != 4 || !again.Replayed {
		t.Errorf("repeated cancel: %+v, want the first result replayed", again)
	}
	if e := ledger(t, s, "charged")[0]; e.Kind != meter.KindRefund || e.Amount != 4 || e.Detail.Reason != meter.ReasonNotForwarded {
		t.Errorf("cancelled charge: newest entry %+v, want a not_forwarded refund", e)
	}
	_, err := s.Charge(c, meter.Charge{Account: "charged", Op: "op", Amount: 4})
	isErr(t, "charge after its cancel", err, meter.ErrCancelled)

	must(s.Hold(c, meter.Hold{Account: "held", Op: "op", Max: 6, Min: 1, TTL: time.Hour}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "held", Op: "op"}))(t)
	if e := ledger(t, s, "held")[0]; e.Kind != meter.KindRelease || e.Amount != 6 || e.Detail.Reason != meter.ReasonNotForwarded {
		t.Errorf("cancelled hold: newest entry %+v, want a not_forwarded release", e)
	}
	_, err = s.Settle(c, meter.Settle{Account: "held", Op: "op", Amount: 1})
	isErr(t, "settle after cancel", err, meter.ErrCancelled)
	_, err = s.Extend(c, meter.Extend{Account: "held", Op: "op", Seq: 1, TTL: time.Hour})
	isErr(t, "extend after cancel", err, meter.ErrCancelled)

	// Cancel before apply: the late apply changes nothing.
	r = must(s.Cancel(c, meter.Cancel{Account: "first", Op: "op"}))(t)
	if r.Amount != 0 {
		t.Errorf("cancel before apply: %+v, want nothing given back", r)
	}
	_, err = s.Charge(c, meter.Charge{Account: "first", Op: "op", Amount: 4})
	isErr(t, "charge after a cancel", err, meter.ErrCancelled)
	_, err = s.Hold(c, meter.Hold{Account: "first", Op: "op", Max: 4, Min: 1, TTL: time.Hour})
	isErr(t, "hold after a cancel", err, meter.ErrCancelled)

	// Cancel after a partial refund gives back the rest.
	must(s.Charge(c, meter.Charge{Account: "refunded", Op: "op", Amount: 5}))(t)
	must(s.Refund(c, meter.Refund{Account: "refunded", Op: "op", Amount: 2, Reason: meter.ReasonRefundOn}))(t)
	r = must(s.Cancel(c, meter.Cancel{Account: "refunded", Op: "op"}))(t)
	if r.Amount != 3 {
		t.Errorf("cancel after a refund of 2 of 5: %+v, want 3 given back", r)
	}

	must(s.Hold(c, meter.Hold{Account: "settled", Op: "op", Max: 5, Min: 1, TTL: time.Hour}))(t)
	must(s.Settle(c, meter.Settle{Account: "settled", Op: "op", Amount: 3}))(t)
	must(s.Cancel(c, meter.Cancel{Account: "settled", Op: "op"}))(t)

	for _, id := range []string{"charged", "held", "first", "refunded", "settled"} {
		if a := account(t, s, id); a.Balance != 10 || a.Held != 0 || a.Charged-a.Refunded != 0 {
			t.Errorf("%s after cancel: %+v, want balance 10 and nothing net charged", id, a)
		}
		checkInvariant(t, s, id, false)
	}

	// A cancel does not make an account exist.
	must(s.Cancel(c, meter.Cancel{Account: "ghost", Op: "op"}))(t)
	_, err = s.Account(c, meter.Read{Account: "ghost"})
	isErr(t, "operator read after a cancel", err, meter.ErrNotFound)
}

func testCreditDebit(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)

	r := must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100, Reason: "purchase", By: "ops"}))(t)
	if r.Account != "alice" || r.Balance != 100 || r.Replayed || r.Entry.Kind != meter.KindCredit || r.Entry.Amount != 100 ||
		r.Entry.Op != "order-1" || r.Entry.Detail.Reason != "purchase" || r.Entry.Detail.By != "ops" || r.Entry.Balance != 100 {
		t.Errorf("credit: %+v", r)
	}
	again := must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100, Reason: "purchase", By: "someone-else"}))(t)
	if !again.Replayed || again.Entry.ID != r.Entry.ID || again.Balance != 100 || again.Entry.Detail.By != "ops" {
		t.Errorf("repeated credit: %+v, want the first result replayed", again)
	}
	_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 101, Reason: "purchase"})
	isErr(t, "credit id reused with another amount", err, meter.ErrConflict)
	_, err = s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100})
	isErr(t, "credit id reused with another reason", err, meter.ErrConflict)

	d := must(s.Debit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 30, Reason: "fix", By: "ops"}))(t)
	if d.Balance != 70 || d.Entry.Kind != meter.KindDebit || d.Replayed {
		t.Errorf("debit with a credit's id: %+v, want a separate debit of 30", d)
	}
	_, err = s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-2", Amount: 71})
	insufficient(t, "debit below zero", err, 70, 71)
	must(s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-2", Amount: 70}))(t)
	expectTotals(t, s, "alice", meter.Account{Credited: 100, Debited: 100})

	// Credit ids and request ops are apart.
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "op1", Amount: 5}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: 5}))(t)
	expectTotals(t, s, "alice", meter.Account{Credited: 105, Debited: 100, Charged: 5})

	// Totals never pass 2^53-1.
	must(s.Credit(c, meter.Transfer{Account: "rich", ID: "a", Amount: meter.MaxAmount}))(t)
	_, err = s.Credit(c, meter.Transfer{Account: "rich", ID: "b", Amount: 1})
	isErr(t, "credit past 2^53-1", err, meter.ErrInvalid)
	expectTotals(t, s, "rich", meter.Account{Balance: meter.MaxAmount, Credited: meter.MaxAmount})
	checkInvariant(t, s, "alice", false)
}
