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

	t.Run("takes the amount", func(t *testing.T) {
		r := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: 7, Method: "GET", Route: "/v1/*"}))(t)
		if r.Amount != 7 || r.Balance != 3 || r.Held != 0 || r.Released != 0 || r.Replayed {
			t.Errorf("charge of 7 from 10: %+v, want 7 charged, balance 3", r)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 3, Credited: 10, Charged: 7})
		e := ledger(t, s, "alice")
		if len(e) != 2 {
			t.Fatalf("%d ledger entries, want the credit and the charge", len(e))
		}
		if e[0].Kind != meter.KindCharge || e[0].Op != "op1" || e[0].Amount != 7 || e[0].Balance != 3 ||
			e[0].Detail.Method != "GET" || e[0].Detail.Route != "/v1/*" || e[0].Time.IsZero() {
			t.Errorf("charge entry %+v, want charge op1 of 7, balance 3, GET /v1/*", e[0])
		}
	})

	t.Run("repeated op replays the first receipt", func(t *testing.T) {
		before := snap(t, s, "alice")
		first := meter.Receipt{Amount: 7, Balance: 3}
		for _, amount := range []int64{7, 1} {
			again := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: amount, Method: "GET", Route: "/v1/*"}))(t)
			want := replayed(first)
			if !sameReceipt(again, want) {
				t.Errorf("charge op1 again with %d: %+v, want %+v", amount, again, want)
			}
		}
		unchanged(t, s, "alice", "a repeated charge", before)
	})

	t.Run("insufficient charges nothing", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "op2", Amount: 4})
		insufficient(t, "charge of 4 from 3", err, 3, 4)
		unchanged(t, s, "alice", "a refused charge", before)
	})

	t.Run("whole balance", func(t *testing.T) {
		r := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op3", Amount: 3}))(t)
		if r.Amount != 3 || r.Balance != 0 {
			t.Errorf("charge of the whole balance: %+v, want 3 charged, balance 0", r)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 0, Credited: 10, Charged: 10})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("refused charge of a new account is its arrival", func(t *testing.T) {
		_, err := s.Charge(c, meter.Charge{Account: "bob", Op: "op1", Amount: 1})
		insufficient(t, "charge of a new account", err, 0, 1)
		expectTotals(t, s, "bob", meter.Account{})
	})
}

func testSignupBonus(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)

	t.Run("first charge credits the bonus first", func(t *testing.T) {
		r := must(s.Charge(c, meter.Charge{Account: "new", Op: "op1", Amount: 30, Bonus: 100}))(t)
		if r.Amount != 30 || r.Balance != 70 {
			t.Errorf("first charge of 30 with a bonus of 100: %+v, want balance 70", r)
		}
		must(s.Charge(c, meter.Charge{Account: "new", Op: "op2", Amount: 30, Bonus: 100}))(t)
		must(s.Account(c, meter.Read{Account: "new", Mode: meter.Caller, Bonus: 100}))(t)
		must(s.Hold(c, meter.Hold{Account: "new", Op: "h", Max: 1, Min: 1, TTL: time.Hour, Bonus: 100}))(t)
		must(s.Release(c, meter.Release{Account: "new", Op: "h", Reason: meter.ReasonNotForwarded}))(t)
		expectTotals(t, s, "new", meter.Account{Balance: 40, Credited: 100, Charged: 60})
		e := checkInvariant(t, s, "new", false)
		if len(e) != 5 {
			t.Fatalf("ledger %+v, want bonus, 2 charges, hold, release", e)
		}
		bonus := e[4]
		if bonus.Kind != meter.KindCredit || bonus.Amount != 100 || bonus.Balance != 100 || bonus.Op != meter.ReasonSignupBonus ||
			bonus.Detail.Reason != meter.ReasonSignupBonus || bonus.Detail.By != "tollgate" {
			t.Errorf("oldest entry %+v, want the signup_bonus credit of 100 by tollgate", bonus)
		}
		if e[3].Kind != meter.KindCharge || e[3].Op != "op1" || e[3].Balance != 70 {
			t.Errorf("second oldest entry %+v, want the charge op1 after the bonus", e[3])
		}
	})

	t.Run("operator credit and debit are not the arrival", func(t *testing.T) {
		fund(t, s, "bought", 5)
		must(s.Debit(c, meter.Transfer{Account: "bought", ID: "d", Amount: 1}))(t)
		must(s.Account(c, meter.Read{Account: "bought", Mode: meter.Operator, Bonus: 100}))(t)
		must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "bought", Mode: meter.Operator, Bonus: 100}}))(t)
		expectTotals(t, s, "bought", meter.Account{Balance: 4, Credited: 5, Debited: 1})
		r := must(s.Hold(c, meter.Hold{Account: "bought", Op: "h", Max: 1, Min: 1, TTL: time.Hour, Bonus: 100}))(t)
		if r.Balance != 103 {
			t.Errorf("first caller hold with a bonus of 100 on a balance of 4: %+v, want balance 103", r)
		}
		must(s.Charge(c, meter.Charge{Account: "bought", Op: "c", Amount: 1, Bonus: 100}))(t)
		expectTotals(t, s, "bought", meter.Account{Balance: 102, Held: 1, Credited: 105, Debited: 1, Charged: 1})
		checkInvariant(t, s, "bought", false)
	})

	t.Run("arrival under a bonus of 0 is recorded", func(t *testing.T) {
		a := must(s.Account(c, meter.Read{Account: "early", Mode: meter.Caller}))(t)
		if a.Account != "early" || totals(a) != (meter.Account{}) || a.Created.IsZero() {
			t.Errorf("caller read of a new account under no bonus: %+v, want it created and empty", a)
		}
		must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "early", Mode: meter.Caller, Bonus: 100}}))(t)
		must(s.Account(c, meter.Read{Account: "early", Mode: meter.Caller, Bonus: 100}))(t)
		_, err := s.Charge(c, meter.Charge{Account: "early", Op: "op", Amount: 1, Bonus: 100})
		insufficient(t, "charge after arriving under no bonus", err, 0, 1)
		_, err = s.Hold(c, meter.Hold{Account: "early", Op: "h", Max: 1, Min: 1, TTL: time.Hour, Bonus: 100})
		insufficient(t, "hold after arriving under no bonus", err, 0, 1)
		expectTotals(t, s, "early", meter.Account{})
		if e := ledger(t, s, "early"); len(e) != 0 {
			t.Errorf("ledger %+v, want none: no bonus entry of 0", e)
		}
	})

	t.Run("operator reads never create an account", func(t *testing.T) {
		notFound(t, s, "later")
		notFound(t, s, "later")
		if seen := walkAccounts(t, s, 1000); seen["later"] {
			t.Errorf("an operator read listed the account")
		}
		a := must(s.Account(c, meter.Read{Account: "later", Mode: meter.Caller, Bonus: 25}))(t)
		if a.Account != "later" || totals(a) != (meter.Account{Balance: 25, Credited: 25}) || a.Created.IsZero() {
			t.Errorf("caller read after operator reads: %+v, want the bonus of 25", a)
		}
	})

	t.Run("caller ledger read is an arrival", func(t *testing.T) {
		page := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "reader", Mode: meter.Caller, Bonus: 9}}))(t)
		if len(page.Entries) != 1 || page.Entries[0].Amount != 9 || page.Entries[0].Op != meter.ReasonSignupBonus || page.Next != nil {
			t.Errorf("a caller's first ledger read: %+v, want the bonus entry alone", page)
		}
		expectTotals(t, s, "reader", meter.Account{Balance: 9, Credited: 9})
	})
}

