package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// badCalls returns calls on account that the store must refuse with
// ErrInvalid for their arguments alone, by name. The account holds an open
// hold "h" and a charge "c" when it exists.
func badCalls(s meter.Store, c context.Context, account string) map[string]func() error {
	calls := map[string]func() error{}
	add := func(name string, call func() error) { calls[name] = call }
	huge := int64(meter.MaxAmount + 1)
	for _, n := range []int64{0, -1, huge, -meter.MaxAmount} {
		add(fmt.Sprintf("charge amount %d", n), func() error {
			_, err := s.Charge(c, meter.Charge{Account: account, Op: "x", Amount: n})
			return err
		})
		add(fmt.Sprintf("hold max %d", n), func() error {
			_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: n, Min: 1, TTL: time.Hour})
			return err
		})
		add(fmt.Sprintf("hold min %d", n), func() error {
			_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: 5, Min: n, TTL: time.Hour})
			return err
		})
		add(fmt.Sprintf("credit amount %d", n), func() error {
			_, err := s.Credit(c, meter.Transfer{Account: account, ID: "x", Amount: n})
			return err
		})
		add(fmt.Sprintf("debit amount %d", n), func() error {
			_, err := s.Debit(c, meter.Transfer{Account: account, ID: "x", Amount: n})
			return err
		})
		add(fmt.Sprintf("refund amount %d", n), func() error {
			_, err := s.Refund(c, meter.Refund{Account: account, Op: "c", Amount: n, Reason: meter.ReasonRefundOn})
			return err
		})
		add(fmt.Sprintf("extend seq %d", n), func() error {
			_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: n, TTL: time.Hour})
			return err
		})
	}
	for _, n := range []int64{-1, huge} {
		add(fmt.Sprintf("charge bonus %d", n), func() error {
			_, err := s.Charge(c, meter.Charge{Account: account, Op: "x", Amount: 1, Bonus: n})
			return err
		})
		add(fmt.Sprintf("hold bonus %d", n), func() error {
			_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: 1, Min: 1, TTL: time.Hour, Bonus: n})
			return err
		})
		add(fmt.Sprintf("caller read bonus %d", n), func() error {
			_, err := s.Account(c, meter.Read{Account: account, Mode: meter.Caller, Bonus: n})
			return err
		})
		add(fmt.Sprintf("settle amount %d", n), func() error {
			_, err := s.Settle(c, meter.Settle{Account: account, Op: "h", Amount: n})
			return err
		})
		add(fmt.Sprintf("extend max %d", n), func() error {
			_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: 1, Max: n, Min: 1, TTL: time.Hour})
			return err
		})
		add(fmt.Sprintf("extend min %d", n), func() error {
			_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: 1, Max: 5, Min: n, TTL: time.Hour})
			return err
		})
	}
	for _, ttl := range []time.Duration{0, -time.Second, time.Microsecond, 367 * 24 * time.Hour} {
		add(fmt.Sprintf("hold ttl %v", ttl), func() error {
			_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: 1, Min: 1, TTL: ttl})
			return err
		})
		add(fmt.Sprintf("extend ttl %v", ttl), func() error {
			_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: 1, TTL: ttl})
			return err
		})
	}
	add("hold min above max", func() error {
		_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: 1, Min: 2, TTL: time.Hour})
		return err
	})
	add("extend min above max", func() error {
		_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: 1, Max: 0, Min: 1, TTL: time.Hour})
		return err
	})
	add("extend adding with min 0", func() error {
		_, err := s.Extend(c, meter.Extend{Account: account, Op: "h", Seq: 1, Max: 5, TTL: time.Hour})
		return err
	})
	for _, op := range []string{"", "a b", "a\nb", "é", strings.Repeat("o", 256)} {
		add(fmt.Sprintf("charge op %q", op), func() error {
			_, err := s.Charge(c, meter.Charge{Account: account, Op: op, Amount: 1})
			return err
		})
		add(fmt.Sprintf("cancel op %q", op), func() error {
			_, err := s.Cancel(c, meter.Cancel{Account: account, Op: op})
			return err
		})
	}
	add("charge method of 1025 bytes", func() error {
		_, err := s.Charge(c, meter.Charge{Account: account, Op: "x", Amount: 1, Method: strings.Repeat("M", 1025)})
		return err
	})
	add("hold route of 1025 bytes", func() error {
		_, err := s.Hold(c, meter.Hold{Account: account, Op: "x", Max: 1, Min: 1, TTL: time.Hour, Route: strings.Repeat("/", 1025)})
		return err
	})
	for _, reason := range []string{"", "because", meter.ReasonExpired} {
		add(fmt.Sprintf("release reason %q", reason), func() error {
			_, err := s.Release(c, meter.Release{Account: account, Op: "h", Reason: reason})
			return err
		})
		add(fmt.Sprintf("refund reason %q", reason), func() error {
			_, err := s.Refund(c, meter.Refund{Account: account, Op: "c", Amount: 1, Reason: reason})
			return err
		})
	}
	add("empty credit id", func() error {
		_, err := s.Credit(c, meter.Transfer{Account: account, Amount: 1})
		return err
	})
	add("credit id of 256 bytes", func() error {
		_, err := s.Credit(c, meter.Transfer{Account: account, ID: strings.Repeat("i", 256), Amount: 1})
		return err
	})
	add("debit id with a space", func() error {
		_, err := s.Debit(c, meter.Transfer{Account: account, ID: "a b", Amount: 1})
		return err
	})
	add("reason of 257 bytes", func() error {
		_, err := s.Credit(c, meter.Transfer{Account: account, ID: "r", Amount: 1, Reason: strings.Repeat("r", 257)})
		return err
	})
	add("reason with a newline", func() error {
		_, err := s.Credit(c, meter.Transfer{Account: account, ID: "r", Amount: 1, Reason: "a\nb"})
		return err
	})
	add("by with a space", func() error {
		_, err := s.Debit(c, meter.Transfer{Account: account, ID: "r", Amount: 1, By: "a b"})
		return err
	})
	add("read mode 2", func() error {
		_, err := s.Account(c, meter.Read{Account: account, Mode: 2})
		return err
	})
	for _, limit := range []int{-1, 1001} {
		add(fmt.Sprintf("ledger limit %d", limit), func() error {
			_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: account}, Limit: limit})
			return err
		})
	}
	for _, before := range []string{"18446744073709551616-0", "x-1", "12", "1-", "-1"} {
		add(fmt.Sprintf("ledger before %q", before), func() error {
			_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: account, Mode: meter.Caller, Bonus: 7}, Before: before})
			return err
		})
	}
	addLeaseCalls(s, c, account, add)
	return calls
}

