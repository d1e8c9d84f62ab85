package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

func testBadInput(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 100)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 10, Min: 1, TTL: time.Hour}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 10}))(t)
	before := account(t, s, "alice")
	entries := len(ledger(t, s, "alice"))

	huge := int64(meter.MaxAmount + 1)
	calls := map[string]func() error{}
	for _, n := range []int64{0, -1, huge} {
		calls[fmt.Sprintf("charge %d", n)] = func() error {
			_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "x", Amount: n})
			return err
		}
		calls[fmt.Sprintf("hold max %d", n)] = func() error {
			_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "x", Max: n, Min: 1, TTL: time.Hour})
			return err
		}
		calls[fmt.Sprintf("hold min %d", n)] = func() error {
			_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "x", Max: 5, Min: n, TTL: time.Hour})
			return err
		}
		calls[fmt.Sprintf("credit %d", n)] = func() error {
			_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "x", Amount: n})
			return err
		}
		calls[fmt.Sprintf("debit %d", n)] = func() error {
			_, err := s.Debit(c, meter.Transfer{Account: "alice", ID: "x", Amount: n})
			return err
		}
		calls[fmt.Sprintf("refund %d", n)] = func() error {
			_, err := s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: n, Reason: meter.ReasonRefundOn})
			return err
		}
		calls[fmt.Sprintf("extend seq %d", n)] = func() error {
			_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: n, TTL: time.Hour})
			return err
		}
	}
	for _, n := range []int64{-1, huge} {
		calls[fmt.Sprintf("charge bonus %d", n)] = func() error {
			_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "x", Amount: 1, Bonus: n})
			return err
		}
		calls[fmt.Sprintf("settle %d", n)] = func() error {
			_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: n})
			return err
		}
		calls[fmt.Sprintf("extend max %d", n)] = func() error {
			_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: n, Min: 1, TTL: time.Hour})
			return err
		}
	}
	calls["hold min above max"] = func() error {
		_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "x", Max: 1, Min: 2, TTL: time.Hour})
		return err
	}
	calls["hold without ttl"] = func() error {
		_, err := s.Hold(c, meter.Hold{Account: "alice", Op: "x", Max: 1, Min: 1})
		return err
	}
	calls["extend adding with min 0"] = func() error {
		_, err := s.Extend(c, meter.Extend{Account: "alice", Op: "h", Seq: 1, Max: 5, TTL: time.Hour})
		return err
	}
	calls["empty op"] = func() error {
		_, err := s.Charge(c, meter.Charge{Account: "alice", Amount: 1})
		return err
	}
	calls["op with a space"] = func() error {
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "a b", Amount: 1})
		return err
	}
	calls["empty credit id"] = func() error {
		_, err := s.Credit(c, meter.Transfer{Account: "alice", Amount: 1})
		return err
	}
	calls["credit id of 256 bytes"] = func() error {
		_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: strings.Repeat("i", 256), Amount: 1})
		return err
	}
	calls["reason of 257 bytes"] = func() error {
		_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "r", Amount: 1, Reason: strings.Repeat("r", 257)})
		return err
	}
	calls["reason with a newline"] = func() error {
		_, err := s.Credit(c, meter.Transfer{Account: "alice", ID: "r", Amount: 1, Reason: "a\nb"})
		return err
	}
	calls["ledger limit 1001"] = func() error {
		_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Limit: 1001})
		return err
	}
	calls["ledger limit -1"] = func() error {
		_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Limit: -1})
		return err
	}
	calls["ledger before a 20-digit id"] = func() error {
		_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: "18446744073709551615-0"})
		return err
	}
	calls["ledger before garbage"] = func() error {
		_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: "x-1"})
		return err
	}
	for name, call := range calls {
		isErr(t, name, call(), meter.ErrInvalid)
	}
	if after := account(t, s, "alice"); after != before {
		t.Errorf("refused calls changed the account: %+v, was %+v", after, before)
	}
	if n := len(ledger(t, s, "alice")); n != entries {
		t.Errorf("refused calls wrote %d ledger entries", n-entries)
	}

	// Bad account ids are refused with no write.
	for _, id := range []string{"", strings.Repeat("a", 129), ".", "..", "é", "a b", "a\tb", "a\x00"} {
		_, err := s.Credit(c, meter.Transfer{Account: id, ID: "x", Amount: 1})
		isErr(t, fmt.Sprintf("credit to %q", id), err, meter.ErrInvalid)
		_, err = s.Charge(c, meter.Charge{Account: id, Op: "x", Amount: 1, Bonus: 10})
		isErr(t, fmt.Sprintf("charge of %q", id), err, meter.ErrInvalid)
		_, err = s.Account(c, meter.Read{Account: id, Mode: meter.Caller, Bonus: 10})
		isErr(t, fmt.Sprintf("caller read of %q", id), err, meter.ErrInvalid)
	}
	// 128 bytes is the longest id.
	must(s.Credit(c, meter.Transfer{Account: strings.Repeat("a", 128), ID: "x", Amount: 1}))(t)
	page := must(s.Accounts(c, "", 1000))(t)
	seen := map[string]bool{}
	for {
		for _, a := range page.Accounts {
			seen[a] = true
		}
		if page.Next == nil {
			break
		}
		page = must(s.Accounts(c, *page.Next, 1000))(t)
	}
	if len(seen) != 2 || !seen["alice"] || !seen[strings.Repeat("a", 128)] {
		t.Errorf("accounts after refused ids: %v, want alice and the 128-byte id", seen)
	}
}