func testHold(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	var first meter.Receipt

	t.Run("holds up to max", func(t *testing.T) {
		first = must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 4, Min: 1, TTL: time.Hour, Method: "POST", Route: "/chat"}))(t)
		if first.Amount != 4 || first.Held != 4 || first.Balance != 6 || first.Replayed {
			t.Errorf("hold of 4 on 10: %+v, want 4 held, balance 6", first)
		}
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindHold || e.Op != "h1" || e.Amount != 4 || e.Balance != 6 || e.Detail.Method != "POST" || e.Detail.Route != "/chat" {
			t.Errorf("hold entry %+v, want hold h1 of 4, POST /chat", e)
		}
		if !near(first.Expires, e.Time.Add(time.Hour)) {
			t.Errorf("hold expires %v, want an hour after the hold at %v", first.Expires, e.Time)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 6, Held: 4, Credited: 10})
	})

	t.Run("repeated op replays the first receipt", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 9, Min: 9, TTL: time.Minute}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("hold h1 again: %+v, want %+v", again, replayed(first))
		}
		unchanged(t, s, "alice", "a repeated hold", before)
	})

	t.Run("holds the balance when below max", func(t *testing.T) {
		r := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h2", Max: 9, Min: 2, TTL: time.Hour}))(t)
		if r.Amount != 6 || r.Held != 6 || r.Balance != 0 {
			t.Errorf("hold up to 9, at least 2, of 6: %+v, want 6 held, balance 0", r)
		}
	})

	t.Run("insufficient when the balance is below min", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "h3", Max: 5, Min: 1, TTL: time.Hour})
		insufficient(t, "hold on an empty balance", err, 0, 1)
		unchanged(t, s, "alice", "a refused hold", before)

		must(s.Release(c, meter.Release{Account: "alice", Op: "h2", Reason: meter.ReasonRefundOn}))(t)
		_, err = s.Hold(c, meter.Hold{Account: "alice", Op: "h4", Max: 9, Min: 7, TTL: time.Hour})
		insufficient(t, "hold of at least 7 on 6", err, 6, 7)
		expectTotals(t, s, "alice", meter.Account{Balance: 6, Held: 4, Credited: 10})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("an op holds or charges, not both", func(t *testing.T) {
		must(s.Charge(c, meter.Charge{Account: "bob", Op: "x", Amount: 1, Bonus: 5}))(t)
		_, err := s.Hold(c, meter.Hold{Account: "bob", Op: "x", Max: 1, Min: 1, TTL: time.Hour})
		isErr(t, "hold with a charge's op", err, meter.ErrConflict)
		_, err = s.Charge(c, meter.Charge{Account: "alice", Op: "h1", Amount: 1})
		isErr(t, "charge with a hold's op", err, meter.ErrConflict)
		expectTotals(t, s, "bob", meter.Account{Balance: 4, Credited: 5, Charged: 1})
		expectTotals(t, s, "alice", meter.Account{Balance: 6, Held: 4, Credited: 10})
	})
}

