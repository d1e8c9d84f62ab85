package lease

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
)

// lease is one account's lease on this gateway. Its tokens are, at every
// moment, what the store holds for it: avail, not spent yet, and what
// requests spent since the last call (spent), which the next call charges.
//
// Its life is its phase. A call that finds the lease gone in the store
// closes it at once.
type lease struct {
	m       *Manager
	account string
	op      string

	mu       sync.Mutex
	phase    phase
	draining bool         // give back what is not needed: a request was refused for the balance
	busy     bool         // a store call is in flight
	call     *meter.Lease // the call to send again until its outcome is known
	seq      int64        // the last call made
	applied  int64        // the last call the store acknowledged
	epochOp  string       // the op that the next call's charges carry
	avail    int64
	tickets  int64 // requests that hold a ticket of this lease
	spent    map[tally]*meter.LeaseCharge
	refunds  map[refundKey]*meter.LeaseRefund
	balance  int64     // the store's available balance, as last seen
	lastAck  time.Time // when the last acknowledged call was first sent
	callSent time.Time // when the call in flight was first sent
	started  time.Time // when the first call was first sent
	lastFill time.Time // when the rate was last measured
	lastAsk  time.Time // when a request last asked the lease to pay
	asked    int64     // tokens asked of the lease since lastFill, paid or not
	rate     float64   // tokens asked per second, smoothed
	largest  int64     // the largest price asked of it

	smu       sync.Mutex
	queue     []salvaged // calls a closed lease sends in the background, in order
	salvaging bool       // a background retry sends them
}

// phase is where a lease stands in its life.
type phase uint8

const (
	taking  phase = iota // its first call is in flight
	open                 // it pays requests
	closing              // it is given back, and closed once no request holds a ticket of it
	closed               // gone from the store, or given back: it leaves the Manager
)

// maxTallies bounds the charge entries of one call: the methods and routes
// that a lease pays for between two calls.
const maxTallies = 64

// tally is what a lease's charge entry is by: method, route and price line.
type tally struct{ method, route, line string }

// refundKey is what a lease's refund entry is by: the call that charged
// the requests, and their price line.
type refundKey struct {
	seq  int64
	line string
}

// newLease returns a lease about to be taken on an account whose balance was
// last seen at balance, after a request for amount.
func newLease(m *Manager, account string, balance, amount int64) *lease {
	l := &lease{
		m: m, account: account, op: newOp(),
		balance: balance, largest: amount, asked: amount,
		spent:   map[tally]*meter.LeaseCharge{},
		refunds: map[refundKey]*meter.LeaseRefund{},
	}
	l.epochOp = meter.EpochOp(l.op, 2)
	return l
}

// take pays amount from the lease, if it can pay it now: the lease's next
// call charges it. When the lease holds too little, it reports that a call
// should grow it now rather than at the next flush.
func (l *lease) take(method, route, line string, amount int64) (t Ticket, ok, grow bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked += amount
	l.largest = max(l.largest, amount)
	l.lastAsk = time.Now()
	if l.phase != open || l.draining || time.Since(l.lastAck) >= l.m.cfg.TTL/2 {
		return Ticket{}, false, false
	}
	if l.avail < amount {
		return Ticket{}, false, !l.busy && time.Since(l.lastFill) >= l.m.cfg.Flush/8
	}
	if len(method) > meter.MaxLabel || len(route) > meter.MaxLabel || len(line) > meter.MaxLabel {
		// The store would refuse the call that charges it.
		return Ticket{}, false, false
	}
	k := tally{method, route, line}
	ch := l.spent[k]
	if ch == nil {
		if len(l.spent) >= maxTallies {
			// Routes named by the path are the client's choice: beyond
			// this many, requests are charged on their own.
			return Ticket{}, false, false
		}
		ch = &meter.LeaseCharge{Method: method, Route: route, Line: line}
		l.spent[k] = ch
	}
	l.avail -= amount
	l.tickets++
	ch.Amount += amount
	ch.Count++
	return Ticket{l: l, k: k, amount: amount, seq: l.seq + 1, op: l.epochOp, balance: l.balance + l.avail}, true, false
}

// observe records the account's available balance, seen by a request
// charged on its own.
func (l *lease) observe(balance int64) {
	l.mu.Lock()
	l.balance = balance
	l.mu.Unlock()
}

// target is how many unspent tokens the lease should hold: its fixed size,
// or what is asked of it in two flushes at its recent rate, and at least
// four times the largest price asked; never more than a quarter of what the
// account has available, so that a low balance is not stranded on one
// gateway. 0 means give it back.
func (l *lease) target() int64 {
	t := l.m.cfg.Size
	if t == 0 {
		t = max(int64(math.Ceil(2*l.rate*l.m.cfg.Flush.Seconds())), 4*l.largest)
	}
	t = min(t, (l.balance+l.avail)/4)
	if t < l.largest {
		return 0
	}
	return t
}

// slow reports a lease asked for fewer than leaseAfter/4 requests a flush
// at its recent rate: charging them one by one costs less.
func (l *lease) slow() bool {
	return l.rate*l.m.cfg.Flush.Seconds() < float64(leaseAfter/4*l.largest)
}