// addLeaseCalls adds the lease calls that the store must refuse with
// ErrInvalid for their arguments alone. They name the op "x", which the
// caller then uses for another operation: a refused call leaves no op
// behind.
func addLeaseCalls(s meter.Store, c context.Context, account string, add func(string, func() error)) {
	huge := int64(meter.MaxAmount + 1)
	lease := func(name string, l meter.Lease) {
		l.Account, l.Op = account, "x"
		add("lease "+name, func() error {
			_, err := s.Lease(c, l)
			return err
		})
	}
	// spend is a valid later call, for the cases to break.
	spend := func(edit func(*meter.Lease)) meter.Lease {
		l := meter.Lease{Seq: 3, TTL: time.Hour, Charges: []meter.LeaseCharge{{Method: "GET", Route: "/", Amount: 1, Count: 1}},
			Refunds: []meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}}
		edit(&l)
		return l
	}
	for _, n := range []int64{0, -1, huge, -meter.MaxAmount} {
		lease(fmt.Sprintf("seq %d", n), meter.Lease{Seq: n, TTL: time.Hour, Grow: 1})
		lease(fmt.Sprintf("charge amount %d", n), spend(func(l *meter.Lease) { l.Charges[0].Amount = n }))
		lease(fmt.Sprintf("charge count %d", n), spend(func(l *meter.Lease) { l.Charges[0].Count = n }))
		lease(fmt.Sprintf("refund amount %d", n), spend(func(l *meter.Lease) { l.Refunds[0].Amount = n }))
		lease(fmt.Sprintf("refund count %d", n), spend(func(l *meter.Lease) { l.Refunds[0].Count = n }))
		lease(fmt.Sprintf("refund seq %d", n), spend(func(l *meter.Lease) { l.Refunds[0].Seq = n }))
	}
	for _, n := range []int64{-1, huge} {
		lease(fmt.Sprintf("take grow %d", n), meter.Lease{Seq: 1, TTL: time.Hour, Grow: n})
		lease(fmt.Sprintf("grow %d", n), spend(func(l *meter.Lease) { l.Grow = n }))
		lease(fmt.Sprintf("shrink %d", n), spend(func(l *meter.Lease) { l.Shrink = n }))
	}
	for _, ttl := range []time.Duration{0, -time.Second, time.Microsecond, 367 * 24 * time.Hour} {
		lease(fmt.Sprintf("take ttl %v", ttl), meter.Lease{Seq: 1, TTL: ttl, Grow: 1})
		lease(fmt.Sprintf("ttl %v", ttl), spend(func(l *meter.Lease) { l.TTL = ttl }))
	}
	lease("take of 0", meter.Lease{Seq: 1, TTL: time.Hour})
	lease("take that shrinks", meter.Lease{Seq: 1, TTL: time.Hour, Grow: 1, Shrink: 1})
	lease("take that closes", meter.Lease{Seq: 1, TTL: time.Hour, Grow: 1, Close: true})
	lease("take that charges", meter.Lease{Seq: 1, TTL: time.Hour, Grow: 1, Charges: []meter.LeaseCharge{{Amount: 1, Count: 1}}})
	lease("take that refunds", meter.Lease{Seq: 1, TTL: time.Hour, Grow: 1, Refunds: []meter.LeaseRefund{{Seq: 1, Amount: 1, Count: 1}}})
	lease("grow and shrink", spend(func(l *meter.Lease) { l.Grow, l.Shrink = 1, 1 }))
	lease("drain -1ns", spend(func(l *meter.Lease) { l.Drain = -1 }))
	lease("refund of call 1", spend(func(l *meter.Lease) { l.Refunds[0].Seq = 1 }))
	lease("refund of the call itself", spend(func(l *meter.Lease) { l.Refunds[0].Seq = 3 }))
	lease("refund of a later call", spend(func(l *meter.Lease) { l.Refunds[0].Seq = 4 }))
	lease("charges past 2^53-1", spend(func(l *meter.Lease) {
		l.Charges = []meter.LeaseCharge{{Amount: meter.MaxAmount, Count: 1}, {Amount: 1, Count: 1}}
	}))
	lease("refunds past 2^53-1", spend(func(l *meter.Lease) {
		l.Refunds = []meter.LeaseRefund{{Seq: 2, Amount: meter.MaxAmount, Count: 1}, {Seq: 2, Amount: 1, Count: 1}}
	}))
	lease("charge method of 1025 bytes", spend(func(l *meter.Lease) { l.Charges[0].Method = strings.Repeat("M", 1025) }))
	lease("charge route of 1025 bytes", spend(func(l *meter.Lease) { l.Charges[0].Route = strings.Repeat("/", 1025) }))
	lease("of 1001 charges", spend(func(l *meter.Lease) {
		l.Charges = slices.Repeat([]meter.LeaseCharge{{Amount: 1, Count: 1}}, 1001)
	}))
	lease("of 1001 refunds", spend(func(l *meter.Lease) {
		l.Refunds = slices.Repeat([]meter.LeaseRefund{{Seq: 2, Amount: 1, Count: 1}}, 1001)
	}))
	for _, op := range []string{"", "a b", "é", strings.Repeat("o", 256)} {
		add(fmt.Sprintf("lease op %q", op), func() error {
			_, err := s.Lease(c, meter.Lease{Account: account, Op: op, Seq: 1, TTL: time.Hour, Grow: 1})
			return err
		})
	}
}