func testExtend(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	h := must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 2, Min: 1, TTL: time.Minute}))(t)
	var first meter.Receipt

	t.Run("adds and renews", func(t *testing.T) {
		first = must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: 3, Min: 1, TTL: time.Hour}))(t)
		if first.Amount != 3 || first.Held != 5 || first.Balance != 5 || first.Replayed {
			t.Errorf("extend by 3: %+v, want 3 added, 5 held, balance 5", first)
		}
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindHold || e.Op != "h" || e.Amount != 3 || e.Balance != 5 {
			t.Errorf("extend entry %+v, want a hold entry of the 3 added", e)
		}
		if !near(first.Expires, e.Time.Add(time.Hour)) || !first.Expires.After(h.Expires) {
			t.Errorf("extend expires %v, want an hour after the extension at %v", first.Expires, e.Time)
		}
	})

	t.Run("same seq replays the first receipt", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: 4, Min: 4, TTL: 2 * time.Hour}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("extend seq 1 again: %+v, want %+v", again, replayed(first))
		}
		unchanged(t, s, "alice", "a repeated extend", before)
	})

	t.Run("adds the balance when below max", func(t *testing.T) {
		r := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 2, Max: 9, Min: 1, TTL: time.Hour}))(t)
		if r.Amount != 5 || r.Held != 10 || r.Balance != 0 {
			t.Errorf("extend up to 9 of 5: %+v, want 5 added, 10 held", r)
		}
	})

	t.Run("insufficient changes nothing", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 3, Max: 2, Min: 1, TTL: time.Hour})
		insufficient(t, "extend on an empty balance", err, 0, 1)
		unchanged(t, s, "alice", "a refused extend", before)
	})

	t.Run("renewal writes no entry", func(t *testing.T) {
		before := snap(t, s, "alice")
		r := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 4, TTL: 2 * time.Hour}))(t)
		if r.Amount != 0 || r.Held != 10 || r.Balance != 0 || r.Replayed {
			t.Errorf("renewal: %+v, want nothing added, 10 held", r)
		}
		if !r.Expires.After(first.Expires) {
			t.Errorf("renewal by 2h expires %v, not after the 1h extension's %v", r.Expires, first.Expires)
		}
		unchanged(t, s, "alice", "a renewal", before)
	})

	t.Run("older seq changes nothing", func(t *testing.T) {
		before := snap(t, s, "alice")
		old := must(s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 2, Max: 9, Min: 1, TTL: time.Hour}))(t)
		if old.Held != 10 || old.Balance != 0 || !old.Replayed {
			t.Errorf("extend with an old seq: %+v, want a replay with 10 held", old)
		}
		unchanged(t, s, "alice", "an extend with an old seq", before)
		expectTotals(t, s, "alice", meter.Account{Held: 10, Credited: 10})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("unknown op is not found", func(t *testing.T) {
		_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "nope", Seq: 1, Max: 1, Min: 1, TTL: time.Hour})
		isErr(t, "extend of an unknown op", err, meter.ErrNotFound)
		_, err = s.Extend(c, meter.Extend{Account: "nobody", Op: "h", Seq: 1, TTL: time.Hour})
		isErr(t, "extend on an unseen account", err, meter.ErrNotFound)
		notFound(t, s, "nobody")
	})

	t.Run("settled or released hold is gone", func(t *testing.T) {
		must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1}))(t)
		before := snap(t, s, "alice")
		_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 5, Max: 1, Min: 1, TTL: time.Hour})
		isErr(t, "extend of a settled hold", err, meter.ErrGone)
		unchanged(t, s, "alice", "an extend of a settled hold", before)

		must(s.Hold(c, meter.Hold{Account: "alice", Op: "r", Max: 1, Min: 1, TTL: time.Hour}))(t)
		must(s.Release(c, meter.Release{Account: "alice", Op: "r", Reason: meter.ReasonRefundOn}))(t)
		_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "r", Seq: 1, TTL: time.Hour})
		isErr(t, "extend of a released hold", err, meter.ErrGone)
		expectTotals(t, s, "alice", meter.Account{Balance: 9, Credited: 10, Charged: 1})
		checkInvariant(t, s, "alice", false)
	})
}

