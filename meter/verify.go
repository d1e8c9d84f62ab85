package meter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// The checks a verify runs on each account, by the names its drift carries.
const (
	// CheckTotals finds a stored running total that is not an integer in
	// [0, 2^53-1].
	CheckTotals = "totals"

	// CheckNegative finds a balance or a held total below zero.
	CheckNegative = "negative"

	// CheckHeld finds a held total that is not the sum of the open holds,
	// and an open hold of no tokens.
	CheckHeld = "held"

	// CheckExpiry finds an open hold without an expiry, an expiry without
	// an open hold, and an expiry the store would not look for in time.
	CheckExpiry = "expiry"

	// CheckLedger finds, in a ledger that holds the account's whole
	// history, entries that do not replay from zero to the stored totals and
	// open holds.
	CheckLedger = "ledger"

	// CheckEntryBalance finds, in a ledger that holds the account's whole
	// history, an entry whose balance is not the one before it moved by the
	// entry.
	CheckEntryBalance = "entry_balance"
)

// Drift is one invariant that an account's stored records break.
type Drift struct {
	// Account is the account whose records break it.
	Account string `json:"account"`

	// Check is the name of the check that found it: one of the Check
	// constants.
	Check string `json:"check"`

	// Detail says what was found, with the numbers.
	Detail string `json:"detail"`
}

// Check is what verifying one account found.
type Check struct {
	// Account is the account verified.
	Account string `json:"account"`

	// WholeLedger reports that the ledger still holds the account's whole
	// history, so its entries were replayed against the totals. A ledger
	// trimmed by retention skips the ledger and entry_balance checks.
	WholeLedger bool `json:"whole_ledger"`

	// Drift lists what the account's records break; it is empty when they
	// break nothing.
	Drift []Drift `json:"drift"`
}

// CheckPage is what verifying a page of accounts found.
type CheckPage struct {
	// Checked is how many accounts the page verified.
	Checked int `json:"checked"`

	// Drift lists what the page's accounts break; it is empty when they
	// break nothing.
	Drift []Drift `json:"drift"`

	// Next is the cursor of the following page, or nil at the end.
	Next *string `json:"next"`
}

// records is what a store keeps of one account, read in one atomic step and
// left as it is: an expired hold that is not released yet is still open.
type records struct {
	account string

	// totals are the running totals, as stored.
	totals totals

	// holds are the open holds: op -> tokens held.
	holds map[string]int64

	// expiry is when each open hold expires: op -> ms on the store's clock.
	expiry map[string]int64

	// nextExpiry is the time, in ms, before which the store looks for no
	// expired hold; 0 when it looks for none.
	nextExpiry int64

	// ledger is the retained ledger, oldest first.
	ledger []Entry

	// whole reports that ledger holds every entry ever appended.
	whole bool

	// malformed lists the stored values that could not be read, each as the
	// drift it is.
	malformed []Drift
}

// malform records a stored value that could not be read, as the drift that
// check reports.
func (r *records) malform(check, format string, args ...any) {
	r.malformed = append(r.malformed, Drift{Account: r.account, Check: check, Detail: fmt.Sprintf(format, args...)})
}

// recorder is a store that reads an account's records and lists accounts.
type recorder interface {
	records(ctx context.Context, account string) (records, error)
	Accounts(ctx context.Context, cursor string, limit int) (AccountPage, error)
}

// verifyAccount checks one account's records. An account never seen is
// ErrNotFound, and is not created.
func verifyAccount(ctx context.Context, r recorder, account string) (Check, error) {
	if err := checkAccount(account); err != nil {
		return Check{}, err
	}
	rec, err := r.records(ctx, account)
	if err != nil {
		return Check{}, err
	}
	return Check{Account: account, WholeLedger: rec.whole, Drift: rec.check()}, nil
}

// verifyPage checks every account on a page of the account list. An account
// listed but never seen is skipped.
func verifyPage(ctx context.Context, r recorder, cursor string, limit int) (CheckPage, error) {
	accounts, err := r.Accounts(ctx, cursor, limit)
	if err != nil {
		return CheckPage{}, err
	}
	page := CheckPage{Drift: []Drift{}, Next: accounts.Next}
	for _, id := range accounts.Accounts {
		c, err := verifyAccount(ctx, r, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return CheckPage{}, err
		}
		page.Checked++
		page.Drift = append(page.Drift, c.Drift...)
	}
	return page, nil
}

// check returns what the records break, in a stable order.
func (r records) check() []Drift {
	d := &drifts{account: r.account, list: append([]Drift{}, r.malformed...)}
	r.checkTotals(d)
	r.checkHolds(d)
	if r.whole {
		r.replay(d)
	}
	return d.list
}

// drifts collects one account's drift.
type drifts struct {
	account string
	list    []Drift
}

// add records a drift found by check.
func (d *drifts) add(check, format string, args ...any) {
	d.list = append(d.list, Drift{Account: d.account, Check: check, Detail: fmt.Sprintf(format, args...)})
}

// totals are an account's running totals.
type totals struct {
	credited, charged, debited, refunded, held int64
}

// balance is what the totals leave available.
func (t totals) balance() int64 {
	return t.credited - t.charged - t.debited + t.refunded - t.held
}

// totalNames names the totals in the order of totals.list.
var totalNames = [...]string{"credited", "charged", "debited", "refunded", "held"}

// list returns the totals in the order of totalNames.
func (t totals) list() [len(totalNames)]int64 {
	return [...]int64{t.credited, t.charged, t.debited, t.refunded, t.held}
}

