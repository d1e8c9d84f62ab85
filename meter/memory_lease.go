package meter

import (
	"context"
	"fmt"
	"time"
)

// memLease is what is remembered of a lease's op.
type memLease struct {
	seq      int64        // the last call applied
	last     LeaseReceipt // its result
	charged  int64        // what the lease has charged in all
	refunded int64        // what its refunds gave back in all
	dormant  bool         // open, holding nothing, so without a hold
}

// Lease takes, spends, resizes, renews or closes a lease; see Store.
func (m *Memory) Lease(ctx context.Context, l Lease) (LeaseReceipt, error) {
	if err := l.validate(); err != nil {
		return LeaseReceipt{}, err
	}
	var r LeaseReceipt
	err := m.with(ctx, l.Account, l.Seq == 1, false, func(a *memAccount, now int64) error {
		op := a.ops[l.Op]
		switch {
		case op == nil && l.Seq != 1:
			return fmt.Errorf("%w: no such lease", ErrNotFound)
		case op == nil:
			var err error
			r, err = m.takeLease(a, now, l)
			return err
		case op.kind == 'x' || op.cancelled:
			return ErrCancelled
		case op.kind != 'l':
			return fmt.Errorf("%w: op was used for another kind of operation", ErrConflict)
		case l.Seq == op.lease.seq:
			r = op.lease.last
			r.Replayed = true
			return nil
		case l.Seq < op.lease.seq:
			r = LeaseReceipt{Balance: a.balance(), Replayed: true}
			if hold := a.holds[l.Op]; hold != nil {
				r.Held, r.Expires = hold.amount, time.UnixMilli(hold.expires).UTC()
			}
			return nil
		}
		hold := a.holds[l.Op]
		switch {
		case op.state != 'o' || (hold == nil && !op.lease.dormant):
			if len(l.Charges) > 0 || len(l.Refunds) == 0 || l.Grow > 0 || l.Shrink > 0 || l.Close {
				return ErrGone
			}
			// A closed or expired lease takes refunds alone.
			var err error
			r, err = m.refundLapsed(a, now, op, l)
			return err
		case hold == nil:
			hold = &memHold{}
		}
		var err error
		r, err = m.spendLease(a, now, op, hold, l)
		return err
	})
	return r, err
}

// takeLease applies a lease's first call: it holds up to Grow tokens, at
// least 1.
func (m *Memory) takeLease(a *memAccount, now int64, l Lease) (LeaseReceipt, error) {
	bal := a.balance()
	add := min(l.Grow, bal)
	if add < 1 {
		return LeaseReceipt{}, &InsufficientError{Balance: bal, Price: 1, Held: a.held}
	}
	expires := now + l.TTL.Milliseconds()
	a.held += add
	a.holds[l.Op] = &memHold{amount: add, expires: expires}
	a.add(m.config(), now, Entry{Kind: KindHold, Amount: add, Op: l.Op, Detail: Detail{Reason: ReasonLease}})
	r := LeaseReceipt{Added: add, Held: add, Balance: a.balance(), Expires: time.UnixMilli(expires).UTC()}
	a.ops[l.Op] = &memOp{kind: 'l', state: 'o', lease: &memLease{seq: 1, last: r}}
	return r, nil
}