func testSettle(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 6, Min: 1, TTL: time.Hour}))(t)
	var first meter.Receipt

	t.Run("above the hold is invalid", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 7})
		isErr(t, "settle of 7 on a hold of 6", err, meter.ErrInvalid)
		unchanged(t, s, "alice", "a settle above the hold", before)
		expectTotals(t, s, "alice", meter.Account{Balance: 4, Held: 6, Credited: 10})
	})

	t.Run("charges the amount and releases the rest", func(t *testing.T) {
		first = must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
		if first.Amount != 2 || first.Released != 4 || first.Balance != 8 || first.Held != 0 || first.Replayed {
			t.Errorf("settle 2 of 6: %+v, want 2 charged, 4 released, balance 8", first)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 8, Credited: 10, Charged: 2})
		e := ledger(t, s, "alice")
		if len(e) != 3 {
			t.Fatalf("ledger %+v, want credit, hold, settle", e)
		}
		if e[0].Kind != meter.KindSettle || e[0].Op != "h" || e[0].Amount != 2 || e[0].Detail.Released != 4 || !e[0].Detail.CutOff || e[0].Balance != 8 {
			t.Errorf("settle entry %+v, want 2 settled, 4 released, cut off, balance 8", e[0])
		}
	})

	t.Run("same values replay, other values conflict", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("repeated settle: %+v, want %+v", again, replayed(first))
		}
		_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 3, CutOff: true})
		isErr(t, "settle again with another amount", err, meter.ErrConflict)
		_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2})
		isErr(t, "settle again with another cut-off", err, meter.ErrConflict)
		unchanged(t, s, "alice", "a repeated settle", before)
	})

	t.Run("settle, release, settle: only the first takes effect", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn})
		isErr(t, "release after settle", err, meter.ErrGone)
		again := must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 2, CutOff: true}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("settle after release: %+v, want %+v", again, replayed(first))
		}
		unchanged(t, s, "alice", "a release and a settle after a settle", before)
	})

	t.Run("zero charges nothing and releases all", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "z", Max: 5, Min: 5, TTL: time.Hour}))(t)
		r := must(s.Settle(c, meter.Settle{Account: "alice", Op: "z"}))(t)
		if r.Amount != 0 || r.Released != 5 || r.Balance != 8 {
			t.Errorf("zero settle: %+v, want 5 released, balance 8", r)
		}
		if e := ledger(t, s, "alice")[0]; e.Kind != meter.KindSettle || e.Amount != 0 || e.Detail.Released != 5 || e.Detail.CutOff {
			t.Errorf("zero settle entry %+v, want a settle of 0 releasing 5", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 8, Credited: 10, Charged: 2})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("whole hold", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "w", Max: 3, Min: 1, TTL: time.Hour}))(t)
		r := must(s.Settle(c, meter.Settle{Account: "alice", Op: "w", Amount: 3}))(t)
		if r.Amount != 3 || r.Released != 0 || r.Balance != 5 {
			t.Errorf("settle of the whole hold of 3: %+v, want 3 charged, balance 5", r)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 5, Credited: 10, Charged: 5})
	})

	t.Run("unknown op or a charge", func(t *testing.T) {
		_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "nope", Amount: 1})
		isErr(t, "settle of an unknown op", err, meter.ErrNotFound)
		must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 1}))(t)
		before := snap(t, s, "alice")
		_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "c", Amount: 1})
		isErr(t, "settle of a charge", err, meter.ErrConflict)
		unchanged(t, s, "alice", "a settle of a charge", before)
		checkInvariant(t, s, "alice", false)
	})
}

func testRelease(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 6, Min: 1, TTL: time.Hour}))(t)
	var first meter.Receipt

	t.Run("unknown reason is invalid", func(t *testing.T) {
		before := snap(t, s, "alice")
		for _, reason := range []string{"because", "", meter.ReasonExpired, meter.ReasonSignupBonus} {
			_, err := s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: reason})
			isErr(t, "release for "+reason, err, meter.ErrInvalid)
		}
		unchanged(t, s, "alice", "a release with a bad reason", before)
	})

	t.Run("releases in full", func(t *testing.T) {
		first = must(s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn}))(t)
		if first.Amount != 6 || first.Balance != 10 || first.Held != 0 || first.Replayed {
			t.Errorf("release: %+v, want 6 released, balance 10", first)
		}
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindRelease || e.Op != "h" || e.Amount != 6 || e.Balance != 10 || e.Detail.Reason != meter.ReasonRefundOn {
			t.Errorf("release entry %+v, want 6 released for refund_on", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 10, Credited: 10})
	})

	t.Run("repeat replays", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("repeated release: %+v, want %+v", again, replayed(first))
		}
		unchanged(t, s, "alice", "a repeated release", before)
	})

	t.Run("settle after release is gone", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1})
		isErr(t, "settle after release", err, meter.ErrGone)
		_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "h"})
		isErr(t, "settle of 0 after release", err, meter.ErrGone)
		unchanged(t, s, "alice", "a settle after release", before)
	})

	t.Run("release after settle is gone", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "s", Max: 4, Min: 1, TTL: time.Hour}))(t)
		must(s.Settle(c, meter.Settle{Account: "alice", Op: "s", Amount: 1}))(t)
		before := snap(t, s, "alice")
		_, err := s.Release(c, meter.Release{Account: "alice", Op: "s", Reason: meter.ReasonNotForwarded})
		isErr(t, "release after settle", err, meter.ErrGone)
		unchanged(t, s, "alice", "a release after settle", before)
	})

	t.Run("unknown op or a charge", func(t *testing.T) {
		_, err := s.Release(c, meter.Release{Account: "alice", Op: "nope", Reason: meter.ReasonRefundOn})
		isErr(t, "release of an unknown op", err, meter.ErrNotFound)
		must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 1}))(t)
		_, err = s.Release(c, meter.Release{Account: "alice", Op: "c", Reason: meter.ReasonRefundOn})
		isErr(t, "release of a charge", err, meter.ErrConflict)
		expectTotals(t, s, "alice", meter.Account{Balance: 8, Credited: 10, Charged: 2})
		checkInvariant(t, s, "alice", false)
	})
}