func testExpiry(t *testing.T, f Factory) {
	h := f(t, meter.Config{})
	s, c := h.Store, ctx(t)
	fund(t, s, "alice", 10)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "short", Max: 3, Min: 1, TTL: 100 * time.Millisecond}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "long", Max: 4, Min: 1, TTL: time.Hour}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "renewed", Max: 2, Min: 1, TTL: 100 * time.Millisecond}))(t)
	must(s.Extend(c, meter.Extend{Account: "alice", Op: "renewed", Seq: 1, TTL: time.Hour}))(t)
	expectTotals(t, s, "alice", meter.Account{Balance: 1, Held: 9, Credited: 10})

	h.Advance(t, 150*time.Millisecond)
	// The next read releases the expired hold, and only it.
	expectTotals(t, s, "alice", meter.Account{Balance: 4, Held: 6, Credited: 10})
	e := ledger(t, s, "alice")[0]
	if e.Kind != meter.KindRelease || e.Op != "short" || e.Amount != 3 || e.Detail.Reason != meter.ReasonExpired || e.Balance != 4 {
		t.Errorf("newest entry %+v, want the expired release of 3", e)
	}
	_, err := s.Settle(c, meter.Settle{Account: "alice", Op: "short", Amount: 1})
	isErr(t, "settle of an expired hold", err, meter.ErrGone)
	_, err = s.Extend(c, meter.Extend{Account: "alice", Op: "short", Seq: 1, TTL: time.Hour})
	isErr(t, "extend of an expired hold", err, meter.ErrGone)
	_, err = s.Release(c, meter.Release{Account: "alice", Op: "short", Reason: meter.ReasonRefundOn})
	isErr(t, "release of an expired hold", err, meter.ErrGone)
	// Settle and release still work on the live holds: held is their sum.
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "long", Amount: 4}))(t)
	must(s.Release(c, meter.Release{Account: "alice", Op: "renewed", Reason: meter.ReasonRefundOn}))(t)
	expectTotals(t, s, "alice", meter.Account{Balance: 6, Credited: 10, Charged: 4})
	checkInvariant(t, s, "alice", false)

	// An expired hold is released by whatever touches the account next.
	must(s.Hold(c, meter.Hold{Account: "bob", Op: "h", Max: 5, Min: 1, TTL: 50 * time.Millisecond, Bonus: 5}))(t)
	h.Advance(t, 100*time.Millisecond)
	r := must(s.Charge(c, meter.Charge{Account: "bob", Op: "c", Amount: 5}))(t)
	if r.Balance != 0 {
		t.Errorf("charge after expiry: balance %d, want 0", r.Balance)
	}
	checkInvariant(t, s, "bob", false)
}

