package storetest

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/meter"
)

// fulfil credits a purchase with the ids a checkout would use.
func fulfil(t *testing.T, s meter.Store, account, session string) meter.PurchaseReceipt {
	t.Helper()
	return must(s.FulfilPurchase(ctx(t), meter.Fulfil{Account: account, Session: session, ID: "stripe:" + session, Reason: "purchase", By: "stripe"}))(t)
}

// refundPurchase takes back the share of amount of a purchase.
func refundPurchase(t *testing.T, s meter.Store, account, session, id string, amount int64) meter.PurchaseReceipt {
	t.Helper()
	return must(s.RefundPurchase(ctx(t), meter.PurchaseRefund{Account: account, Session: session, ID: id, Amount: amount, Reason: "refund", By: "stripe"}))(t)
}

// wantShare is tokens × amount ÷ total rounded up, in big integers.
func wantShare(tokens, amount, total int64) int64 {
	n := new(big.Int).Mul(big.NewInt(tokens), big.NewInt(amount))
	n.Add(n, big.NewInt(total-1))
	return n.Div(n, big.NewInt(total)).Int64()
}

// testPurchases records purchases, credits them once, and takes back the
// share of their refunds: before the credit, after it, past the balance,
// past what is left, and with shares that do not divide evenly.
func testPurchases(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	p := meter.Purchase{Account: "alice", Session: "cs_1", Bundle: "starter", Quantity: 2, Tokens: 2000, Total: 1000}
	must(struct{}{}, s.RecordPurchase(c, p))(t)
	must(struct{}{}, s.RecordPurchase(c, p))(t)
	other := p
	other.Tokens = 9999
	isErr(t, "the same session with other tokens", s.RecordPurchase(c, other), meter.ErrConflict)

	_, err := s.FulfilPurchase(c, meter.Fulfil{Account: "alice", Session: "cs_nope", ID: "stripe:cs_nope"})
	isErr(t, "fulfilling a session never recorded", err, meter.ErrNotFound)
	_, err = s.FulfilPurchase(c, meter.Fulfil{Account: "bob", Session: "cs_1", ID: "stripe:cs_1"})
	isErr(t, "fulfilling another account's session", err, meter.ErrNotFound)
	notFound(t, s, "bob")

	first := fulfil(t, s, "alice", "cs_1")
	if first.Amount != 2000 || first.Balance != 2000 || first.Replayed || first.Entry.Kind != meter.KindCredit ||
		first.Entry.Op != "stripe:cs_1" || first.Entry.Detail.Reason != "purchase" || first.Entry.Detail.By != "stripe" {
		t.Errorf("fulfil: %+v", first)
	}
	again := fulfil(t, s, "alice", "cs_1")
	if !again.Replayed || again.Amount != 2000 || again.Entry.ID != first.Entry.ID {
		t.Errorf("fulfil again: %+v, want the first %+v replayed", again, first)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 2000, Credited: 2000})

	// A refund of 333 of 1000 takes back 666 of 2000 (rounded up from
	// 666.0), once per id.
	r := refundPurchase(t, s, "alice", "cs_1", "stripe-refund:re_1", 333)
	if r.Amount != 666 || r.Shortfall != 0 || r.Pending || r.Balance != 1334 || r.Entry.Kind != meter.KindDebit || r.Entry.Op != "stripe-refund:re_1" {
		t.Errorf("refund: %+v", r)
	}
	if again := refundPurchase(t, s, "alice", "cs_1", "stripe-refund:re_1", 333); !again.Replayed || again.Amount != 666 || again.Entry.ID != r.Entry.ID {
		t.Errorf("refund again: %+v", again)
	}
	_, err = s.RefundPurchase(c, meter.PurchaseRefund{Account: "alice", Session: "cs_1", ID: "stripe-refund:re_1", Amount: 334})
	isErr(t, "the same refund with another amount", err, meter.ErrConflict)

	// Spent down to 100, a refund of the rest takes 100 and records the
	// shortfall; what is left of the purchase then bounds every refund.
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "spend", Amount: 1234}))(t)
	r = refundPurchase(t, s, "alice", "cs_1", "stripe-dispute:dp_1", 1000)
	if r.Amount != 100 || r.Shortfall != 1234 || r.Balance != 0 || r.Entry.Detail.Shortfall != 1234 || r.Entry.Amount != 100 {
		t.Errorf("dispute past the balance: %+v", r)
	}
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "top-up", Amount: 50}))(t)
	r = refundPurchase(t, s, "alice", "cs_1", "stripe-refund:re_2", 1000)
	if r.Amount != 0 || r.Shortfall != 0 || r.Entry.ID != "" || r.Balance != 50 {
		t.Errorf("a refund of a purchase taken back in full: %+v", r)
	}
	expectTotals(t, s, "alice", meter.Account{Balance: 50, Credited: 2050, Charged: 1234, Debited: 766})

	// A refund before the credit comes out of the credit, rounded up.
	p2 := meter.Purchase{Account: "alice", Session: "cs_2", Bundle: "pro", Quantity: 1, Tokens: 12000, Total: 4900}
	must(struct{}{}, s.RecordPurchase(c, p2))(t)
	r = refundPurchase(t, s, "alice", "cs_2", "stripe-refund:re_3", 1)
	if !r.Pending || r.Amount != 3 || r.Entry.ID != "" {
		t.Errorf("a refund before the credit: %+v, want 3 pending", r)
	}
	if got := fulfil(t, s, "alice", "cs_2"); got.Amount != 11997 || got.Balance != 12047 {
		t.Errorf("the credit after a refund: %+v, want 11997", got)
	}

	// Shares are exact however large the tokens: a sweep of amounts that
	// do not divide evenly.
	for i, c := range []struct{ tokens, total, amount int64 }{
		{meter.MaxAmount, 10_000_000_000, 3},
		{meter.MaxAmount, 7, 6},
		{1000, 999, 1},
		{1, 100, 1},
		{7, 3, 2},
	} {
		account := "sweep-" + string(rune('a'+i))
		must(struct{}{}, s.RecordPurchase(ctx(t), meter.Purchase{Account: account, Session: "cs", Bundle: "b", Quantity: 1, Tokens: c.tokens, Total: c.total}))(t)
		r := refundPurchase(t, s, account, "cs", "re", c.amount)
		if want := wantShare(c.tokens, c.amount, c.total); !r.Pending || r.Amount != want {
			t.Errorf("%d × %d ÷ %d: share %d, want %d", c.tokens, c.amount, c.total, r.Amount, want)
		}
	}

	for name, fn := range map[string]func() error{
		"quantity 0":   func() error { q := p; q.Session, q.Quantity = "cs_x", 0; return s.RecordPurchase(c, q) },
		"quantity 101": func() error { q := p; q.Session, q.Quantity = "cs_x", 101; return s.RecordPurchase(c, q) },
		"tokens 0":     func() error { q := p; q.Session, q.Tokens = "cs_x", 0; return s.RecordPurchase(c, q) },
		"total 0":      func() error { q := p; q.Session, q.Total = "cs_x", 0; return s.RecordPurchase(c, q) },
		"no session":   func() error { q := p; q.Session = ""; return s.RecordPurchase(c, q) },
		"a refund of 0": func() error {
			_, err := s.RefundPurchase(c, meter.PurchaseRefund{Account: "alice", Session: "cs_1", ID: "re_0"})
			return err
		},
		"a fulfil without an id": func() error {
			_, err := s.FulfilPurchase(c, meter.Fulfil{Account: "alice", Session: "cs_1"})
			return err
		},
	} {
		isErr(t, name, fn(), meter.ErrInvalid)
	}
	checkInvariant(t, s, "alice", false)
	clean(t, s, "alice")
}