func testRefund(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 4}))(t)
	var first meter.Receipt

	t.Run("above the charge is invalid", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 5, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of 5 of a charge of 4", err, meter.ErrInvalid)
		unchanged(t, s, "alice", "a refund above the charge", before)
	})

	t.Run("gives back the amount", func(t *testing.T) {
		first = must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 3, Reason: meter.ReasonRefundOn}))(t)
		if first.Amount != 3 || first.Balance != 9 || first.Replayed {
			t.Errorf("refund of 3: %+v, want 3 refunded, balance 9", first)
		}
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindRefund || e.Op != "c" || e.Amount != 3 || e.Balance != 9 || e.Detail.Reason != meter.ReasonRefundOn {
			t.Errorf("refund entry %+v, want 3 refunded for refund_on", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 9, Credited: 10, Charged: 4, Refunded: 3})
	})

	t.Run("once per op: same values replay, other values conflict", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 3, Reason: meter.ReasonRefundOn}))(t)
		if !sameReceipt(again, replayed(first)) {
			t.Errorf("repeated refund: %+v, want %+v", again, replayed(first))
		}
		_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "second refund of the rest", err, meter.ErrConflict)
		_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 3, Reason: meter.ReasonNotForwarded})
		isErr(t, "second refund with another reason", err, meter.ErrConflict)
		unchanged(t, s, "alice", "a repeated refund", before)
	})

	t.Run("unknown op is not found", func(t *testing.T) {
		_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "nope", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of an unknown op", err, meter.ErrNotFound)
		_, err = s.Refund(c, meter.Refund{Account: "nobody", Op: "c", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund on an unseen account", err, meter.ErrNotFound)
		notFound(t, s, "nobody")
	})

	t.Run("settled hold is refunded like a charge", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 5, Min: 1, TTL: time.Hour}))(t)
		before := snap(t, s, "alice")
		_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "h", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of an open hold", err, meter.ErrInvalid)
		unchanged(t, s, "alice", "a refund of an open hold", before)
		must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 3}))(t)
		_, err = s.Refund(c, meter.Refund{Account: "alice", Op: "h", Amount: 4, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of 4 of a settle of 3", err, meter.ErrInvalid)
		r := must(s.Refund(c, meter.Refund{Account: "alice", Op: "h", Amount: 3, Reason: meter.ReasonNotForwarded}))(t)
		if r.Amount != 3 || r.Balance != 9 {
			t.Errorf("refund of a settled hold: %+v, want 3 refunded, balance 9", r)
		}
		e := ledger(t, s, "alice")[0]
		if e.Kind != meter.KindRefund || e.Amount != 3 || e.Op != "h" || e.Detail.Reason != meter.ReasonNotForwarded {
			t.Errorf("refund entry %+v, want 3 refunded for not_forwarded", e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 9, Credited: 10, Charged: 7, Refunded: 6})
	})

	t.Run("released hold charged nothing", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "r", Max: 2, Min: 1, TTL: time.Hour}))(t)
		must(s.Release(c, meter.Release{Account: "alice", Op: "r", Reason: meter.ReasonRefundOn}))(t)
		_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "r", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund of a released hold", err, meter.ErrInvalid)
		expectTotals(t, s, "alice", meter.Account{Balance: 9, Credited: 10, Charged: 7, Refunded: 6})
		checkInvariant(t, s, "alice", false)
	})
}