func testBadInput(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)

	t.Run("refused with nothing written", func(t *testing.T) {
		fund(t, s, "alice", 100)
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 10, Min: 1, TTL: time.Hour}))(t)
		must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 10}))(t)
		before := snap(t, s, "alice")
		for name, call := range badCalls(s, c, "alice") {
			isErr(t, name, call(), meter.ErrInvalid)
		}
		unchanged(t, s, "alice", "refused calls", before)
		// The refused calls left no op or id behind.
		must(s.Hold(c, meter.Hold{Account: "alice", Op: "x", Max: 2, Min: 2, TTL: time.Hour}))(t)
		must(s.Credit(c, meter.Transfer{Account: "alice", ID: "x", Amount: 3}))(t)
		must(s.Debit(c, meter.Transfer{Account: "alice", ID: "x", Amount: 1}))(t)
		must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 4}))(t)
		expectTotals(t, s, "alice", meter.Account{Balance: 86, Held: 2, Credited: 103, Charged: 14, Debited: 1})
		// Nor did the lease calls: a take of op "x" finds a hold's op.
		_, err := s.Lease(c, meter.Lease{Account: "alice", Op: "x", Seq: 1, TTL: time.Hour, Grow: 1})
		isErr(t, "lease take of the hold's op", err, meter.ErrConflict)
		checkInvariant(t, s, "alice", false)
	})

	t.Run("never-seen account stays unseen", func(t *testing.T) {
		for name, call := range badCalls(s, c, "never") {
			isErr(t, name, call(), meter.ErrInvalid)
		}
		notFound(t, s, "never")
		if walkAccounts(t, s, 1000)["never"] {
			t.Errorf("refused calls listed the account")
		}
	})

	t.Run("zero is allowed for settle and renewal", func(t *testing.T) {
		r := must(s.Extend(c, meter.Extend{Account: "alice", Op: "x", Seq: 1, Max: 0, Min: 0, TTL: time.Hour}))(t)
		if r.Amount != 0 || r.Held != 2 {
			t.Errorf("renewal: %+v, want nothing added", r)
		}
		r = must(s.Settle(c, meter.Settle{Account: "alice", Op: "x", Amount: 0}))(t)
		if r.Amount != 0 || r.Released != 2 {
			t.Errorf("settle of 0: %+v, want 2 released", r)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 88, Credited: 103, Charged: 14, Debited: 1})
	})
}