// checkTotals checks that every total is in range and that neither the
// balance nor held is below zero.
func (r records) checkTotals(d *drifts) {
	t := r.totals
	for i, n := range t.list() {
		switch {
		case n < 0 && totalNames[i] == "held":
			d.add(CheckNegative, "held is %d", n)
		case !ValidAmount(n):
			d.add(CheckTotals, "%s is %d, outside [0, 2^53-1]", totalNames[i], n)
		}
	}
	if b := t.balance(); b < 0 {
		d.add(CheckNegative, "balance is %d: credited %d - charged %d - debited %d + refunded %d - held %d",
			b, t.credited, t.charged, t.debited, t.refunded, t.held)
	}
}

// checkHolds checks held against the open holds, and the open holds against
// their expiry.
func (r records) checkHolds(d *drifts) {
	var sum int64
	for _, op := range slices.Sorted(maps.Keys(r.holds)) {
		n := r.holds[op]
		if n < 1 || n > MaxAmount {
			d.add(CheckHeld, "open hold %q holds %d", op, n)
		}
		sum += n
		if _, ok := r.expiry[op]; !ok {
			d.add(CheckExpiry, "open hold %q has no expiry", op)
		}
	}
	if sum != r.totals.held {
		d.add(CheckHeld, "held is %d, the open holds sum to %d", r.totals.held, sum)
	}
	first, firstOp := int64(0), ""
	for _, op := range slices.Sorted(maps.Keys(r.expiry)) {
		if _, ok := r.holds[op]; !ok {
			d.add(CheckExpiry, "an expiry names %q, which is no open hold", op)
		}
		if ms := r.expiry[op]; firstOp == "" || ms < first {
			first, firstOp = ms, op
		}
	}
	switch {
	case firstOp == "":
	case r.nextExpiry == 0:
		d.add(CheckExpiry, "the account looks for no expired hold, but %q expires at %d ms", firstOp, first)
	case r.nextExpiry > first:
		d.add(CheckExpiry, "the account looks for expired holds from %d ms, after %q expires at %d ms", r.nextExpiry, firstOp, first)
	}
}

// replay applies the ledger's entries, from zero, and checks each entry's
// balance against the one before it, each settle and release against the
// hold it closes, and what they add up to against the stored totals and
// open holds.
func (r records) replay(d *drifts) {
	var t totals
	open := map[string]int64{}
	prev := int64(0) // the balance before the entry
	for _, e := range r.ledger {
		if e.Amount < 0 || (e.Amount == 0 && e.Kind != KindSettle) {
			d.add(CheckLedger, "entry %s (%s) has amount %d", e.ID, e.Kind, e.Amount)
		}
		var move int64 // what the entry adds to the balance
		switch e.Kind {
		case KindCredit:
			t.credited += e.Amount
			move = e.Amount
		case KindDebit:
			t.debited += e.Amount
			move = -e.Amount
		case KindCharge:
			t.charged += e.Amount
			move = -e.Amount
			if e.Detail.Lease != "" {
				// A lease's charge is paid from what the lease holds.
				spendHold(d, open, e, e.Detail.Lease)
				t.held -= e.Amount
				move = 0
			}
		case KindRefund:
			t.refunded += e.Amount
			move = e.Amount
		case KindHold:
			t.held += e.Amount
			open[e.Op] += e.Amount
			move = -e.Amount
		case KindSettle:
			closeHold(d, open, e, e.Amount+e.Detail.Released)
			t.charged += e.Amount
			t.held -= e.Amount + e.Detail.Released
			move = e.Detail.Released
		case KindRelease:
			if e.Detail.Reason == ReasonLease {
				// A lease gives back part of what it holds, or the rest.
				spendHold(d, open, e, e.Op)
			} else {
				closeHold(d, open, e, e.Amount)
			}
			t.held -= e.Amount
			move = e.Amount
		default:
			d.add(CheckLedger, "entry %s has the unknown kind %q", e.ID, e.Kind)
			prev = e.Balance
			continue
		}
		if want := prev + move; e.Balance != want {
			d.add(CheckEntryBalance, "entry %s (%s of %d) says balance %d, the balance before it was %d, so %d",
				e.ID, e.Kind, e.Amount, e.Balance, prev, want)
		}
		prev = e.Balance
	}
	stored := r.totals.list()
	for i, n := range t.list() {
		if n != stored[i] {
			d.add(CheckLedger, "the entries make %s %d, the account says %d", totalNames[i], n, stored[i])
		}
	}
	ops := maps.Clone(open)
	maps.Copy(ops, r.holds)
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		if open[op] != r.holds[op] {
			d.add(CheckLedger, "the entries leave hold %q holding %d, the open holds say %d", op, open[op], r.holds[op])
		}
	}
}

// closeHold closes an op's hold in a replay, checking that the entry e closes
// all that it holds.
func closeHold(d *drifts, open map[string]int64, e Entry, closes int64) {
	held, ok := open[e.Op]
	switch {
	case !ok:
		d.add(CheckLedger, "entry %s (%s) closes the hold of %q, which the entries before it leave closed", e.ID, e.Kind, e.Op)
	case held != closes:
		d.add(CheckLedger, "entry %s (%s) closes %d of the hold of %q, which holds %d", e.ID, e.Kind, closes, e.Op, held)
	}
	delete(open, e.Op)
}

// spendHold takes an entry's amount from the hold of op in a replay, and
// closes the hold when nothing is left of it.
func spendHold(d *drifts, open map[string]int64, e Entry, op string) {
	held, ok := open[op]
	switch {
	case !ok:
		d.add(CheckLedger, "entry %s (%s) takes from the hold of %q, which the entries before it leave closed", e.ID, e.Kind, op)
	case held < e.Amount:
		d.add(CheckLedger, "entry %s (%s) takes %d from the hold of %q, which holds %d", e.ID, e.Kind, e.Amount, op, held)
	}
	if held -= e.Amount; held > 0 {
		open[op] = held
	} else {
		delete(open, op)
	}
}