func testCancel(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	// Each account starts with 10 and must end as if its op never happened.
	ids := []string{"charged", "held", "first", "refunded", "fully-refunded", "settled", "released"}
	for _, id := range ids {
		fund(t, s, id, 10)
	}

	t.Run("applied charge is refunded", func(t *testing.T) {
		must(s.Charge(c, meter.Charge{Account: "charged", Op: "op", Amount: 4}))(t)
		r := must(s.Cancel(c, meter.Cancel{Account: "charged", Op: "op"}))(t)
		if r.Amount != 4 || r.Balance != 10 || r.Replayed {
			t.Errorf("cancel of a charge of 4: %+v, want 4 given back, balance 10", r)
		}
		e := ledger(t, s, "charged")
		if len(e) != 3 || e[0].Kind != meter.KindRefund || e[0].Op != "op" || e[0].Amount != 4 || e[0].Balance != 10 || e[0].Detail.Reason != meter.ReasonNotForwarded {
			t.Errorf("ledger after cancel %+v, want a not_forwarded refund of 4 newest", e)
		}
		before := snap(t, s, "charged")
		again := must(s.Cancel(c, meter.Cancel{Account: "charged", Op: "op"}))(t)
		if !sameReceipt(again, replayed(r)) {
			t.Errorf("repeated cancel: %+v, want %+v", again, replayed(r))
		}
		_, err := s.Charge(c, meter.Charge{Account: "charged", Op: "op", Amount: 4})
		isErr(t, "charge after its cancel", err, meter.ErrCancelled)
		_, err = s.Refund(c, meter.Refund{Account: "charged", Op: "op", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund after cancel", err, meter.ErrCancelled)
		unchanged(t, s, "charged", "steps after a cancel", before)
		expectTotals(t, s, "charged", meter.Account{Balance: 10, Credited: 10, Charged: 4, Refunded: 4})
	})

	t.Run("open hold is released", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "held", Op: "op", Max: 6, Min: 1, TTL: time.Hour}))(t)
		r := must(s.Cancel(c, meter.Cancel{Account: "held", Op: "op"}))(t)
		if r.Amount != 6 || r.Balance != 10 {
			t.Errorf("cancel of a hold of 6: %+v, want 6 given back, balance 10", r)
		}
		if e := ledger(t, s, "held")[0]; e.Kind != meter.KindRelease || e.Op != "op" || e.Amount != 6 || e.Detail.Reason != meter.ReasonNotForwarded {
			t.Errorf("cancelled hold: newest entry %+v, want a not_forwarded release of 6", e)
		}
		before := snap(t, s, "held")
		again := must(s.Cancel(c, meter.Cancel{Account: "held", Op: "op"}))(t)
		if !sameReceipt(again, replayed(r)) {
			t.Errorf("repeated cancel: %+v, want %+v", again, replayed(r))
		}
		_, err := s.Settle(c, meter.Settle{Account: "held", Op: "op", Amount: 1})
		isErr(t, "settle after cancel", err, meter.ErrCancelled)
		_, err = s.Extend(c, meter.Extend{Account: "held", Op: "op", Seq: 1, TTL: time.Hour})
		isErr(t, "extend after cancel", err, meter.ErrCancelled)
		_, err = s.Release(c, meter.Release{Account: "held", Op: "op", Reason: meter.ReasonRefundOn})
		isErr(t, "release after cancel", err, meter.ErrCancelled)
		_, err = s.Hold(c, meter.Hold{Account: "held", Op: "op", Max: 6, Min: 1, TTL: time.Hour})
		isErr(t, "hold after cancel", err, meter.ErrCancelled)
		unchanged(t, s, "held", "steps after a cancel", before)
		expectTotals(t, s, "held", meter.Account{Balance: 10, Credited: 10})
	})

	t.Run("cancel before apply tombstones the op", func(t *testing.T) {
		before := snap(t, s, "first")
		r := must(s.Cancel(c, meter.Cancel{Account: "first", Op: "op"}))(t)
		if r.Amount != 0 || r.Balance != 10 || r.Replayed {
			t.Errorf("cancel before apply: %+v, want nothing given back, balance 10", r)
		}
		again := must(s.Cancel(c, meter.Cancel{Account: "first", Op: "op"}))(t)
		if !sameReceipt(again, replayed(r)) {
			t.Errorf("repeated cancel: %+v, want %+v", again, replayed(r))
		}
		_, err := s.Charge(c, meter.Charge{Account: "first", Op: "op", Amount: 4})
		isErr(t, "charge after a cancel", err, meter.ErrCancelled)
		_, err = s.Hold(c, meter.Hold{Account: "first", Op: "op", Max: 4, Min: 1, TTL: time.Hour})
		isErr(t, "hold after a cancel", err, meter.ErrCancelled)
		_, err = s.Refund(c, meter.Refund{Account: "first", Op: "op", Amount: 1, Reason: meter.ReasonRefundOn})
		isErr(t, "refund after a cancel", err, meter.ErrCancelled)
		unchanged(t, s, "first", "a cancel before apply and the late apply", before)
	})

	t.Run("cancel after a partial refund gives back the rest", func(t *testing.T) {
		must(s.Charge(c, meter.Charge{Account: "refunded", Op: "op", Amount: 5}))(t)
		must(s.Refund(c, meter.Refund{Account: "refunded", Op: "op", Amount: 2, Reason: meter.ReasonRefundOn}))(t)
		r := must(s.Cancel(c, meter.Cancel{Account: "refunded", Op: "op"}))(t)
		if r.Amount != 3 || r.Balance != 10 {
			t.Errorf("cancel after a refund of 2 of 5: %+v, want 3 given back", r)
		}
		if e := ledger(t, s, "refunded")[0]; e.Kind != meter.KindRefund || e.Amount != 3 || e.Detail.Reason != meter.ReasonNotForwarded {
			t.Errorf("newest entry %+v, want a not_forwarded refund of 3", e)
		}
		expectTotals(t, s, "refunded", meter.Account{Balance: 10, Credited: 10, Charged: 5, Refunded: 5})
	})

	t.Run("cancel after a full refund gives back nothing", func(t *testing.T) {
		must(s.Charge(c, meter.Charge{Account: "fully-refunded", Op: "op", Amount: 5}))(t)
		must(s.Refund(c, meter.Refund{Account: "fully-refunded", Op: "op", Amount: 5, Reason: meter.ReasonRefundOn}))(t)
		before := snap(t, s, "fully-refunded")
		r := must(s.Cancel(c, meter.Cancel{Account: "fully-refunded", Op: "op"}))(t)
		if r.Amount != 0 || r.Balance != 10 {
			t.Errorf("cancel after a full refund: %+v, want nothing given back", r)
		}
		unchanged(t, s, "fully-refunded", "a cancel after a full refund", before)
	})

	t.Run("settled hold is refunded", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "settled", Op: "op", Max: 5, Min: 1, TTL: time.Hour}))(t)
		must(s.Settle(c, meter.Settle{Account: "settled", Op: "op", Amount: 3}))(t)
		r := must(s.Cancel(c, meter.Cancel{Account: "settled", Op: "op"}))(t)
		if r.Amount != 3 || r.Balance != 10 {
			t.Errorf("cancel of a settle of 3: %+v, want 3 given back", r)
		}
		if e := ledger(t, s, "settled")[0]; e.Kind != meter.KindRefund || e.Amount != 3 || e.Detail.Reason != meter.ReasonNotForwarded {
			t.Errorf("newest entry %+v, want a not_forwarded refund of 3", e)
		}
		expectTotals(t, s, "settled", meter.Account{Balance: 10, Credited: 10, Charged: 3, Refunded: 3})
	})

	t.Run("released hold gives back nothing", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "released", Op: "op", Max: 5, Min: 1, TTL: time.Hour}))(t)
		must(s.Release(c, meter.Release{Account: "released", Op: "op", Reason: meter.ReasonRefundOn}))(t)
		before := snap(t, s, "released")
		r := must(s.Cancel(c, meter.Cancel{Account: "released", Op: "op"}))(t)
		if r.Amount != 0 || r.Balance != 10 {
			t.Errorf("cancel of a released hold: %+v, want nothing given back", r)
		}
		unchanged(t, s, "released", "a cancel of a released hold", before)
	})

	t.Run("every account ends as if its op never happened", func(t *testing.T) {
		for _, id := range ids {
			a := account(t, s, id)
			if a.Balance != 10 || a.Held != 0 || a.Credited != 10 || a.Debited != 0 || a.Charged != a.Refunded {
				t.Errorf("%s after cancel: %+v, want balance 10 and nothing net charged", id, a)
			}
			checkInvariant(t, s, id, false)
		}
	})

	t.Run("cancel does not make an account exist", func(t *testing.T) {
		r := must(s.Cancel(c, meter.Cancel{Account: "ghost", Op: "op"}))(t)
		if r.Amount != 0 || r.Balance != 0 {
			t.Errorf("cancel on an unseen account: %+v, want nothing", r)
		}
		notFound(t, s, "ghost")
		again := must(s.Cancel(c, meter.Cancel{Account: "ghost", Op: "op"}))(t)
		if !sameReceipt(again, replayed(r)) {
			t.Errorf("repeated cancel on an unseen account: %+v, want %+v", again, replayed(r))
		}
		notFound(t, s, "ghost")
		if walkAccounts(t, s, 1000)["ghost"] {
			t.Errorf("an account with only a cancel is listed")
		}
		// The tombstone still stops the late charge.
		_, err := s.Charge(c, meter.Charge{Account: "ghost", Op: "op", Amount: 1})
		isErr(t, "late charge on the cancelled op", err, meter.ErrCancelled)
		fund(t, s, "ghost", 5)
		_, err = s.Charge(c, meter.Charge{Account: "ghost", Op: "op", Amount: 1})
		isErr(t, "late charge on the cancelled op with a balance", err, meter.ErrCancelled)
		expectTotals(t, s, "ghost", meter.Account{Balance: 5, Credited: 5})
	})
}