func testBadAccountIDs(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	bad := []string{"", strings.Repeat("a", 129), ".", "..", "é", "a b", " a", "a\tb", "a\x00", "a\x7f", "a\nb"}
	for _, id := range bad {
		calls := map[string]func() error{
			"credit": func() error {
				_, err := s.Credit(c, meter.Transfer{Account: id, ID: "x", Amount: 1})
				return err
			},
			"debit": func() error {
				_, err := s.Debit(c, meter.Transfer{Account: id, ID: "x", Amount: 1})
				return err
			},
			"charge": func() error {
				_, err := s.Charge(c, meter.Charge{Account: id, Op: "x", Amount: 1, Bonus: 10})
				return err
			},
			"hold": func() error {
				_, err := s.Hold(c, meter.Hold{Account: id, Op: "x", Max: 1, Min: 1, TTL: time.Hour, Bonus: 10})
				return err
			},
			"extend": func() error {
				_, err := s.Extend(c, meter.Extend{Account: id, Op: "x", Seq: 1, TTL: time.Hour})
				return err
			},
			"settle": func() error {
				_, err := s.Settle(c, meter.Settle{Account: id, Op: "x"})
				return err
			},
			"release": func() error {
				_, err := s.Release(c, meter.Release{Account: id, Op: "x", Reason: meter.ReasonRefundOn})
				return err
			},
			"refund": func() error {
				_, err := s.Refund(c, meter.Refund{Account: id, Op: "x", Amount: 1, Reason: meter.ReasonRefundOn})
				return err
			},
			"cancel": func() error {
				_, err := s.Cancel(c, meter.Cancel{Account: id, Op: "x"})
				return err
			},
			"lease": func() error {
				_, err := s.Lease(c, meter.Lease{Account: id, Op: "x", Seq: 1, TTL: time.Hour, Grow: 1})
				return err
			},
			"caller read": func() error {
				_, err := s.Account(c, meter.Read{Account: id, Mode: meter.Caller, Bonus: 10})
				return err
			},
			"operator read": func() error {
				_, err := s.Account(c, meter.Read{Account: id})
				return err
			},
			"caller ledger": func() error {
				_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: id, Mode: meter.Caller, Bonus: 10}})
				return err
			},
		}
		for name, call := range calls {
			isErr(t, fmt.Sprintf("%s of %q", name, id), call(), meter.ErrInvalid)
		}
	}
	// 128 bytes is the longest id, and "..." or ".a" are ids like any other.
	long := strings.Repeat("a", 128)
	for _, id := range []string{long, "...", ".a", "~", "!"} {
		must(s.Credit(c, meter.Transfer{Account: id, ID: "x", Amount: 1}))(t)
		expectTotals(t, s, id, meter.Account{Balance: 1, Credited: 1})
	}
	seen := walkAccounts(t, s, 1000)
	if len(seen) != 5 || !seen[long] || !seen["..."] || !seen[".a"] || !seen["~"] || !seen["!"] {
		t.Errorf("accounts after refused ids: %v, want only the 5 valid ones", seen)
	}
}

// expiryTTL is the ttl of the holds that expire: long enough for the calls
// before the clock moves on, short enough for a real wait.
const expiryTTL = 200 * time.Millisecond

