// Package storetest is the conformance suite that every meter.Store passes:
// the arithmetic of every operation, idempotency, input validation, expiry,
// the ledger, account isolation, verify, a property test against a model,
// leases, usage, and concurrency with exact totals.
//
// A store's test calls Run with a Factory that makes a fresh, empty store for
// every case. Nothing here knows which store it tests: it sees the store only
// through meter.Store and moves its clock only through Harness.Advance.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// Harness is one store under test.
type Harness struct {
	Store meter.Store

	// Advance moves the store's clock forward by at least d. For the memory
	// store it advances a fake clock; for Redis it waits until Redis TIME has
	// passed. Tests keep d at most 300ms when Slow is true.
	Advance func(t *testing.T, d time.Duration)

	// Slow is true when Advance really waits (Redis). When it is false the
	// store's clock is taken to move only by Advance, or by much less than a
	// minute over a test.
	Slow bool
}

// Factory builds a fresh, empty store with the given config (Retention etc.).
// Each call gets a new, isolated store.
type Factory func(t *testing.T, cfg meter.Config) Harness

// Run runs every conformance case, each as a subtest with stores of its own.
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
		{"BadAccountIDs", testBadAccountIDs},
		{"Expiry", testExpiry},
		{"Ledger", testLedger},
		{"Retention", testRetention},
		{"Accounts", testAccounts},
		{"AccountIsolation", testIsolation},
		{"EntryJSON", testEntryJSON},
		{"Verify", testVerify},
		{"VerifyTrimmed", testVerifyTrimmed},
		{"Property", testProperty},
		{"ConcurrentCharges", testConcurrentCharges},
		{"ConcurrentHolds", testConcurrentHolds},
		{"ConcurrentCredits", testConcurrentCredits},
		{"ConcurrentArrival", testConcurrentArrival},
		{"ConcurrentHoldLifecycle", testConcurrentHoldLifecycle},
		{"ConcurrentRefundsAndDebits", testConcurrentRefundsAndDebits},
		{"LeaseTake", testLeaseTake},
		{"LeaseSpend", testLeaseSpend},
		{"LeaseReplay", testLeaseReplay},
		{"LeaseRefunds", testLeaseRefunds},
		{"LeaseExpiry", testLeaseExpiry},
		{"LeaseOps", testLeaseOps},
		{"LeaseDraining", testLeaseDraining},
		{"LeaseEntryJSON", testLeaseEntryJSON},
		{"ConcurrentLeaseCalls", testConcurrentLeaseCalls},
		{"ConcurrentChargesBesideLease", testConcurrentChargesBesideLease},
		{"Usage", testUsage},
		{"UsageBuckets", testUsageBuckets},
		{"Purchases", testPurchases},
		{"ConcurrentPurchases", testConcurrentPurchases},
		{"Moved", testMoved},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, f) })
	}
}

// timeout bounds every call to the store: generous for a loaded machine.
const timeout = 5 * time.Second

// ctx returns a context for a few calls to the store, cancelled when the test
// ends. Loops take a new one for every round.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
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

// fund credits an account under the id "fund-<account>".
func fund(t *testing.T, s meter.Store, account string, amount int64) {
	t.Helper()
	must(s.Credit(ctx(t), meter.Transfer{Account: account, ID: "fund-" + account, Amount: amount}))(t)
}

// account reads an account in operator mode.
func account(t *testing.T, s meter.Store, id string) meter.Account {
	t.Helper()
	a := must(s.Account(ctx(t), meter.Read{Account: id}))(t)
	if a.Account != id {
		t.Errorf("reading %q returned account %q", id, a.Account)
	}
	return a
}

// notFound checks that an operator sees no account id: neither its totals
// nor its ledger.
func notFound(t *testing.T, s meter.Store, id string) {
	t.Helper()
	_, err := s.Account(ctx(t), meter.Read{Account: id})
	isErr(t, "operator read of "+strconv.Quote(id), err, meter.ErrNotFound)
	_, err = s.Ledger(ctx(t), meter.LedgerQuery{Read: meter.Read{Account: id}})
	isErr(t, "operator ledger read of "+strconv.Quote(id), err, meter.ErrNotFound)
}