func testCreditDebit(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	var credit meter.TransferReceipt

	t.Run("credit", func(t *testing.T) {
		credit = must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100, Reason: "purchase 1", By: "ops"}))(t)
		e := credit.Entry
		if credit.Account != "alice" || credit.Balance != 100 || credit.Replayed || e.Kind != meter.KindCredit || e.Amount != 100 ||
			e.Op != "order-1" || e.Detail.Reason != "purchase 1" || e.Detail.By != "ops" || e.Balance != 100 || e.ID == "" || e.Time.IsZero() {
			t.Errorf("credit: %+v", credit)
		}
		if l := ledger(t, s, "alice"); len(l) != 1 || !sameEntry(l[0], e) {
			t.Errorf("ledger %+v, want the credit's entry %+v alone", l, e)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 100, Credited: 100})
	})

	t.Run("same id replays, By not compared", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100, Reason: "purchase 1", By: "someone-else"}))(t)
		want := credit
		want.Replayed = true
		if !sameTransfer(again, want) {
			t.Errorf("repeated credit: %+v, want %+v", again, want)
		}
		unchanged(t, s, "alice", "a repeated credit", before)
	})

	t.Run("same id with other values conflicts", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 101, Reason: "purchase 1"})
		isErr(t, "credit id reused with another amount", err, meter.ErrConflict)
		_, err = s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100})
		isErr(t, "credit id reused with another reason", err, meter.ErrConflict)
		unchanged(t, s, "alice", "a conflicting credit", before)
	})

	var debit meter.TransferReceipt
	t.Run("debit ids are apart from credit ids", func(t *testing.T) {
		debit = must(s.Debit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 30, Reason: "fix", By: "ops"}))(t)
		e := debit.Entry
		if debit.Account != "alice" || debit.Balance != 70 || debit.Replayed || e.Kind != meter.KindDebit || e.Amount != 30 ||
			e.Op != "order-1" || e.Detail.Reason != "fix" || e.Detail.By != "ops" || e.Balance != 70 || e.ID == credit.Entry.ID {
			t.Errorf("debit with a credit's id: %+v, want a separate debit of 30", debit)
		}
		again := must(s.Credit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 100, Reason: "purchase 1"}))(t)
		if !again.Replayed || !sameEntry(again.Entry, credit.Entry) {
			t.Errorf("the credit after a debit of its id: %+v, want its replay", again)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 70, Credited: 100, Debited: 30})
	})

	t.Run("debit replays and conflicts", func(t *testing.T) {
		before := snap(t, s, "alice")
		again := must(s.Debit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 30, Reason: "fix", By: "other"}))(t)
		want := debit
		want.Replayed = true
		if !sameTransfer(again, want) {
			t.Errorf("repeated debit: %+v, want %+v", again, want)
		}
		_, err := s.Debit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 31, Reason: "fix"})
		isErr(t, "debit id reused with another amount", err, meter.ErrConflict)
		_, err = s.Debit(c, meter.Transfer{Account: "alice", ID: "order-1", Amount: 30, Reason: "fox"})
		isErr(t, "debit id reused with another reason", err, meter.ErrConflict)
		unchanged(t, s, "alice", "a repeated debit", before)
	})

	t.Run("debit never below zero", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-2", Amount: 71})
		insufficient(t, "debit of 71 from 70", err, 70, 71)
		unchanged(t, s, "alice", "a refused debit", before)
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 20, Min: 1, TTL: time.Hour}))(t)
		_, err = s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-2", Amount: 51})
		insufficient(t, "debit of 51 from 50 with 20 held", err, 50, 51)
		r := must(s.Debit(c, meter.Transfer{Account: "alice", ID: "fix-2", Amount: 50}))(t)
		if r.Balance != 0 {
			t.Errorf("debit of the whole balance: %+v, want balance 0", r)
		}
		must(s.Release(c, meter.Release{Account: "alice", Op: "h", Reason: meter.ReasonRefundOn}))(t)
		expectTotals(t, s, "alice", meter.Account{Balance: 20, Credited: 100, Debited: 80})
	})

	t.Run("ids are apart from request ops", func(t *testing.T) {
		must(s.Credit(c, meter.Transfer{Account: "alice", ID: "op1", Amount: 5}))(t)
		r := must(s.Charge(c, meter.Charge{Account: "alice", Op: "op1", Amount: 5}))(t)
		if r.Replayed || r.Amount != 5 {
			t.Errorf("charge with a credit's id as op: %+v, want a new charge", r)
		}
		must(s.Charge(c, meter.Charge{Account: "alice", Op: "op2", Amount: 5}))(t)
		tr := must(s.Credit(c, meter.Transfer{Account: "alice", ID: "op2", Amount: 5}))(t)
		if tr.Replayed || tr.Entry.Kind != meter.KindCredit {
			t.Errorf("credit with a charge's op as id: %+v, want a new credit", tr)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 20, Credited: 110, Debited: 80, Charged: 10})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("ids are per account", func(t *testing.T) {
		r := must(s.Credit(c, meter.Transfer{Account: "bob", ID: "order-1", Amount: 7, Reason: "other"}))(t)
		if r.Replayed || r.Balance != 7 {
			t.Errorf("credit on bob with alice's id: %+v, want a new credit", r)
		}
	})

	t.Run("totals never pass 2^53-1", func(t *testing.T) {
		must(s.Credit(c, meter.Transfer{Account: "rich", ID: "a", Amount: meter.MaxAmount}))(t)
		before := snap(t, s, "rich")
		_, err := s.Credit(c, meter.Transfer{Account: "rich", ID: "b", Amount: 1})
		isErr(t, "credit past 2^53-1", err, meter.ErrInvalid)
		unchanged(t, s, "rich", "a credit past 2^53-1", before)
		expectTotals(t, s, "rich", meter.Account{Balance: meter.MaxAmount, Credited: meter.MaxAmount})

		// The credited total is capped even when the balance is not full.
		must(s.Debit(c, meter.Transfer{Account: "rich", ID: "d", Amount: 10}))(t)
		_, err = s.Credit(c, meter.Transfer{Account: "rich", ID: "c", Amount: 5})
		isErr(t, "credit taking the credited total past 2^53-1", err, meter.ErrInvalid)
		expectTotals(t, s, "rich", meter.Account{Balance: meter.MaxAmount - 10, Credited: meter.MaxAmount, Debited: 10})
		checkInvariant(t, s, "rich", false)
	})
}