func testExpiry(t *testing.T, f Factory) {
	h := f(t, meter.Config{})
	s, c := h.Store, ctx(t)
	fund(t, s, "alice", 20)
	short := must(s.Hold(c, meter.Hold{Account: "alice", Op: "short", Max: 3, Min: 1, TTL: expiryTTL}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "long", Max: 4, Min: 1, TTL: time.Hour}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "renewed", Max: 2, Min: 1, TTL: expiryTTL}))(t)
	must(s.Extend(c, meter.Extend{Account: "alice", Op: "renewed", Seq: 1, TTL: time.Hour}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "shortened", Max: 5, Min: 1, TTL: time.Hour}))(t)
	must(s.Extend(c, meter.Extend{Account: "alice", Op: "shortened", Seq: 1, Max: 1, Min: 1, TTL: expiryTTL}))(t)
	// Open: short 3, long 4, renewed 2, shortened 6.
	expectTotals(t, s, "alice", meter.Account{Balance: 5, Held: 15, Credited: 20})
	if e := ledger(t, s, "alice"); !near(short.Expires, e[len(e)-2].Time.Add(expiryTTL)) {
		t.Errorf("short hold expires %v, want the ttl after %v", short.Expires, e[len(e)-2].Time)
	}
	entries := len(ledger(t, s, "alice"))

	h.Advance(t, expiryTTL+50*time.Millisecond)

	t.Run("next read releases the expired holds", func(t *testing.T) {
		// Open: long 4, renewed 2.
		expectTotals(t, s, "alice", meter.Account{Balance: 14, Held: 6, Credited: 20})
		e := ledger(t, s, "alice")
		if len(e) != entries+2 {
			t.Fatalf("%d entries after expiry, want %d: a release for each of the 2 expired holds", len(e), entries+2)
		}
		got := map[string]int64{}
		for _, x := range e[:2] {
			if x.Kind != meter.KindRelease || x.Detail.Reason != meter.ReasonExpired {
				t.Errorf("entry %+v, want an expired release", x)
			}
			got[x.Op] = x.Amount
		}
		if len(got) != 2 || got["short"] != 3 || got["shortened"] != 6 || e[0].Balance != 14 {
			t.Errorf("expired releases %v with the newest at balance %d, want short 3 and shortened 6, balance 14", got, e[0].Balance)
		}
		checkInvariant(t, s, "alice", false)
	})

	t.Run("expired hold is gone", func(t *testing.T) {
		before := snap(t, s, "alice")
		_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "short", Amount: 1})
		isErr(t, "settle of an expired hold", err, meter.ErrGone)
		_, err = s.Settle(c, meter.Settle{Account: "alice", Op: "shortened"})
		isErr(t, "settle of 0 of an expired hold", err, meter.ErrGone)
		_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "short", Seq: 1, TTL: time.Hour})
		isErr(t, "extend of an expired hold", err, meter.ErrGone)
		_, err = s.Release(c, meter.Release{Account: "alice", Op: "short", Reason: meter.ReasonRefundOn})
		isErr(t, "release of an expired hold", err, meter.ErrGone)
		unchanged(t, s, "alice", "steps on an expired hold", before)
	})

	t.Run("live holds still settle and release", func(t *testing.T) {
		r := must(s.Settle(c, meter.Settle{Account: "alice", Op: "long", Amount: 4}))(t)
		if r.Amount != 4 || r.Balance != 14 {
			t.Errorf("settle of the live hold: %+v, want 4 charged, balance 14", r)
		}
		expectTotals(t, s, "alice", meter.Account{Balance: 14, Held: 2, Credited: 20, Charged: 4})
		must(s.Release(c, meter.Release{Account: "alice", Op: "renewed", Reason: meter.ReasonRefundOn}))(t)
		expectTotals(t, s, "alice", meter.Account{Balance: 16, Credited: 20, Charged: 4})
		checkInvariant(t, s, "alice", false)
	})

	t.Run("whatever touches the account next releases", func(t *testing.T) {
		must(s.Hold(c, meter.Hold{Account: "bob", Op: "h", Max: 5, Min: 1, TTL: expiryTTL, Bonus: 5}))(t)
		h.Advance(t, expiryTTL+50*time.Millisecond)
		r := must(s.Charge(c, meter.Charge{Account: "bob", Op: "c", Amount: 5}))(t)
		if r.Balance != 0 || r.Amount != 5 {
			t.Errorf("charge of 5 after the hold of 5 expired: %+v, want balance 0", r)
		}
		e := checkInvariant(t, s, "bob", false)
		if len(e) != 4 || e[1].Kind != meter.KindRelease || e[1].Detail.Reason != meter.ReasonExpired || e[0].Kind != meter.KindCharge {
			t.Errorf("ledger %+v, want bonus, hold, expired release, charge", e)
		}
	})
}