// spendLease applies a later call on an open lease.
func (m *Memory) spendLease(a *memAccount, now int64, op *memOp, hold *memHold, l Lease) (LeaseReceipt, error) {
	var charge, refund int64
	for _, c := range l.Charges {
		charge += c.Amount
	}
	for _, rf := range l.Refunds {
		refund += rf.Amount
	}
	switch {
	case charge > hold.amount:
		return LeaseReceipt{}, invalid("charges exceed what the lease holds")
	case refund > op.lease.charged+charge-op.lease.refunded:
		return LeaseReceipt{}, invalid("refunds exceed what the lease charged")
	case l.Shrink > hold.amount-charge:
		return LeaseReceipt{}, invalid("shrink exceeds what the lease holds")
	case a.refunded+refund > MaxAmount:
		return LeaseReceipt{}, invalid("refunded total would exceed 2^53-1")
	}
	cfg := m.config()
	epoch := EpochOp(l.Op, l.Seq)
	for _, c := range l.Charges {
		a.charged += c.Amount
		a.held -= c.Amount
		hold.amount -= c.Amount
		a.add(cfg, now, Entry{Kind: KindCharge, Amount: c.Amount, Op: epoch,
			Detail: Detail{Method: c.Method, Route: c.Route, Count: c.Count, Lease: l.Op}})
		a.use(now, c.Line, c.Amount, c.Count)
	}
	for _, rf := range l.Refunds {
		a.refunded += rf.Amount
		a.add(cfg, now, Entry{Kind: KindRefund, Amount: rf.Amount, Op: EpochOp(l.Op, rf.Seq),
			Detail: Detail{Reason: ReasonRefundOn, Count: rf.Count}})
		a.use(now, rf.Line, -rf.Amount, -rf.Count)
	}
	op.lease.charged += charge
	op.lease.refunded += refund
	r := LeaseReceipt{Charged: charge, Refunded: refund}
	switch {
	case l.Close:
		r.Released = hold.amount
	case l.Shrink > 0:
		r.Released = l.Shrink
	case l.Grow > 0:
		r.Added = min(l.Grow, a.balance())
	}
	if r.Released > 0 {
		a.held -= r.Released
		hold.amount -= r.Released
		a.add(cfg, now, Entry{Kind: KindRelease, Amount: r.Released, Op: l.Op, Detail: Detail{Reason: ReasonLease}})
	}
	if r.Added > 0 {
		a.held += r.Added
		hold.amount += r.Added
		a.add(cfg, now, Entry{Kind: KindHold, Amount: r.Added, Op: l.Op, Detail: Detail{Reason: ReasonLease}})
	}
	op.lease.dormant = !l.Close && hold.amount == 0
	switch {
	case l.Close:
		op.state = 'c'
		op.forgetAt = now + m.cfg.OpRetention.Milliseconds()
	case op.lease.dormant:
		// Without a hold, nothing expires it: it is forgotten as Redis
		// forgets its record.
		op.forgetAt = now + l.TTL.Milliseconds() + m.cfg.OpRetention.Milliseconds()
	default:
		op.forgetAt = 0
	}
	if hold.amount == 0 {
		a.closeHold(l.Op)
	} else {
		hold.expires = now + l.TTL.Milliseconds()
		a.holds[l.Op] = hold
		r.Expires = time.UnixMilli(hold.expires).UTC()
	}
	r.Held = hold.amount
	r.Balance = a.balance()
	r.Draining = a.drained > 0 && now-a.drained <= l.Drain.Milliseconds()
	op.lease.seq, op.lease.last = l.Seq, r
	return r, nil
}

// refundLapsed applies a call of refunds alone to a closed or expired
// lease: it gives back what the lease charged, and leaves it as it was.
func (m *Memory) refundLapsed(a *memAccount, now int64, op *memOp, l Lease) (LeaseReceipt, error) {
	var refund int64
	for _, rf := range l.Refunds {
		refund += rf.Amount
	}
	switch {
	case refund > op.lease.charged-op.lease.refunded:
		return LeaseReceipt{}, invalid("refunds exceed what the lease charged")
	case a.refunded+refund > MaxAmount:
		return LeaseReceipt{}, invalid("refunded total would exceed 2^53-1")
	}
	for _, rf := range l.Refunds {
		a.refunded += rf.Amount
		a.add(m.config(), now, Entry{Kind: KindRefund, Amount: rf.Amount, Op: EpochOp(l.Op, rf.Seq),
			Detail: Detail{Reason: ReasonRefundOn, Count: rf.Count}})
		a.use(now, rf.Line, -rf.Amount, -rf.Count)
	}
	op.lease.refunded += refund
	r := LeaseReceipt{Refunded: refund, Balance: a.balance()}
	op.lease.seq, op.lease.last = l.Seq, r
	return r, nil
}
