package meter

import (
	"context"
	"fmt"
)

// RecordPurchase records a purchase before it is paid; see Store.
func (s *Redis) RecordPurchase(ctx context.Context, p Purchase) error {
	if err := p.validate(); err != nil {
		return err
	}
	_, err := s.run(ctx, scriptPurchase, s.keys(p.Account, "purchase:"+p.Session), true,
		"record", p.Bundle, p.Quantity, p.Tokens, p.Total)
	return s.unreplicated(err)
}

// FulfilPurchase credits a recorded purchase once; see Store.
func (s *Redis) FulfilPurchase(ctx context.Context, f Fulfil) (PurchaseReceipt, error) {
	if err := f.validate(); err != nil {
		return PurchaseReceipt{}, err
	}
	reply, err := s.run(ctx, scriptPurchase, s.keys(f.Account, "purchase:"+f.Session), true,
		"fulfil", f.ID, f.Reason, f.By)
	if err = s.unreplicated(err); err != nil {
		return PurchaseReceipt{}, err
	}
	return purchaseReceipt(reply, KindCredit, f.ID, Detail{Reason: f.Reason, By: f.By}), nil
}

// RefundPurchase takes back a refund's share of a purchase; see Store. It
// reads the purchase's terms first, and computes the share in Go, where
// tokens × amount cannot lose precision.
func (s *Redis) RefundPurchase(ctx context.Context, r PurchaseRefund) (PurchaseReceipt, error) {
	if err := r.validate(); err != nil {
		return PurchaseReceipt{}, err
	}
	keys := s.keys(r.Account, "purchase:"+r.Session)
	reply, err := s.run(ctx, scriptPurchase, keys, true, "refund", r.ID, r.Reason, r.By, r.Amount, "")
	if err = s.unreplicated(err); err != nil {
		return PurchaseReceipt{}, err
	}
	if code, _ := reply[0].(string); code == "TERMS" {
		tokens, total := intAt(reply, 1), intAt(reply, 2)
		if tokens < 1 || total < 1 {
			return PurchaseReceipt{}, fmt.Errorf("%w: malformed purchase record", ErrUnavailable)
		}
		reply, err = s.run(ctx, scriptPurchase, keys, true, "refund", r.ID, r.Reason, r.By, r.Amount, share(tokens, r.Amount, total))
		if err = s.unreplicated(err); err != nil {
			return PurchaseReceipt{}, err
		}
	}
	return purchaseReceipt(reply, KindDebit, r.ID, Detail{Reason: r.Reason, By: r.By}), nil
}

// purchaseReceipt reads the reply of a fulfil or a refund.
func purchaseReceipt(reply []any, kind, id string, detail Detail) PurchaseReceipt {
	r := PurchaseReceipt{
		Amount:    intAt(reply, 1),
		Shortfall: intAt(reply, 2),
		Pending:   intAt(reply, 3) == 1,
		Balance:   intAt(reply, 4),
		Replayed:  intAt(reply, 6) == 1,
	}
	if eid := strAt(reply, 5); eid != "" {
		detail.Shortfall = r.Shortfall
		r.Entry = Entry{ID: eid, Time: entryTime(eid), Kind: kind, Amount: r.Amount, Balance: r.Balance, Op: id, Detail: detail}
	}
	return r
}
