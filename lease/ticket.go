package lease

import (
	"github.com/tollgate-dev/tollgate/meter"
)

// Ticket is one request's payment from a lease, made when it is taken: the
// lease's next call charges it. Unpay gives it back, and Done ends the
// request. Its methods are for one request's goroutines, one at a time.
type Ticket struct {
	l      *lease
	k      tally
	amount int64
	seq    int64  // the call that charges it
	op     string // that call's op

	// balance is what the caller could still spend when it was taken: the
	// store's available balance as of the lease's last call, plus what the
	// lease still holds.
	balance int64

	unpaid bool
}

// Balance returns what the caller could still spend when the ticket was
// taken.
func (t *Ticket) Balance() int64 { return t.balance }

// Op returns the op of the charge entry that carries the ticket's payment:
// the lease's op followed by the number of the call that charges it.
func (t *Ticket) Op() string { return t.op }

// Unpay gives the ticket's tokens back: to the lease, before its call has
// charged them, and to the balance, with the lease's next call, after.
// Giving back twice gives back once.
func (t *Ticket) Unpay() {
	if t.unpaid {
		return
	}
	t.unpaid = true
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.phase == closed && t.seq > l.applied:
		// The lease closed before a call charged the ticket: nothing was
		// charged, and Lost counted it.
	case l.phase == closed:
		l.salvage(nil, []meter.LeaseRefund{{Seq: t.seq, Line: t.k.line, Amount: t.amount, Count: 1}})
	case t.seq == l.seq+1:
		// Not charged yet: take it out of what the next call charges.
		ch := l.spent[t.k]
		ch.Amount -= t.amount
		if ch.Count--; ch.Count == 0 {
			delete(l.spent, t.k)
		}
		l.avail += t.amount
	default:
		k := refundKey{t.seq, t.k.line}
		rf := l.refunds[k]
		if rf == nil {
			rf = &meter.LeaseRefund{Seq: t.seq, Line: t.k.line}
			l.refunds[k] = rf
		}
		rf.Amount += t.amount
		rf.Count++
	}
}

// Done ends the ticket's request. It must be called exactly once.
func (t *Ticket) Done() {
	t.l.mu.Lock()
	t.l.tickets--
	t.l.mu.Unlock()
}