func testLedger(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)

	t.Run("unseen account is not found", func(t *testing.T) {
		notFound(t, s, "nobody")
	})

	fund(t, s, "alice", 1000)
	for i := range 120 {
		must(s.Charge(ctx(t), meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	all := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Limit: meter.MaxLedgerLimit}))(t)

	t.Run("limit 1000 reads all, newest first", func(t *testing.T) {
		if len(all.Entries) != 121 || all.Next != nil {
			t.Fatalf("limit 1000: %d entries, next %v; want all 121 and no next", len(all.Entries), all.Next)
		}
		for i, e := range all.Entries[:120] {
			if want := fmt.Sprint("op", 119-i); e.Op != want || e.Kind != meter.KindCharge || e.Balance != int64(880+i) {
				t.Fatalf("entry %d: %+v, want %s with balance %d", i, e, want, 880+i)
			}
		}
		if e := all.Entries[120]; e.Kind != meter.KindCredit || e.Balance != 1000 {
			t.Errorf("oldest entry %+v, want the credit", e)
		}
	})

	t.Run("default limit is 50", func(t *testing.T) {
		page := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}}))(t)
		if len(page.Entries) != meter.DefaultLedgerLimit || page.Next == nil || page.Account != "alice" {
			t.Fatalf("first page: %d entries, next %v; want 50 and a next", len(page.Entries), page.Next)
		}
		if page.Entries[0].ID != all.Entries[0].ID || page.Entries[49].ID != all.Entries[49].ID {
			t.Errorf("first page runs %s..%s, want %s..%s", page.Entries[0].ID, page.Entries[49].ID, all.Entries[0].ID, all.Entries[49].ID)
		}
	})

	t.Run("before is exclusive", func(t *testing.T) {
		for _, k := range []int{0, 1, 60, 116} {
			p := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: all.Entries[k].ID, Limit: 3}))(t)
			if len(p.Entries) != 3 {
				t.Fatalf("before entry %d: %d entries, want 3", k, len(p.Entries))
			}
			for j, e := range p.Entries {
				if e.ID != all.Entries[k+1+j].ID {
					t.Errorf("before entry %d: entry %d is %s, want %s", k, j, e.ID, all.Entries[k+1+j].ID)
				}
			}
			if p.Next == nil || *p.Next != p.Entries[2].ID {
				t.Errorf("before entry %d: next %v, want the last entry's id %s", k, p.Next, p.Entries[2].ID)
			}
		}
		p := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: all.Entries[118].ID, Limit: 2}))(t)
		if len(p.Entries) != 2 || p.Next != nil {
			t.Errorf("the last two entries: %d entries, next %v; want 2 and no next", len(p.Entries), p.Next)
		}
		tail := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: all.Entries[120].ID}))(t)
		if len(tail.Entries) != 0 || tail.Next != nil {
			t.Errorf("before the oldest entry: %+v, want nothing", tail)
		}
		zero := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: "0-0"}))(t)
		if len(zero.Entries) != 0 || zero.Next != nil {
			t.Errorf("before 0-0: %+v, want nothing", zero)
		}
		ms, _ := entryID(t, all.Entries[0].ID)
		future := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: fmt.Sprint(ms+1, "-0"), Limit: 1}))(t)
		if len(future.Entries) != 1 || future.Entries[0].ID != all.Entries[0].ID {
			t.Errorf("before a later id: %+v, want the newest entry", future)
		}
	})

	t.Run("limit 1", func(t *testing.T) {
		last := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Limit: 1}))(t)
		if len(last.Entries) != 1 || last.Entries[0].ID != all.Entries[0].ID || last.Next == nil || *last.Next != all.Entries[0].ID {
			t.Errorf("limit 1: %+v, want the newest entry and a next", last)
		}
	})

	t.Run("a walk covers every entry once while new ones arrive", func(t *testing.T) {
		seen := map[string]bool{}
		var walked []string
		before := ""
		for i := 0; ; i++ {
			p := must(s.Ledger(ctx(t), meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: before, Limit: 13}))(t)
			for _, e := range p.Entries {
				if seen[e.ID] {
					t.Fatalf("entry %s seen twice", e.ID)
				}
				seen[e.ID] = true
				walked = append(walked, e.ID)
			}
			must(s.Charge(ctx(t), meter.Charge{Account: "alice", Op: fmt.Sprint("new", i), Amount: 1}))(t)
			if p.Next == nil {
				break
			}
			before = *p.Next
		}
		if len(walked) != 121 {
			t.Fatalf("the walk saw %d entries, want 121", len(walked))
		}
		for i, id := range walked {
			if id != all.Entries[i].ID {
				t.Fatalf("the walk's entry %d is %s, want %s", i, id, all.Entries[i].ID)
			}
		}
		checkInvariant(t, s, "alice", false)
	})
}

