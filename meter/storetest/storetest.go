// Package storetest is the conformance suite that every meter.Store passes:
// the arithmetic of every operation, idempotency, input validation, expiry,
// the ledger, account isolation, a property test against a model, and
// concurrency with exact totals.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// Harness is one store under test.
type Harness struct {
	Store meter.Store

	// Advance moves the store's clock forward by at least d: a fake clock
	// for the memory store, a real wait for Redis.
	Advance func(t *testing.T, d time.Duration)

	// Slow reports that Advance really waits, so tests keep d small.
	Slow bool
}

// Factory returns a new, empty store with cfg.
type Factory func(t *testing.T, cfg meter.Config) Harness

// Run runs every conformance case against the stores f makes.
func Run(t *testing.T, f Factory) {
	for _, c := range []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"Charge", testCharge},
		{"SignupBonus", testSignupBonus},
		{"Hold", testHold},
		{"Extend", testExtend},
		{"Settle", testSettle},
		{"Release", testRelease},
		{"Refund", testRefund},
		{"Cancel", testCancel},
		{"CreditDebit", testCreditDebit},
		{"BadInput", testBadInput},
		{"Expiry", testExpiry},
		{"Ledger", testLedger},
		{"Retention", testRetention},
		{"Accounts", testAccounts},
		{"AccountIsolation", testIsolation},
		{"EntryJSON", testEntryJSON},
		{"Property", testProperty},
		{"ConcurrentCharges", testConcurrentCharges},
		{"ConcurrentHolds", testConcurrentHolds},
		{"ConcurrentCredits", testConcurrentCredits},
		{"ConcurrentArrival", testConcurrentArrival},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, f) })
	}
}

// ctx returns a context that ends with the test, generous enough for a
// loaded machine.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// fresh returns a new store with the default configuration.
func fresh(t *testing.T, f Factory) (meter.Store, Harness) {
	h := f(t, meter.Config{})
	return h.Store, h
}

// must returns v, failing the test on err: must(s.Op(…))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// fund credits an account.
func fund(t *testing.T, s meter.Store, account string, amount int64) {
	t.Helper()
	must(s.Credit(ctx(t), meter.Transfer{Account: account, ID: "fund-" + account, Amount: amount}))(t)
}

// account reads an account in operator mode.
func account(t *testing.T, s meter.Store, id string) meter.Account {
	t.Helper()
	return must(s.Account(ctx(t), meter.Read{Account: id}))(t)
}

// ledger reads an account's whole ledger, newest first, walking its pages.
func ledger(t *testing.T, s meter.Store, id string) []meter.Entry {
	t.Helper()
	var all []meter.Entry
	before := ""
	for {
		page := must(s.Ledger(ctx(t), meter.LedgerQuery{Read: meter.Read{Account: id}, Before: before, Limit: 7}))(t)
		all = append(all, page.Entries...)
		if page.Next == nil {
			return all
		}
		before = *page.Next
	}
}

// expectTotals checks an account's totals.
func expectTotals(t *testing.T, s meter.Store, id string, want meter.Account) {
	t.Helper()
	got := account(t, s, id)
	got.Account, got.Created = "", time.Time{}
	if got != want {
		t.Errorf("%s: totals %+v, want %+v", id, got, want)
	}
}

// checkInvariant checks the account's invariant, and that its ledger
// accounts for its totals when nothing was trimmed.
func checkInvariant(t *testing.T, s meter.Store, id string, trimmed bool) {
	t.Helper()
	a := account(t, s, id)
	if a.Balance != a.Credited-a.Charged-a.Debited+a.Refunded-a.Held || a.Balance < 0 || a.Held < 0 {
		t.Fatalf("%s: invariant broken: %+v", id, a)
	}
	entries := ledger(t, s, id)
	if len(entries) > 0 && entries[0].Balance != a.Balance {
		t.Fatalf("%s: newest entry's balance %d, account's %d", id, entries[0].Balance, a.Balance)
	}
	for i := 1; i < len(entries); i++ {
		if !idBefore(entries[i].ID, entries[i-1].ID) {
			t.Fatalf("%s: entry ids not strictly decreasing: %s then %s", id, entries[i-1].ID, entries[i].ID)
		}
	}
	if trimmed {
		return
	}
	var sum meter.Account
	for _, e := range entries {
		switch e.Kind {
		case meter.KindCredit:
			sum.Credited += e.Amount
		case meter.KindCharge:
			sum.Charged += e.Amount
		case meter.KindDebit:
			sum.Debited += e.Amount
		case meter.KindRefund:
			sum.Refunded += e.Amount
		case meter.KindHold:
			sum.Held += e.Amount
		case meter.KindSettle:
			sum.Charged += e.Amount
			sum.Held -= e.Amount + e.Detail.Released
		case meter.KindRelease:
			sum.Held -= e.Amount
		default:
			t.Fatalf("%s: unknown entry kind %q", id, e.Kind)
		}
	}
	if sum.Credited != a.Credited || sum.Charged != a.Charged || sum.Debited != a.Debited ||
		sum.Refunded != a.Refunded || sum.Held != a.Held {
		t.Fatalf("%s: the ledger sums to %+v, the totals are %+v", id, sum, a)
	}
}

// idBefore reports whether entry id a is older than b.
func idBefore(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as < bs
}

// isErr fails the test unless err matches want.
func isErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

// insufficient checks err is an InsufficientError with balance and price.
func insufficient(t *testing.T, what string, err error, balance, price int64) {
	t.Helper()
	var ie *meter.InsufficientError
	if !errors.As(err, &ie) || !errors.Is(err, meter.ErrInsufficient) {
		t.Errorf("%s: error %v, want insufficient balance", what, err)
		return
	}
	if ie.Balance != balance || ie.Price != price {
		t.Errorf("%s: insufficient with balance %d and price %d, want %d and %d", what, ie.Balance, ie.Price, balance, price)
	}
}

// entryJSON returns an entry's JSON as a map.
func entryJSON(t *testing.T, e meter.Entry) map[string]any {
	t.Helper()
	b := must(json.Marshal(e))(t)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