// plan returns the lease's next store call, and marks it in flight: the
// call whose outcome is unknown again, or a new one that charges what was
// spent, gives back refunds, resizes the lease and renews it. It reports
// false when a call is in flight or there is nothing to send, and closes a
// lease too small to take.
func (l *lease) plan() (meter.Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy || l.phase == closed {
		return meter.Lease{}, false
	}
	if l.call != nil {
		l.busy = true
		return *l.call, true
	}
	cfg := l.m.cfg
	c := meter.Lease{Account: l.account, Op: l.op, Seq: l.seq + 1, TTL: cfg.TTL, Drain: 4 * cfg.Flush}
	if l.seq == 0 {
		size := cfg.Size
		if size == 0 {
			size = 16 * l.largest
		}
		if c.Grow = min(size, l.balance/4); c.Grow < l.largest {
			l.phase = closed
			return meter.Lease{}, false
		}
		l.started, l.lastFill, l.lastAsk = time.Now(), time.Now(), time.Now()
	} else {
		l.fill(&c)
	}
	if !l.worth(c) {
		return meter.Lease{}, false
	}
	l.seq = c.Seq
	l.epochOp = meter.EpochOp(l.op, l.seq+1)
	l.call, l.busy, l.callSent = &c, true, time.Now()
	return c, true
}

// fill puts into c what was spent and refunded since the last call, and
// how the lease is resized.
func (l *lease) fill(c *meter.Lease) {
	for _, ch := range l.spent {
		c.Charges = append(c.Charges, *ch)
	}
	slices.SortFunc(c.Charges, func(a, b meter.LeaseCharge) int {
		return cmp.Or(strings.Compare(a.Method, b.Method), strings.Compare(a.Route, b.Route), strings.Compare(a.Line, b.Line))
	})
	clear(l.spent)
	c.Refunds = l.takeRefunds()

	now := time.Now()
	quiet := now.Sub(l.lastAsk) >= idleFlushes*l.m.cfg.Flush
	if elapsed := now.Sub(l.lastFill).Seconds(); elapsed > 0 {
		rate := float64(l.asked) / elapsed
		if l.rate == 0 {
			l.rate = rate
		}
		l.rate = (l.rate + rate) / 2
	}
	l.asked, l.lastFill = 0, now
	target := l.target()
	switch {
	case l.phase == closing || l.draining || quiet || target == 0 || l.slow() ||
		l.balance+l.avail < l.m.cfg.MinBalance:
		// Give back all that no request is spending; close the lease
		// once none is.
		l.phase = closing
		c.Close = l.tickets == 0
		if !c.Close {
			c.Shrink = l.avail
		}
		l.avail = 0
	case l.avail < target/2:
		c.Grow = target - l.avail
	case l.avail > 2*target:
		c.Shrink = l.avail - target
		l.avail = target
	}
}

// takeRefunds takes the refunds that wait for the lease's next call, the
// oldest first, at most as many as a call takes. Called with mu held.
func (l *lease) takeRefunds() []meter.LeaseRefund {
	var refunds []meter.LeaseRefund
	for _, rf := range l.refunds {
		refunds = append(refunds, *rf)
	}
	slices.SortFunc(refunds, func(a, b meter.LeaseRefund) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), strings.Compare(a.Line, b.Line))
	})
	refunds = refunds[:min(len(refunds), meter.MaxLeaseParts)]
	for _, rf := range refunds {
		delete(l.refunds, refundKey{rf.Seq, rf.Line})
	}
	return refunds
}

// worth reports that c does something the lease needs now: it takes the
// lease, charges or refunds, resizes or closes it, or renews it in time.
// A lease that holds unspent tokens calls every flush all the same, so that
// it learns within a flush that the account is draining.
func (l *lease) worth(c meter.Lease) bool {
	return c.Seq == 1 || len(c.Charges) > 0 || len(c.Refunds) > 0 || c.Grow > 0 || c.Shrink > 0 || c.Close ||
		time.Since(l.lastAck) >= l.m.cfg.TTL/4 || l.avail > 0 && time.Since(l.lastAck) >= l.m.cfg.Flush
}