func testRetention(t *testing.T, f Factory) {
	h := f(t, meter.Config{Retention: 5})
	s, c := h.Store, ctx(t)
	// 20 changes: a credit and 19 charges.
	fund(t, s, "alice", 100)
	for i := range 19 {
		must(s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	e := checkInvariant(t, s, "alice", true)
	if len(e) < 5 || len(e) > 20 {
		t.Fatalf("%d entries kept of 20 with a retention of 5, want 5 to 20", len(e))
	}
	for i := range 5 {
		if want := fmt.Sprint("op", 18-i); e[i].Op != want || e[i].Kind != meter.KindCharge || e[i].Balance != int64(81+i) {
			t.Errorf("entry %d is %+v, want the charge %s with balance %d", i, e[i], want, 81+i)
		}
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 81, Credited: 100, Charged: 19})

	// Pages of every size walk what is kept, in order, however many
	// entries were trimmed.
	fund(t, s, "carol", 100)
	for i := range 22 {
		must(s.Charge(c, meter.Charge{Account: "carol", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	kept := checkInvariant(t, s, "carol", true)
	if len(kept) < 5 || len(kept) > 23 || kept[0].Op != "op21" || kept[4].Op != "op17" {
		t.Fatalf("carol: %d entries kept from op %s to %s, want at least 5 from op21", len(kept), kept[0].Op, kept[len(kept)-1].Op)
	}
	for _, limit := range []int{1, 2, 3, 5} {
		var walked []meter.Entry
		before := ""
		for range 100 {
			p := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "carol"}, Before: before, Limit: limit}))(t)
			walked = append(walked, p.Entries...)
			if p.Next == nil {
				break
			}
			before = *p.Next
		}
		if len(walked) != len(kept) {
			t.Fatalf("carol: a walk by %d read %d entries, want the %d kept", limit, len(walked), len(kept))
		}
		for i := range walked {
			if !sameEntry(walked[i], kept[i]) {
				t.Errorf("carol: a walk by %d: entry %d is %+v, want %+v", limit, i, walked[i], kept[i])
			}
		}
	}
	for i := range 4 {
		p := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "carol"}, Before: kept[i].ID, Limit: 1}))(t)
		if len(p.Entries) != 1 || p.Entries[0].ID != kept[i+1].ID {
			t.Errorf("carol: the entry before %s: %+v, want %s", kept[i].ID, p.Entries, kept[i+1].ID)
		}
	}
	expectTotals(t, s, "carol", meter.Account{Balance: 78, Credited: 100, Charged: 22})

	// Trimming never touches the totals, nor another account.
	fund(t, s, "bob", 3)
	expectTotals(t, s, "bob", meter.Account{Balance: 3, Credited: 3})
	checkInvariant(t, s, "bob", false)
}

func testAccounts(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	want := map[string]bool{}
	for i := range 37 {
		id := fmt.Sprint("acct-", i)
		want[id] = true
		switch i % 4 {
		case 0:
			fund(t, s, id, 1)
		case 1:
			must(s.Account(c, meter.Read{Account: id, Mode: meter.Caller}))(t)
		case 2:
			_, err := s.Charge(c, meter.Charge{Account: id, Op: "x", Amount: 1})
			insufficient(t, "charge of a new account", err, 0, 1)
		case 3:
			must(s.Hold(c, meter.Hold{Account: id, Op: "x", Max: 1, Min: 1, TTL: time.Hour, Bonus: 1}))(t)
		}
	}
	must(s.Cancel(c, meter.Cancel{Account: "tombstone-only", Op: "x"}))(t)
	_, _ = s.Account(c, meter.Read{Account: "operator-read-only"})
	_, _ = s.Settle(c, meter.Settle{Account: "settle-only", Op: "x"})

	for _, limit := range []int{1, 5, 1000, 0} {
		t.Run(fmt.Sprint("walk with limit ", limit), func(t *testing.T) {
			seen := walkAccounts(t, s, limit)
			for id := range want {
				if !seen[id] {
					t.Errorf("account %s not listed", id)
				}
			}
			if len(seen) != len(want) {
				var extra []string
				for id := range seen {
					if !want[id] {
						extra = append(extra, id)
					}
				}
				slices.Sort(extra)
				t.Errorf("listed %d accounts, want %d: also %v", len(seen), len(want), extra)
			}
		})
	}
}

func testIsolation(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	ids := []string{
		"a", "a{b}", "{a}", "{x}", "a}", "{", "}", "{}", "a:b", "a:", ":a", "*", "a*", "?", "[a]", `\`, `a\*`,
		"a/b", "/", "%2F", "%", "x}:acct", "a:{b}:acct", "YQ", "a}:ledger", "a:acct", "'", `"`, "a.b",
	}
	for i, id := range ids {
		fund(t, s, id, int64(i+1))
		r := must(s.Charge(c, meter.Charge{Account: id, Op: "same-op", Amount: 1}))(t)
		if r.Replayed || r.Balance != int64(i) {
			t.Errorf("%q: charge %+v, want a new charge leaving %d", id, r, i)
		}
		tr := must(s.Credit(c, meter.Transfer{Account: id, ID: "same-id", Amount: 1}))(t)
		if tr.Replayed || tr.Account != id {
			t.Errorf("%q: credit %+v, want a new credit", id, tr)
		}
	}
	for i, id := range ids {
		a := account(t, s, id)
		if totals(a) != (meter.Account{Balance: int64(i + 1), Credited: int64(i + 2), Charged: 1}) {
			t.Errorf("%q: %+v, want its own credits of %d and 1 and one charge", id, a, i+1)
		}
		e := checkInvariant(t, s, id, false)
		if len(e) != 3 || e[2].Amount != int64(i+1) || e[2].Op != "fund-"+id {
			t.Errorf("%q: ledger %+v, want its own 3 entries", id, e)
		}
	}
	seen := walkAccounts(t, s, 7)
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("%q not listed", id)
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("listed %d accounts, want %d", len(seen), len(ids))
	}
}

