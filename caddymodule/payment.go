package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/notify"
	"github.com/tollgate-dev/tollgate/pricing"
)

// pay pays a per-request price up front: from the account's lease when it
// has one that can pay it, otherwise with a charge of its own. A charge
// refused for the balance while tokens are held waits for lease holders to
// give theirs back before it is refused. It returns the payer, or nil when
// the request was answered instead (err is then what to return).
func (h *Handler) pay(ctx context.Context, rw *responseWriter, r *http.Request, account string, price *Price) (payer, error) {
	route, method := price.route(r), label(r.Method)
	leases := h.app.leases
	if leases != nil {
		if t, ok := leases.Take(account, method, route, price.line(), price.Amount); ok {
			countPaid.Inc()
			l := &leased{t: t}
			h.paid(&l.perRequest, rw, r, t.Op(), price.Amount, t.Balance())
			return l, nil
		}
	}
	c := meter.Charge{
		Account: account,
		Op:      newOp('c'),
		Amount:  price.Amount,
		Method:  method,
		Route:   route,
		Line:    price.line(),
		Bonus:   h.app.SignupBonus,
	}
	var receipt meter.Receipt
	depleted, err := h.attempt(ctx, account, time.Now(), storeCharge, func() (err error) {
		receipt, err = h.app.store.Charge(ctx, c)
		return err
	})
	if err != nil {
		return h.refusedPayer(rw, r, account, c.Op, err, depleted, nil)
	}
	if leases != nil {
		leases.Observe(account, receipt.Balance, price.Amount)
	}
	countPaid.Inc()
	tokensCharged.Add(float64(receipt.Amount))
	ch := &charge{ctx: ctx, account: account}
	h.paid(&ch.perRequest, rw, r, c.Op, receipt.Amount, receipt.Balance)
	return ch, nil
}

// paid records in p, and in the request's headers and placeholders, a
// per-request payment of amount, after which the caller can still spend
// balance.
func (h *Handler) paid(p *perRequest, rw *responseWriter, r *http.Request, op string, amount, balance int64) {
	p.h, p.op, p.amount = h, op, amount
	p.charged.Store(amount)
	p.balance.Store(balance)
	rw.op = op
	rw.charged = strconv.FormatInt(amount, 10)
	rw.balance = strconv.FormatInt(balance, 10)
	// Once the request is forwarded, the vars map must not be written: the
	// proxy's transport reads it from other goroutines. These values change
	// in place instead.
	caddyhttp.SetVar(r.Context(), "tollgate.op", op)
	caddyhttp.SetVar(r.Context(), "tollgate.charged", &p.charged)
	caddyhttp.SetVar(r.Context(), "tollgate.balance", &p.balance)
}

// attempt makes an up-front charge or hold with try, timing its first call,
// sent at start, in observer. Refused for the balance while tokens are
// held, it waits for lease holders to give theirs back and tries again. It
// reports whether the store marked a refusal as the account's first in an
// hour.
func (h *Handler) attempt(ctx context.Context, account string, start time.Time, observer prometheus.Observer, try func() error) (depleted bool, err error) {
	err = try()
	observeSince(observer, start)
	var short *meter.InsufficientError
	depleted = errors.As(err, &short) && short.Depleted
	if leases := h.app.leases; leases != nil && short != nil && short.Held > 0 {
		err = leases.Drain(ctx, account, func() error {
			err := try()
			depleted = depleted || (errors.As(err, &short) && short.Depleted)
			return err
		})
	}
	return depleted, err
}

// refusedPayer answers a request whose up-front payment failed, or, when
// it is forwarded unbilled instead, returns the payer of an unbilled
// request, which keeps the usage report of usage (if not nil) from the
// client. depleted says the store marked the account's refusal as the
// first in an hour.
func (h *Handler) refusedPayer(rw *responseWriter, r *http.Request, account, op string, err error, depleted bool, usage *pricing.Usage) (payer, error) {
	rw.op = op
	caddyhttp.SetVar(r.Context(), "tollgate.op", op)
	var short *meter.InsufficientError
	if depleted && errors.As(err, &short) {
		h.app.tell(notify.Event{Type: notify.Depleted, Account: account, Balance: short.Balance})
	}
	forward, err := h.refused(rw.ResponseWriterWrapper.ResponseWriter, r, op, err)
	if !forward {
		return nil, err
	}
	return unpaid{usage: usage}, nil
}

// perRequest is what a charge and a lease's ticket share: a per-request
// price paid up front, and given back at most once for an outcome that
// refund_on lists.
type perRequest struct {
	h                *Handler
	op               string
	amount           int64
	charged, balance liveAmount
	given            bool
}

// settle gives the payment back with giveBack when refund_on lists the
// outcome (status, or aborted), unless the client caused it, and then sets
// the values of Tollgate's headers on w.
func (p *perRequest) settle(w *responseWriter, status int, aborted, clientGone bool, giveBack func() (int64, bool)) {
	refund := status != 0 && p.h.refundOn.status(status) || aborted && p.h.refundOn.aborted
	if !refund || clientGone || p.given {
		return
	}
	p.given = true
	if balance, ok := giveBack(); ok {
		p.charged.Store(0)
		p.balance.Store(balance)
		w.charged, w.balance = "0", strconv.FormatInt(balance, 10)
	}
}