// testConcurrentPurchases delivers one paid session 50 times at once, and
// one refund of it 50 times at once, among 50 charges of 1: the purchase
// is credited exactly once and its refund taken back exactly once.
func testConcurrentPurchases(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	must(struct{}{}, s.RecordPurchase(ctx(t), meter.Purchase{Account: "alice", Session: "cs", Bundle: "b", Quantity: 1, Tokens: 1000, Total: 100}))(t)
	const n = 50
	var credits, refunds, charged atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.FulfilPurchase(c, meter.Fulfil{Account: "alice", Session: "cs", ID: "stripe:cs"})
				if err == nil && !r.Replayed {
					credits.Add(1)
				}
			})
		})
		wg.Go(func() {
			call(func(c context.Context) {
				r, err := s.RefundPurchase(c, meter.PurchaseRefund{Account: "alice", Session: "cs", ID: "re", Amount: 10})
				if err == nil && !r.Replayed && r.Amount == 100 {
					refunds.Add(1)
				}
			})
		})
		wg.Go(func() {
			call(func(c context.Context) {
				if _, err := s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}); err == nil {
					charged.Add(1)
				}
			})
		})
	}
	wg.Wait()
	// The refund of 10 of 100 takes 100 tokens: out of the credit when it
	// came first, from the balance when it came after.
	a := account(t, s, "alice")
	if credits.Load() != 1 || refunds.Load() != 1 {
		t.Errorf("%d credits and %d refunds of 100 applied, want 1 and 1", credits.Load(), refunds.Load())
	}
	if a.Balance != 900-charged.Load() || a.Credited-a.Debited != 900 {
		t.Errorf("after %d charges: %+v, want 900 less the charges", charged.Load(), a)
	}
	checkInvariant(t, s, "alice", false)
	clean(t, s, "alice")
}
