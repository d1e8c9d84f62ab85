package lease

import (
	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
)

// Ticket is one request's payment from a lease. Its tokens are set aside
// when it is taken; Pay charges them with the lease's next call, Unpay gives
// them back, and Done ends the request, paying it if neither was called.
// Its methods are for one request's goroutines, one at a time.
type Ticket struct {
	l      *lease
	method string
	route  string
	amount int64

	// balance is what the caller could still spend when it was taken: the
	// store's available balance as of the lease's last call, plus what the
	// lease still holds.
	balance int64

	state ticketState
	seq   int64  // the call that charges it, once paid
	op    string // that call's op, once paid
}

// ticketState is where a ticket stands.
type ticketState uint8

const (
	ticketTaken  ticketState = iota // set aside; the outcome is not known yet
	ticketPaid                      // charged with the call seq
	ticketUnpaid                    // given back: the request pays nothing
	ticketDone                      // the request is over
)

// Amount returns the tokens the ticket pays.
func (t *Ticket) Amount() int64 { return t.amount }

// Balance returns what the caller could still spend when the ticket was
// taken.
func (t *Ticket) Balance() int64 { return t.balance }

// Op returns the op of the charge entry that carries the ticket's payment:
// the lease's op followed by the number of the call that charges it. It is
// known once the ticket is paid; before, it is the op of the lease's next
// call.
func (t *Ticket) Op() string {
	if t.op != "" {
		return t.op
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	return t.l.epochOp
}

// Pay charges the ticket with the lease's next call and returns that
// call's op. Paying twice pays once.
func (t *Ticket) Pay() string {
	if t.state != ticketTaken {
		return t.op
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	t.state = ticketPaid
	l.pending -= t.amount
	t.seq, t.op = l.seq+1, l.epochOp
	if l.closed {
		// The lease is gone from the store; so are the tokens set aside.
		if l.m.cfg.Lost != nil {
			l.m.cfg.Lost(t.amount)
		}
		return t.op
	}
	k := tally{t.method, t.route}
	ch := l.spent[k]
	if ch == nil {
		ch = &meter.LeaseCharge{Method: t.method, Route: t.route}
		l.spent[k] = ch
	}
	ch.Amount += t.amount
	ch.Count++
	return t.op
}

// Unpay gives the ticket's tokens back: to the lease, before its call has
// charged them, and to the balance, with the lease's next call, after.
func (t *Ticket) Unpay() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case t.state == ticketTaken:
		l.pending -= t.amount
		if !l.closed {
			l.avail += t.amount
		}
	case t.state != ticketPaid:
		return
	case l.closed:
		l.m.cfg.Logger.Error("a refund of a lease's charge came after the lease was closed; it is not refunded",
			zap.String("op", t.op), zap.Int64("tokens", t.amount))
	case t.seq == l.seq+1:
		// Not charged yet: take it out of what the next call charges.
		k := tally{t.method, t.route}
		ch := l.spent[k]
		ch.Amount -= t.amount
		if ch.Count--; ch.Count == 0 {
			delete(l.spent, k)
		}
		l.avail += t.amount
	default:
		rf := l.refunds[t.seq]
		if rf == nil {
			rf = &meter.LeaseRefund{Seq: t.seq}
			l.refunds[t.seq] = rf
		}
		rf.Amount += t.amount
		rf.Count++
	}
	t.state = ticketUnpaid
}

// Done ends the ticket's request, paying it unless it was paid or given
// back. It must be called exactly once.
func (t *Ticket) Done() {
	if t.state == ticketTaken {
		t.Pay()
	}
	t.state = ticketDone
	t.l.mu.Lock()
	t.l.tickets--
	t.l.mu.Unlock()
}
