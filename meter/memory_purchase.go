package meter

import (
	"context"
	"fmt"
)

// memPurchase is a recorded purchase.
type memPurchase struct {
	p        Purchase
	credited *PurchaseReceipt // the credit, once fulfilled
	taken    int64            // tokens its refunds took back
	refunds  map[string]*memRefund
}

// memRefund is a refund of a purchase, by its id.
type memRefund struct {
	amount  int64
	receipt PurchaseReceipt
}

// RecordPurchase records a purchase before it is paid; see Store.
func (m *Memory) RecordPurchase(ctx context.Context, p Purchase) error {
	if err := p.validate(); err != nil {
		return err
	}
	return m.with(ctx, p.Account, true, false, func(a *memAccount, _ int64) error {
		if prev := a.purchases[p.Session]; prev != nil {
			if prev.p != p {
				return fmt.Errorf("%w: the session was recorded with other values", ErrConflict)
			}
			return nil
		}
		if a.purchases == nil {
			a.purchases = map[string]*memPurchase{}
		}
		a.purchases[p.Session] = &memPurchase{p: p, refunds: map[string]*memRefund{}}
		return nil
	})
}

// FulfilPurchase credits a recorded purchase once; see Store.
func (m *Memory) FulfilPurchase(ctx context.Context, f Fulfil) (PurchaseReceipt, error) {
	if err := f.validate(); err != nil {
		return PurchaseReceipt{}, err
	}
	var r PurchaseReceipt
	err := m.with(ctx, f.Account, false, false, func(a *memAccount, now int64) error {
		pu := a.purchases[f.Session]
		switch {
		case pu == nil:
			return fmt.Errorf("%w: no such purchase", ErrNotFound)
		case pu.credited != nil:
			r = *pu.credited
			r.Replayed = true
			return nil
		}
		amount := pu.p.Tokens - pu.taken
		if amount > 0 {
			if a.credited+amount > MaxAmount || a.balance()+a.held+amount > MaxAmount {
				return invalid("credited total or balance would exceed 2^53-1")
			}
			a.credited += amount
			r.Entry = a.add(m.config(), now, Entry{Kind: KindCredit, Amount: amount, Op: f.ID, Detail: Detail{Reason: f.Reason, By: f.By}})
			r.Amount = amount
		}
		r.Balance = a.balance()
		pu.credited = &r
		return nil
	})
	return r, err
}

// RefundPurchase takes back a refund's share of a purchase; see Store.
func (m *Memory) RefundPurchase(ctx context.Context, rf PurchaseRefund) (PurchaseReceipt, error) {
	if err := rf.validate(); err != nil {
		return PurchaseReceipt{}, err
	}
	var r PurchaseReceipt
	err := m.with(ctx, rf.Account, false, false, func(a *memAccount, now int64) error {
		pu := a.purchases[rf.Session]
		if pu == nil {
			return fmt.Errorf("%w: no such purchase", ErrNotFound)
		}
		if prev := pu.refunds[rf.ID]; prev != nil {
			if prev.amount != rf.Amount {
				return fmt.Errorf("%w: the refund was recorded with another amount", ErrConflict)
			}
			r = prev.receipt
			r.Replayed = true
			return nil
		}
		if len(pu.refunds) >= MaxPurchaseRefunds {
			return invalid("a purchase takes at most %d refunds", MaxPurchaseRefunds)
		}
		s := min(share(pu.p.Tokens, rf.Amount, pu.p.Total), pu.p.Tokens-pu.taken)
		r.Amount = s
		if pu.credited == nil {
			r.Pending = true
		} else {
			r.Amount = min(s, a.balance())
			r.Shortfall = s - r.Amount
			if a.debited+r.Amount > MaxAmount {
				return invalid("debited total would exceed 2^53-1")
			}
			if r.Amount > 0 {
				a.debited += r.Amount
				r.Entry = a.add(m.config(), now, Entry{Kind: KindDebit, Amount: r.Amount, Op: rf.ID,
					Detail: Detail{Reason: rf.Reason, By: rf.By, Shortfall: r.Shortfall}})
			}
		}
		pu.taken += s
		r.Balance = a.balance()
		pu.refunds[rf.ID] = &memRefund{amount: rf.Amount, receipt: r}
		return nil
	})
	return r, err
}