func testLedger(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	_, err := s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "nobody"}})
	isErr(t, "operator ledger of an unseen account", err, meter.ErrNotFound)
	_, err = s.Account(c, meter.Read{Account: "nobody"})
	isErr(t, "operator read of an unseen account", err, meter.ErrNotFound)

	fund(t, s, "alice", 1000)
	for i := range 120 {
		must(s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	page := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}}))(t)
	if len(page.Entries) != meter.DefaultLedgerLimit || page.Next == nil || page.Account != "alice" {
		t.Fatalf("first page: %d entries, next %v; want 50 and a next", len(page.Entries), page.Next)
	}
	if page.Entries[0].Op != "op119" || page.Entries[0].Balance != 880 {
		t.Errorf("newest entry %+v, want op119 with balance 880", page.Entries[0])
	}
	// A walk sees every entry once while new ones arrive.
	seen := map[string]bool{}
	walked := 0
	before := ""
	for i := 0; ; i++ {
		p := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: before, Limit: 13}))(t)
		for _, e := range p.Entries {
			if seen[e.ID] {
				t.Fatalf("entry %s seen twice", e.ID)
			}
			seen[e.ID] = true
			walked++
		}
		must(s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("new", i), Amount: 1}))(t)
		if p.Next == nil {
			break
		}
		before = *p.Next
	}
	if walked != 121 {
		t.Errorf("the walk saw %d entries, want 121", walked)
	}
	last := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Limit: 1}))(t)
	if len(last.Entries) != 1 || last.Next == nil {
		t.Errorf("limit 1: %+v", last)
	}
	oldest := ledger(t, s, "alice")
	tail := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: oldest[len(oldest)-1].ID}))(t)
	if len(tail.Entries) != 0 || tail.Next != nil {
		t.Errorf("before the oldest entry: %+v, want nothing", tail)
	}
	zero := must(s.Ledger(c, meter.LedgerQuery{Read: meter.Read{Account: "alice"}, Before: "0-0"}))(t)
	if len(zero.Entries) != 0 || zero.Next != nil {
		t.Errorf("before 0-0: %+v, want nothing", zero)
	}
	checkInvariant(t, s, "alice", false)
}

func testRetention(t *testing.T, f Factory) {
	h := f(t, meter.Config{Retention: 5})
	s, c := h.Store, ctx(t)
	fund(t, s, "alice", 100)
	for i := range 20 {
		must(s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}))(t)
	}
	e := ledger(t, s, "alice")
	if len(e) < 5 || len(e) > 21 {
		t.Fatalf("%d entries kept, want at least 5", len(e))
	}
	for i := range 5 {
		if want := fmt.Sprint("op", 19-i); e[i].Op != want {
			t.Errorf("entry %d is %s, want %s", i, e[i].Op, want)
		}
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 80, Credited: 100, Charged: 20})
	checkInvariant(t, s, "alice", true)
}