// acked records the outcome of call c, and reports whether the lease is
// closed and leaves its Manager. A lease that closes while refunds wait for
// it, or with a call whose refunds did not apply, hands them to the store's
// background retries, as calls of refunds alone.
func (l *lease) acked(c meter.Lease, r meter.LeaseReceipt, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy = false
	log := l.m.cfg.Logger
	var short *meter.InsufficientError
	switch {
	case err == nil:
		l.call, l.applied = nil, c.Seq
		// A call sent again counts from when it was first sent: the store
		// may have applied it then.
		l.lastAck, l.balance = l.callSent, r.Balance
		l.draining = l.draining || r.Draining
		if l.phase == taking {
			l.phase = open
		}
		if c.Close {
			l.close(0, nil, nil)
			break
		}
		// What the store holds for the lease is what it has not spent and
		// what it spent since the call: follow the store, should a
		// failover have lost a call the gateway counted.
		spent := int64(0)
		for _, ch := range l.spent {
			spent += ch.Amount
		}
		if avail := max(r.Held-spent, 0); avail != l.avail+r.Added {
			log.Warn("lease holds other than the gateway counted; following the store",
				zap.String("op", l.op), zap.Int64("held", r.Held), zap.Int64("counted", l.avail+r.Added+spent))
		}
		l.avail = max(r.Held-spent, 0)
	case errors.Is(err, meter.ErrUnavailable):
		// Its outcome is unknown: the same call goes again. A lease that
		// the store cannot have kept is given up, and the call is sent
		// again in the background until its outcome is known.
		since := l.lastAck
		if l.seq == 1 {
			since = l.started
		}
		if time.Since(since) >= l.m.cfg.TTL {
			log.Error("lease not acknowledged before it expired; giving it up",
				zap.String("op", l.op), zap.Error(err))
			l.close(charged(c), &c, nil)
		}
	case errors.As(err, &short):
		// The first call found too little to lease.
		l.close(0, nil, nil)
	case errors.Is(err, meter.ErrGone), errors.Is(err, meter.ErrNotFound), errors.Is(err, meter.ErrCancelled):
		log.Warn("lease gone from the store: what it spent since its last call is not charged",
			zap.String("op", l.op), zap.Int64("tokens", charged(c)))
		l.close(charged(c), nil, c.Refunds)
	default:
		log.Error("lease call refused", zap.String("op", l.op), zap.Error(err))
		l.close(charged(c), nil, c.Refunds)
	}
	return l.phase == closed
}

// close closes the lease, reporting lost tokens: those of its last call and
// those spent since, which will never be charged. The refunds of a call
// that did not apply, and those still waiting, go to the store's
// background retries; so does unknown, a call whose outcome is not known,
// first. Called with mu held.
func (l *lease) close(lost int64, unknown *meter.Lease, refunds []meter.LeaseRefund) {
	l.phase, l.call = closed, nil
	for _, ch := range l.spent {
		lost += ch.Amount
	}
	clear(l.spent)
	l.avail = 0
	if lost > 0 && l.m.cfg.Lost != nil {
		l.m.cfg.Lost(lost)
	}
	for len(l.refunds) > 0 {
		refunds = append(refunds, l.takeRefunds()...)
	}
	if unknown != nil || len(refunds) > 0 {
		l.salvage(unknown, refunds)
	}
}

// salvage sends, in the background until the store acknowledges them, a
// call whose outcome is unknown, then the refunds of a closed lease, as
// calls of refunds alone, each with the next sequence number, in order.
// Called with mu held.
func (l *lease) salvage(unknown *meter.Lease, refunds []meter.LeaseRefund) {
	var calls []salvaged
	if unknown != nil {
		calls = append(calls, salvaged{call: *unknown})
	}
	for len(refunds) > 0 {
		n := min(len(refunds), meter.MaxLeaseParts)
		l.seq++
		calls = append(calls, salvaged{call: meter.Lease{Account: l.account, Op: l.op, Seq: l.seq, TTL: l.m.cfg.TTL, Refunds: refunds[:n]}})
		refunds = refunds[n:]
	}
	if unknown != nil && len(unknown.Refunds) > 0 {
		// Its refunds, should it turn out not to have applied.
		l.seq++
		calls = append(calls, salvaged{call: meter.Lease{Account: l.account, Op: l.op, Seq: l.seq, TTL: l.m.cfg.TTL, Refunds: unknown.Refunds}, ifNot: true})
	}
	l.smu.Lock()
	l.queue = append(l.queue, calls...)
	start := !l.salvaging
	l.salvaging = true
	l.smu.Unlock()
	if start {
		l.m.store.Retry(l.sendSalvaged)
	}
}

// salvaged is a call that a closed lease sends in the background.
type salvaged struct {
	call  meter.Lease
	ifNot bool // sent only if the call before it did not apply
}

// sendSalvaged sends the closed lease's calls in order, and returns the
// error of one whose outcome is still unknown, to be called again.
func (l *lease) sendSalvaged(ctx context.Context) error {
	applied := true
	for {
		l.smu.Lock()
		if len(l.queue) == 0 {
			l.salvaging = false
			l.smu.Unlock()
			return nil
		}
		s := l.queue[0]
		l.smu.Unlock()
		var err error
		if !s.ifNot || !applied {
			_, err = l.m.store.Lease(ctx, s.call)
			if errors.Is(err, meter.ErrUnavailable) {
				return err
			}
			if err != nil && len(s.call.Charges) == 0 {
				l.m.cfg.Logger.Error("refunds of a closed lease refused", zap.String("op", l.op), zap.Error(err))
			}
		}
		applied = err == nil
		l.smu.Lock()
		l.queue = l.queue[1:]
		l.smu.Unlock()
	}
}

// isClosed reports that the lease is closed.
func (l *lease) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.phase == closed
}

// charged is what call c charges.
func charged(c meter.Lease) int64 {
	var n int64
	for _, ch := range c.Charges {
		n += ch.Amount
	}
	return n
}