// charge is a request's charge of its own.
type charge struct {
	perRequest
	ctx     context.Context // detached from the client
	account string
}

// header refunds the charge for a status refund_on lists.
func (c *charge) header(w *responseWriter, status int) {
	c.settle(w, status, false, false, c.refund)
}

// end refunds the charge for an outcome refund_on lists.
func (c *charge) end(w *responseWriter, o outcome) {
	c.settle(w, o.status, o.aborted, o.clientGone, c.refund)
}

// refund gives the charge back, retrying in the background if the store
// cannot be reached now.
func (c *charge) refund() (int64, bool) {
	r, ok := c.h.refund(c.ctx, c.account, c.op, c.amount)
	return r.Balance, ok
}

// leased is a request paid by a ticket of its account's lease.
type leased struct {
	perRequest
	t lease.Ticket
}

// header gives the ticket back for a status refund_on lists.
func (l *leased) header(w *responseWriter, status int) {
	l.settle(w, status, false, false, l.refund)
}

// end gives the ticket back for an outcome refund_on lists, and ends it.
func (l *leased) end(w *responseWriter, o outcome) {
	l.settle(w, o.status, o.aborted, o.clientGone, l.refund)
	l.t.Done()
}

// refund gives the ticket back: the lease's next call does not charge it,
// or refunds it.
func (l *leased) refund() (int64, bool) {
	l.t.Unpay()
	return l.t.Balance() + l.amount, true
}

// unpaid is a request forwarded without payment: free, or unbilled because
// the store could not be reached under on_store_error allow. A usage report
// still stays with the gateway.
type unpaid struct {
	usage *pricing.Usage
}

// header removes the usage report and its announcement.
func (u unpaid) header(w *responseWriter, _ int) {
	if u.usage != nil {
		delete(w.Header(), u.usage.Header)
		unannounce(w.Header(), u.usage.Header)
	}
}

// end removes the usage trailer.
func (u unpaid) end(w *responseWriter, _ outcome) {
	if u.usage != nil {
		stripTrailer(w.Header(), u.usage.Header)
	}
}

// hold holds a compound price's up-front amount for a request: the payer
// then meters the request's bytes against the hold. A price whose up-front
// amount is 0 (request bytes only, of an empty body) is free. A hold refused
// for the balance while tokens are held waits for lease holders to give
// theirs back before it is refused, as a charge does.
func (h *Handler) hold(ctx context.Context, rw *responseWriter, r *http.Request, account string, price *Price) (payer, error) {
	w := rw.ResponseWriterWrapper.ResponseWriter
	c := price.compound
	// A body of unknown length (chunked), and what a client sends over an
	// upgraded connection, are metered as they pass; a body with a
	// Content-Length is paid up front.
	reqBytes := max(r.ContentLength, 0)
	if c.RequestBytes != nil && (r.ContentLength < 0 || isUpgrade(r)) {
		reqBytes = -1
	}
	maxHold, minHold, err := c.UpFront(reqBytes)
	if err != nil {
		w.Header().Set("Tollgate-Charged", "0")
		return nil, writeProblem(w, r, priceTooLarge())
	}
	if maxHold == 0 {
		countFree.Inc()
		caddyhttp.SetVar(r.Context(), "tollgate.charged", 0)
		return unpaid{}, nil
	}
	fixed := minHold // less the first unit of each metered flow
	if c.ResponseBytes != nil {
		fixed -= c.ResponseBytes.Amount
	}
	if reqBytes < 0 {
		fixed -= c.RequestBytes.Amount
	}
	op := newOp('h')
	hold := meter.Hold{
		Account: account,
		Op:      op,
		Max:     maxHold,
		Min:     minHold,
		TTL:     h.app.holdExpiry(),
		Method:  label(r.Method),
		Route:   price.route(r),
		Line:    price.line(),
		Bonus:   h.app.SignupBonus,
	}
	var receipt meter.Receipt
	start := time.Now()
	depleted, err := h.attempt(ctx, account, start, storeHold, func() (err error) {
		receipt, err = h.app.store.Hold(ctx, hold)
		return err
	})
	if err != nil {
		return h.refusedPayer(rw, r, account, op, err, depleted, c.Usage)
	}
	countPaid.Inc()
	rw.op = op
	caddyhttp.SetVar(r.Context(), "tollgate.op", op)
	hr := newHeld(ctx, h, c, account, op, receipt, fixed, reqBytes, start)
	caddyhttp.SetVar(r.Context(), "tollgate.charged", hr.charged)
	caddyhttp.SetVar(r.Context(), "tollgate.balance", hr.balanceVar)
	rw.meter, rw.head = hr, r.Method == http.MethodHead
	if reqBytes < 0 {
		r.Body = &heldBody{ReadCloser: r.Body, hr: hr}
	}
	return hr, nil
}

// Interface guards
var (
	_ payer  = (*charge)(nil)
	_ payer  = (*leased)(nil)
	_ payer  = unpaid{}
	_ payer  = (*held)(nil)
	_ cutter = (*held)(nil)
)