// ledgerPage is the page size ledger walks with: small, so that every walk
// crosses pages.
const ledgerPage = 7

// ledger reads an account's whole ledger, newest first, walking its pages.
func ledger(t *testing.T, s meter.Store, id string) []meter.Entry {
	t.Helper()
	var all []meter.Entry
	before := ""
	for {
		page := must(s.Ledger(ctx(t), meter.LedgerQuery{Read: meter.Read{Account: id}, Before: before, Limit: ledgerPage}))(t)
		if page.Account != id {
			t.Fatalf("ledger of %q: page of account %q", id, page.Account)
		}
		if len(page.Entries) > ledgerPage {
			t.Fatalf("ledger of %q: %d entries on a page of %d", id, len(page.Entries), ledgerPage)
		}
		all = append(all, page.Entries...)
		if page.Next == nil {
			return all
		}
		if *page.Next == before {
			t.Fatalf("ledger of %q: the walk does not advance past %s", id, before)
		}
		before = *page.Next
	}
}

// totals is an account's totals without its id and creation time.
func totals(a meter.Account) meter.Account {
	a.Account, a.Created = "", time.Time{}
	return a
}

// expectTotals checks an account's totals exactly.
func expectTotals(t *testing.T, s meter.Store, id string, want meter.Account) {
	t.Helper()
	if got := totals(account(t, s, id)); got != want {
		t.Errorf("%s: totals %+v, want %+v", id, got, want)
	}
}

// invariantHolds checks the invariant an account's totals obey on their own:
// balance == credited - charged - debited + refunded - held, balance >= 0,
// held >= 0.
func invariantHolds(t *testing.T, a meter.Account) {
	t.Helper()
	if a.Balance != a.Credited-a.Charged-a.Debited+a.Refunded-a.Held || a.Balance < 0 || a.Held < 0 {
		t.Fatalf("%s: invariant broken: %+v", a.Account, a)
	}
	for _, n := range []int64{a.Balance, a.Held, a.Credited, a.Charged, a.Debited, a.Refunded} {
		if n > meter.MaxAmount {
			t.Fatalf("%s: a total is past 2^53-1: %+v", a.Account, a)
		}
	}
}

// checkInvariant reads the account (operator mode) and its whole ledger, and
// checks the invariant, that the newest entry's balance is the account's,
// that entry ids strictly decrease newest first across pages, and, unless the
// ledger was trimmed by retention, that the ledger sums to the totals. It
// returns the ledger, newest first.
func checkInvariant(t *testing.T, s meter.Store, id string, trimmed bool) []meter.Entry {
	t.Helper()
	a := account(t, s, id)
	invariantHolds(t, a)
	entries := ledger(t, s, id)
	if after := account(t, s, id); !sameAccount(after, a) {
		t.Fatalf("%s: reading the ledger changed the account from %+v to %+v", id, a, after)
	}
	if len(entries) > 0 && entries[0].Balance != a.Balance {
		t.Fatalf("%s: newest entry's balance %d, account's %d", id, entries[0].Balance, a.Balance)
	}
	for i, e := range entries {
		if e.Balance < 0 || e.Amount < 0 || (e.Amount == 0 && e.Kind != meter.KindSettle) || e.Time.IsZero() {
			t.Fatalf("%s: malformed entry %+v", id, e)
		}
		if i > 0 && !idBefore(t, e.ID, entries[i-1].ID) {
			t.Fatalf("%s: entry ids not strictly decreasing: %s then %s", id, entries[i-1].ID, e.ID)
		}
	}
	if trimmed {
		return entries
	}
	if len(entries) == 0 && (a.Credited != 0 || a.Held != 0) {
		t.Fatalf("%s: totals %+v but an empty ledger", id, a)
	}
	var sum meter.Account
	for _, e := range entries {
		switch e.Kind {
		case meter.KindCredit:
			sum.Credited += e.Amount
		case meter.KindCharge:
			sum.Charged += e.Amount
			if e.Detail.Lease != "" {
				// A lease's charge is paid from what the lease holds.
				sum.Held -= e.Amount
			}
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
	// The oldest entry starts from nothing, and each entry moves the balance
	// by its amount.
	bal := int64(0)
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		switch e.Kind {
		case meter.KindCredit, meter.KindRefund:
			bal += e.Amount
		case meter.KindCharge:
			if e.Detail.Lease == "" {
				bal -= e.Amount
			}
		case meter.KindDebit, meter.KindHold:
			bal -= e.Amount
		case meter.KindSettle:
			bal += e.Detail.Released
		case meter.KindRelease:
			bal += e.Amount
		}
		if e.Balance != bal {
			t.Fatalf("%s: entry %s (%s of %d) says balance %d, the entries before it make %d", id, e.ID, e.Kind, e.Amount, e.Balance, bal)
		}
	}
	return entries
}

// entryID parses an entry id "<ms>-<seq>", the form LedgerQuery.Before takes.
func entryID(t *testing.T, id string) (ms, seq uint64) {
	t.Helper()
	a, b, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("entry id %q is not <ms>-<seq>", id)
	}
	return ms, seq
}