func testAccounts(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	want := map[string]bool{}
	for i := range 37 {
		id := fmt.Sprint("acct-", i)
		want[id] = true
		switch i % 3 {
		case 0:
			fund(t, s, id, 1)
		case 1:
			must(s.Account(c, meter.Read{Account: id, Mode: meter.Caller}))(t)
		case 2:
			_, err := s.Charge(c, meter.Charge{Account: id, Op: "x", Amount: 1})
			insufficient(t, "charge of a new account", err, 0, 1)
		}
	}
	must(s.Cancel(c, meter.Cancel{Account: "tombstone-only", Op: "x"}))(t)
	_, _ = s.Account(c, meter.Read{Account: "operator-read-only"})

	seen := map[string]bool{}
	cursor := ""
	for range 1000 {
		page := must(s.Accounts(c, cursor, 5))(t)
		for _, a := range page.Accounts {
			seen[a] = true
		}
		if page.Next == nil {
			break
		}
		cursor = *page.Next
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("account %s not listed", id)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d accounts, want %d: a cancel or an operator read made one", len(seen), len(want))
	}
	_, err := s.Accounts(c, "not a cursor", 5)
	isErr(t, "bad cursor", err, meter.ErrInvalid)
}

func testIsolation(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	ids := []string{"a", "a{b}", "{a}", "a}", "{", "}", "a:b", "a:", ":a", "*", "a*", "a/b", "/", "%2F", "%", "x}:acct", "a:{b}:acct", "YQ", "a}:ledger"}
	for i, id := range ids {
		fund(t, s, id, int64(i+1))
		must(s.Charge(c, meter.Charge{Account: id, Op: "same-op", Amount: 1}))(t)
	}
	for i, id := range ids {
		a := account(t, s, id)
		if a.Account != id || a.Balance != int64(i) || a.Credited != int64(i+1) || a.Charged != 1 {
			t.Errorf("%q: %+v, want its own credit of %d and one charge", id, a, i+1)
		}
		if e := ledger(t, s, id); len(e) != 2 {
			t.Errorf("%q: %d ledger entries, want 2", id, len(e))
		}
	}
}

func testEntryJSON(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 10)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "c", Amount: 1, Method: "GET", Route: "/x"}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "c", Amount: 1, Reason: meter.ReasonRefundOn}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h", Max: 2, Min: 1, TTL: time.Hour, Method: "POST", Route: "/y"}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h", Amount: 1}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "r", Max: 2, Min: 1, TTL: time.Hour}))(t)
	must(s.Release(c, meter.Release{Account: "alice", Op: "r", Reason: meter.ReasonNotForwarded}))(t)
	must(s.Debit(c, meter.Transfer{Account: "alice", ID: "d", Amount: 1, Reason: "fix", By: "ops"}))(t)

	details := map[string]string{
		"credit/fund-alice": `{"by":"","reason":""}`,
		"charge/c":          `{"method":"GET","route":"/x"}`,
		"refund/c":          `{"reason":"refund_on"}`,
		"hold/h":            `{"method":"POST","route":"/y"}`,
		"settle/h":          `{"cut_off":false,"released":1}`,
		"hold/r":            `{"method":"","route":""}`,
		"release/r":         `{"reason":"not_forwarded"}`,
		"debit/d":           `{"by":"ops","reason":"fix"}`,
	}
	entries := ledger(t, s, "alice")
	if len(entries) != len(details) {
		t.Fatalf("%d entries, want %d", len(entries), len(details))
	}
	for _, e := range entries {
		m := entryJSON(t, e)
		ts, _ := m["time"].(string)
		parsed, err := time.Parse(time.RFC3339, ts)
		if err != nil || len(ts) != len("2026-11-23T14:00:00.000Z") || !strings.HasSuffix(ts, "Z") || !parsed.Equal(e.Time) {
			t.Errorf("%s entry time %q, want RFC 3339 UTC with milliseconds", e.Kind, ts)
		}
		for _, k := range []string{"id", "kind", "amount", "balance", "op", "detail"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s entry JSON has no %q: %v", e.Kind, k, m)
			}
		}
		detail := string(must(json.Marshal(m["detail"]))(t))
		if want := details[e.Kind+"/"+e.Op]; detail != want {
			t.Errorf("%s entry of %s: detail %s, want %s", e.Kind, e.Op, detail, want)
		}
	}
}