func testEntryJSON(t *testing.T, f Factory) {
	t.Run("time has milliseconds in UTC", func(t *testing.T) {
		for in, want := range map[time.Time]string{
			time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC):                             "2026-11-23T14:00:00.000Z",
			time.Date(2026, 11, 23, 14, 0, 0, 120_000_000, time.UTC):                   "2026-11-23T14:00:00.120Z",
			time.Date(2026, 11, 23, 15, 0, 0, 5_000_000, time.FixedZone("CET", 3600)):  "2026-11-23T14:00:00.005Z",
			time.Date(2026, 11, 23, 14, 0, 0, 999_999_999, time.UTC):                   "2026-11-23T14:00:00.999Z",
			time.Date(2026, 11, 23, 9, 0, 0, 0, time.FixedZone("EST", -5*3600)):        "2026-11-23T14:00:00.000Z",
			time.Date(2026, 11, 23, 14, 0, 0, 0, time.FixedZone("odd", -5*3600-30*60)): "2026-11-23T19:30:00.000Z",
		} {
			m := entryJSON(t, meter.Entry{ID: "1-0", Time: in, Kind: meter.KindCharge, Amount: 1})
			if m["time"] != want {
				t.Errorf("time %v as %v, want %s", in, m["time"], want)
			}
		}
	})

	s, _ := fresh(t, f)
	c := ctx(t)
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "fund", Amount: 10, Reason: "top up", By: "ops"}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 1, Method: "GET", Route: "/x"}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 1, Reason: meter.ReasonRefundOn}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 2, Min: 1, TTL: time.Hour, Method: "POST", Route: "/y"}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1, CutOff: true}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "r", Max: 2, Min: 1, TTL: time.Hour}))(t)
	must(s.Release(c, meter.Release{Account: "alice", Op: "r", Reason: meter.ReasonNotForwarded}))(t)
	must(s.Debit(c, meter.Transfer{Account: "alice", ID: "d", Amount: 1, Reason: "fix", By: "ops"}))(t)

	t.Run("detail per kind", func(t *testing.T) {
		details := map[string]string{
			"credit/fund": `{"by":"ops","reason":"top up"}`,
			"charge/c":    `{"method":"GET","route":"/x"}`,
			"refund/c":    `{"reason":"refund_on"}`,
			"hold/h":      `{"method":"POST","route":"/y"}`,
			"settle/h":    `{"cut_off":true,"released":1}`,
			"hold/r":      `{"method":"","route":""}`,
			"release/r":   `{"reason":"not_forwarded"}`,
			"debit/d":     `{"by":"ops","reason":"fix"}`,
		}
		stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
		entries := ledger(t, s, "alice")
		if len(entries) != len(details) {
			t.Fatalf("%d entries, want %d", len(entries), len(details))
		}
		for _, e := range entries {
			m := entryJSON(t, e)
			ts, _ := m["time"].(string)
			parsed, err := time.Parse(time.RFC3339, ts)
			if err != nil || !stamp.MatchString(ts) || !parsed.Equal(e.Time) {
				t.Errorf("%s entry time %q (%v), want RFC 3339 UTC with 3 fractional digits", e.Kind, ts, e.Time)
			}
			if len(m) != 7 || m["id"] != e.ID || m["kind"] != e.Kind || m["op"] != e.Op ||
				m["amount"] != float64(e.Amount) || m["balance"] != float64(e.Balance) {
				t.Errorf("%s entry JSON %v, want id, time, kind, amount, balance, op and detail of %+v", e.Kind, m, e)
			}
			detail := string(must(json.Marshal(m["detail"]))(t))
			if want := details[e.Kind+"/"+e.Op]; detail != want {
				t.Errorf("%s entry of %s: detail %s, want %s", e.Kind, e.Op, detail, want)
			}
		}
	})

	t.Run("signup bonus", func(t *testing.T) {
		must(s.Account(c, meter.Read{Account: "new", Mode: meter.Caller, Bonus: 3}))(t)
		e := ledger(t, s, "new")
		if len(e) != 1 {
			t.Fatalf("ledger %+v, want the bonus", e)
		}
		detail := string(must(json.Marshal(entryJSON(t, e[0])["detail"]))(t))
		if want := `{"by":"tollgate","reason":"signup_bonus"}`; detail != want || e[0].Op != "signup_bonus" {
			t.Errorf("bonus entry detail %s, op %s; want %s, op signup_bonus", detail, e[0].Op, want)
		}
	})
}
