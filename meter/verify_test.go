package meter

import (
	"slices"
	"testing"
)

// sample returns the records of an account with a whole ledger that breaks
// nothing: a credit of 100, a charge of 5, a hold of 10 extended by 2 and
// settled at 7, and an open hold of 10.
func sample() records {
	e := func(id, kind string, amount, balance int64, op string) Entry {
		return Entry{ID: id, Kind: kind, Amount: amount, Balance: balance, Op: op}
	}
	settle := e("5-0", KindSettle, 7, 88, "h1")
	settle.Detail.Released = 5
	return records{
		account:    "alice",
		totals:     totals{credited: 100, charged: 12, held: 10},
		holds:      map[string]int64{"h2": 10},
		expiry:     map[string]int64{"h2": 9000},
		nextExpiry: 8000,
		ledger: []Entry{
			e("1-0", KindCredit, 100, 100, "order-1"),
			e("2-0", KindCharge, 5, 95, "c1"),
			e("3-0", KindHold, 10, 85, "h1"),
			e("4-0", KindHold, 2, 83, "h1"),
			settle,
			e("6-0", KindHold, 10, 78, "h2"),
		},
		whole: true,
	}
}

// checks returns the names of the checks that found each drift, in order.
func checks(drift []Drift) []string {
	var names []string
	for _, d := range drift {
		names = append(names, d.Check)
	}
	return names
}

func TestCheckFindsEachDrift(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*records)
		want []string
	}{
		{"nothing broken", func(*records) {}, nil},
		{"a total out of range", func(r *records) {
			r.whole = false
			r.totals.refunded = MaxAmount + 1
		}, []string{CheckTotals}},
		{"a negative total", func(r *records) {
			r.whole = false
			r.totals.debited = -3
		}, []string{CheckTotals}},
		{"a negative balance", func(r *records) {
			r.whole = false
			r.totals.charged = 200
		}, []string{CheckNegative}},
		{"a negative held", func(r *records) {
			r.whole = false
			r.totals.held, r.holds, r.expiry = -1, map[string]int64{}, map[string]int64{}
		}, []string{CheckNegative, CheckHeld}},
		{"held above the open holds", func(r *records) {
			r.whole = false
			r.totals.held = 12
		}, []string{CheckHeld}},
		{"an open hold of nothing", func(r *records) {
			r.whole = false
			r.totals.held, r.holds["h2"] = 0, 0
		}, []string{CheckHeld}},
		{"an open hold without an expiry", func(r *records) {
			r.whole = false
			delete(r.expiry, "h2")
		}, []string{CheckExpiry}},
		{"an expiry without an open hold", func(r *records) {
			r.whole = false
			r.expiry["gone"] = 9500
		}, []string{CheckExpiry}},
		{"no look for expired holds", func(r *records) {
			r.whole = false
			r.nextExpiry = 0
		}, []string{CheckExpiry}},
		{"a look for expired holds after the first expiry", func(r *records) {
			r.whole = false
			r.nextExpiry = 9001
		}, []string{CheckExpiry}},
		{"a look for expired holds at the first expiry", func(r *records) {
			r.nextExpiry = 9000
		}, nil},
		{"a total the entries do not make", func(r *records) {
			r.totals.credited = 105
		}, []string{CheckLedger}},
		{"an entry that makes no total", func(r *records) {
			r.ledger = append(r.ledger, Entry{ID: "7-0", Kind: KindCredit, Amount: 5, Balance: 83, Op: "stray"})
		}, []string{CheckLedger}},
		{"an entry of an unknown kind", func(r *records) {
			r.ledger = append(r.ledger, Entry{ID: "7-0", Kind: "gift", Amount: 5, Balance: 83, Op: "stray"})
		}, []string{CheckLedger}},
		{"an entry of no amount", func(r *records) {
			r.ledger = append(r.ledger, Entry{ID: "7-0", Kind: KindRefund, Balance: 78, Op: "c1"})
		}, []string{CheckLedger}},
		{"the newest entry's balance", func(r *records) {
			r.ledger[5].Balance = 80
		}, []string{CheckEntryBalance}},
		{"an older entry's balance, which the next one contradicts", func(r *records) {
			r.ledger[1].Balance = 96
		}, []string{CheckEntryBalance, CheckEntryBalance}},
		{"a settle that closes more than the hold", func(r *records) {
			r.ledger[4].Detail.Released = 6
			r.ledger[4].Balance, r.ledger[5].Balance = 89, 79
			r.totals.held = 9
			r.holds["h2"] = 9
		}, []string{CheckLedger, CheckLedger}},
		{"a release of a hold the entries closed", func(r *records) {
			r.ledger = append(r.ledger, Entry{ID: "7-0", Kind: KindRelease, Amount: 3, Balance: 81, Op: "h1"})
		}, []string{CheckLedger, CheckLedger}},
		{"an open hold the entries never made", func(r *records) {
			r.totals.held, r.holds["h3"], r.expiry["h3"] = 14, 4, 9100
		}, []string{CheckLedger, CheckLedger}},
		{"a trimmed ledger is not replayed", func(r *records) {
			r.whole = false
			r.ledger = r.ledger[3:]
			r.ledger[0].Balance = 1
		}, nil},
		{"what the store could not read comes first", func(r *records) {
			r.malform(CheckTotals, "the account's cr is %q, not an integer", "x")
			r.totals.credited = 0
			r.whole = false
		}, []string{CheckTotals, CheckNegative}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := sample()
			c.edit(&r)
			drift := r.check()
			if got := checks(drift); !slices.Equal(got, c.want) {
				t.Errorf("drift %+v, want checks %q", drift, c.want)
			}
			for _, d := range drift {
				if d.Account != "alice" || d.Detail == "" {
					t.Errorf("drift %+v, want alice's, with a detail", d)
				}
			}
			if drift == nil {
				t.Error("a nil drift list, want an empty one")
			}
		})
	}
}

func TestCheckDetail(t *testing.T) {
	r := sample()
	r.totals.held = 12
	r.whole = false
	want := []Drift{{Account: "alice", Check: CheckHeld, Detail: "held is 12, the open holds sum to 10"}}
	if got := r.check(); !slices.Equal(got, want) {
		t.Errorf("drift %+v, want %+v", got, want)
	}
	r = sample()
	r.ledger[5].Balance = 80
	want = []Drift{{Account: "alice", Check: CheckEntryBalance, Detail: "entry 6-0 (hold of 10) says balance 80, the balance before it was 88, so 78"}}
	if got := r.check(); !slices.Equal(got, want) {
		t.Errorf("drift %+v, want %+v", got, want)
	}
}