// idBefore reports whether entry id a is older than b.
func idBefore(t *testing.T, a, b string) bool {
	t.Helper()
	am, as := entryID(t, a)
	bm, bs := entryID(t, b)
	return am < bm || (am == bm && as < bs)
}

// clockSlack is how far apart two readings of the store's clock in one
// operation may be: its times have millisecond resolution, and a store may
// read its clock more than once in a step (Redis stamps a ledger entry by
// XADD and an expiry by TIME).
const clockSlack = 5 * time.Millisecond

// near reports whether two times on the store's clock are the same moment,
// up to clockSlack.
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d >= -clockSlack && d <= clockSlack
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

// replayed returns r as its replay reports it.
func replayed(r meter.Receipt) meter.Receipt {
	r.Replayed = true
	return r
}

// unchanged checks that an account's totals and ledger are as snapshot took
// them.
func unchanged(t *testing.T, s meter.Store, id, what string, snap snapshot) {
	t.Helper()
	if got := account(t, s, id); !sameAccount(got, snap.account) {
		t.Errorf("%s changed %s: %+v, was %+v", what, id, got, snap.account)
	}
	if got := ledger(t, s, id); len(got) != len(snap.ledger) || (len(got) > 0 && got[0].ID != snap.ledger[0].ID) {
		t.Errorf("%s wrote to the ledger of %s: %d entries, was %d", what, id, len(got), len(snap.ledger))
	}
}

// snapshot is an account's totals and ledger at one moment.
type snapshot struct {
	account meter.Account
	ledger  []meter.Entry
}

func snap(t *testing.T, s meter.Store, id string) snapshot {
	t.Helper()
	return snapshot{account(t, s, id), ledger(t, s, id)}
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

// walkAccounts lists every account, walking Accounts until Next is nil.
func walkAccounts(t *testing.T, s meter.Store, limit int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	cursor := ""
	for range 100000 {
		page := must(s.Accounts(ctx(t), cursor, limit))(t)
		for _, a := range page.Accounts {
			seen[a] = true
		}
		if page.Next == nil {
			return seen
		}
		cursor = *page.Next
	}
	t.Fatalf("the account walk did not end")
	return nil
}

// sameReceipt reports whether two receipts are equal, their times compared
// as instants.
func sameReceipt(a, b meter.Receipt) bool {
	ea, eb := a.Expires, b.Expires
	a.Expires, b.Expires = time.Time{}, time.Time{}
	return a == b && ea.Equal(eb)
}

// sameEntry reports whether two entries are equal, their times compared as
// instants.
func sameEntry(a, b meter.Entry) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

// sameTransfer reports whether two transfer receipts are equal.
func sameTransfer(a, b meter.TransferReceipt) bool {
	return a.Account == b.Account && a.Balance == b.Balance && a.Replayed == b.Replayed && sameEntry(a.Entry, b.Entry)
}

// sameAccount reports whether two account reads are equal.
func sameAccount(a, b meter.Account) bool {
	return a.Account == b.Account && totals(a) == totals(b) && a.Created.Equal(b.Created)
}
