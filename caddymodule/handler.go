package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/pricing"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler meters requests: it authenticates the caller by JWT, prices the
// request by the first price whose matchers match, charges the caller's
// balance, and only then passes the request on.
type Handler struct {
	// Prices are tried in order; the first whose matchers match prices the
	// request. A request that no price matches is free.
	Prices []Price `json:"prices,omitempty"`

	// RefundOn lists the outcomes whose charge is refunded: "5xx", "4xx", a
	// status code, or "error". Default: ["5xx"].
	RefundOn []string `json:"refund_on,omitempty"`

	app      *App
	refundOn refundSet
	logger   *zap.Logger
}

// Price is one price line.
type Price struct {
	// MatcherSetsRaw selects the requests this price applies to. Default:
	// every request.
	MatcherSetsRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`

	// Route names the price in the ledger. Default: the request's path.
	Route string `json:"route,omitempty"`

	// Amount is the tokens each matched request costs.
	Amount int64 `json:"amount,omitempty"`

	// Compound is a price by bytes or by reported usage, in place of
	// Amount. Default: none.
	Compound *CompoundPrice `json:"compound,omitempty"`

	matchers caddyhttp.MatcherSets
	compound *pricing.Compound
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the price matchers and finds the tollgate app.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	var err error
	if h.app, err = tollgateApp(ctx, "tollgate"); err != nil {
		return err
	}
	for i := range h.Prices {
		p := &h.Prices[i]
		switch {
		case p.Compound != nil && p.Amount != 0:
			return errors.New("a price has an amount or a compound price, not both")
		case p.Compound != nil:
			c, err := p.Compound.compile()
			if err != nil {
				return fmt.Errorf("compound price: %w", err)
			}
			p.compound = &c
		case p.Amount < 1 || p.Amount > meter.MaxAmount:
			return fmt.Errorf("price amount must be an integer in [1, 2^53-1], not %d", p.Amount)
		}
		mods, err := ctx.LoadModule(p, "MatcherSetsRaw")
		if err != nil {
			return fmt.Errorf("loading price matchers: %w", err)
		}
		if err := p.matchers.FromInterface(mods); err != nil {
			return err
		}
	}
	if h.refundOn, err = parseRefundOn(h.RefundOn); err != nil {
		return err
	}
	return nil
}

// varPriced marks a request priced, so that a later tollgate handler in its
// chain only passes it on.
const varPriced = "tollgate.priced"

// ServeHTTP meters the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if caddyhttp.GetVar(r.Context(), varPriced) != nil {
		return next.ServeHTTP(w, r)
	}
	caddyhttp.SetVar(r.Context(), varPriced, true)
	stripTollgateHeaders(r.Header)
	if isPreflight(r) {
		return next.ServeHTTP(w, r)
	}

	account, err := h.app.authenticate(r)
	if err != nil {
		countUnauthenticated.Inc()
		return writeProblem(w, r, refusedCredentials(err))
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", account)
	r.Header.Set("Tollgate-Account", account)

	price, ok, err := h.price(r)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	rw := &responseWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, charged: "0"}
	if !ok {
		countFree.Inc()
		caddyhttp.SetVar(r.Context(), "tollgate.charged", 0)
		return next.ServeHTTP(rw, r)
	}

	// The store stays open for this request even if a config reload
	// lets go of it meanwhile.
	defer h.app.store.Use()()
	if price.compound != nil {
		return h.serveHeld(rw, r, next, account, price)
	}
	// Money moves on a context the client cannot cancel: a disconnect never
	// leaves an outcome unknown.
	ctx := context.WithoutCancel(r.Context())
	p, err := h.pay(ctx, r, account, price)
	rw.op = p.op
	caddyhttp.SetVar(r.Context(), "tollgate.op", p.op)
	if err != nil {
		if forward, err := h.refused(w, r, p.op, err); !forward {
			return err
		}
		return next.ServeHTTP(rw, r)
	}
	if p.ticket != nil {
		defer p.ticket.Done()
	} else {
		tokensCharged.Add(float64(p.amount))
	}
	countPaid.Inc()
	rw.charged = strconv.FormatInt(p.amount, 10)
	rw.balance = strconv.FormatInt(p.balance, 10)
	// Once the request is forwarded, the vars map must not be written: the
	// proxy's transport reads it from other goroutines. These values change
	// in place instead.
	charged, balance := new(liveAmount), new(liveAmount)
	charged.Store(p.amount)
	balance.Store(p.balance)
	caddyhttp.SetVar(r.Context(), "tollgate.charged", charged)
	caddyhttp.SetVar(r.Context(), "tollgate.balance", balance)

	// A refund known before the headers go out shows in them.
	refund := func(status int) {
		if !h.refundOn.status(status) {
			return
		}
		if after, ok := h.giveBack(ctx, account, p); ok {
			rw.charged, rw.balance = "0", strconv.FormatInt(after, 10)
			charged.Store(0)
			balance.Store(after)
		}
	}
	rw.onHeader = refund
	defer func() {
		// An upstream that fails after the headers went out aborts the
		// response with a panic; a client that left is not refunded.
		if v := recover(); v != nil {
			switch {
			case v == http.ErrAbortHandler && h.refundOn.aborted && r.Context().Err() == nil:
				h.giveBack(ctx, account, p)
			case v != http.ErrAbortHandler && !rw.wroteHeader:
				// Any other panic before the headers is a 500.
				refund(http.StatusInternalServerError)
			}
			panic(v)
		}
	}()
	err = next.ServeHTTP(rw, r)
	if !rw.wroteHeader {
		if err == nil {
			rw.WriteHeader(http.StatusOK)
			return nil
		}
		// Caddy writes the error's status with the headers set now. A
		// client that left is not refunded, whatever status that gave.
		if r.Context().Err() == nil {
			refund(errorStatus(err))
		}
		rw.setHeaders(w.Header())
	}
	return err
}

// payment is a request's payment of a per-request price: a charge of its
// own, or a ticket of a lease.
type payment struct {
	op      string
	amount  int64
	balance int64         // what the caller can still spend after it
	ticket  *lease.Ticket // nil for a charge of its own
}

// pay pays a per-request price up front: from the account's lease when it
// has one that can pay it, otherwise with a charge of its own. A charge
// refused for the balance while tokens are held waits for lease holders to
// give theirs back before it is refused. A charge that a lease would have
// paid has the account leased for the requests that follow.
func (h *Handler) pay(ctx context.Context, r *http.Request, account string, price *Price) (payment, error) {
	route := price.route(r)
	leases := h.app.leases
	if leases != nil {
		if t, ok := leases.Take(account, r.Method, route, price.Amount); ok {
			return payment{op: t.Op(), amount: price.Amount, balance: t.Balance(), ticket: &t}, nil
		}
	}
	c := meter.Charge{
		Account: account,
		Op:      newOp('c'),
		Amount:  price.Amount,
		Method:  r.Method,
		Route:   route,
		Bonus:   h.app.SignupBonus,
	}
	var receipt meter.Receipt
	charge := func() (err error) {
		start := time.Now()
		receipt, err = h.app.store.Charge(ctx, c)
		observeSince(storeCharge, start)
		return err
	}
	err := charge()
	var short *meter.InsufficientError
	if leases != nil && errors.As(err, &short) && short.Held > 0 {
		err = leases.Drain(ctx, account, charge)
	}
	if leases != nil && err == nil {
		leases.Observe(account, receipt.Balance, price.Amount)
	}
	return payment{op: c.Op, amount: receipt.Amount, balance: receipt.Balance}, err
}

// giveBack gives a payment back for a refund_on outcome, and reports the
// caller's balance after it when it is known now.
func (h *Handler) giveBack(ctx context.Context, account string, p payment) (int64, bool) {
	if p.ticket != nil {
		p.ticket.Unpay()
		return p.balance + p.amount, true
	}
	r, ok := h.refund(ctx, account, p.op, p.amount)
	return r.Balance, ok
}

// serveHeld meters a request under a compound price: it holds the up-front
// amount, forwards the request, meters the response against the hold, and
// settles exactly once, whatever way the request ends.
func (h *Handler) serveHeld(rw *responseWriter, r *http.Request, next caddyhttp.Handler, account string, price *Price) error {
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
		return writeProblem(w, r, priceTooLarge())
	}
	if maxHold == 0 {
		// Only the bytes of a body that is empty: nothing to pay.
		countFree.Inc()
		caddyhttp.SetVar(r.Context(), "tollgate.charged", 0)
		return next.ServeHTTP(rw, r)
	}
	fixed := minHold // less the first unit of each metered flow
	if c.ResponseBytes != nil {
		fixed -= c.ResponseBytes.Amount
	}
	if reqBytes < 0 {
		fixed -= c.RequestBytes.Amount
	}
	op := newOp('h')
	rw.op = op
	caddyhttp.SetVar(r.Context(), "tollgate.op", op)
	ctx := context.WithoutCancel(r.Context())
	start := time.Now()
	receipt, err := h.app.store.Hold(ctx, meter.Hold{
		Account: account,
		Op:      op,
		Max:     maxHold,
		Min:     minHold,
		TTL:     h.app.holdExpiry(),
		Method:  r.Method,
		Route:   price.route(r),
		Bonus:   h.app.SignupBonus,
	})
	observeSince(storeHold, start)
	if err != nil {
		if forward, err := h.refused(w, r, op, err); !forward {
			return err
		}
		// Unbilled, but the usage report still stays with the gateway.
		if u := c.Usage; u != nil {
			rw.onHeader = func(int) { delete(rw.Header(), u.Header); unannounce(rw.Header(), u.Header) }
			defer func() { stripTrailer(w.Header(), u.Header) }()
		}
		return next.ServeHTTP(rw, r)
	}
	countPaid.Inc()
	hr := newHeld(ctx, h, c, account, op, receipt, fixed, reqBytes, start)
	caddyhttp.SetVar(r.Context(), "tollgate.charged", hr.charged)
	caddyhttp.SetVar(r.Context(), "tollgate.balance", hr.balanceVar)
	rw.meter, rw.head = hr, r.Method == http.MethodHead
	rw.onHeader = func(status int) { hr.header(rw, status) }
	if reqBytes < 0 {
		r.Body = &heldBody{ReadCloser: r.Body, hr: hr}
	}
	defer func() {
		if p := recover(); p != nil {
			// An abort settles what was delivered; refund_on error releases
			// the hold when the upstream failed, not when the client left
			// or Tollgate cut the response off. Any other panic before the
			// headers is a 500.
			status := 0
			if p != http.ErrAbortHandler && !rw.wroteHeader {
				status = http.StatusInternalServerError
			}
			hr.end(w.Header(), status, p == http.ErrAbortHandler && r.Context().Err() == nil && !hr.isCutOff())
			panic(p)
		}
	}()
	err = next.ServeHTTP(rw, r)
	if !rw.wroteHeader && hr.cutInBody() {
		return hr.refuseUpload(w, r)
	}
	if r.Context().Err() != nil {
		// The client left; reverse_proxy may still report a 502 or 504.
		hr.failedByClient()
	}
	status := 0
	if !rw.wroteHeader {
		if err == nil {
			rw.WriteHeader(http.StatusOK)
		} else {
			status = errorStatus(err)
		}
	}
	hr.end(w.Header(), status, false)
	if status != 0 {
		// Caddy writes the error's status with the headers set now.
		rw.charged = hr.charged.String()
		rw.held = "0"
		rw.balance = hr.balanceVar.String()
		rw.setHeaders(w.Header())
	}
	if hr.isCutOff() {
		// A cut-off must break the connection, also when the handler
		// returned normally: the end of a chunked response would otherwise
		// tell the client it has it all.
		panic(http.ErrAbortHandler)
	}
	return err
}

// refused answers a request whose up-front charge or hold failed, and
// reports whether it is forwarded unbilled instead.
func (h *Handler) refused(w http.ResponseWriter, r *http.Request, op string, err error) (bool, error) {
	var short *meter.InsufficientError
	switch {
	case errors.As(err, &short):
		countInsufficient.Inc()
		w.Header().Set("Tollgate-Charged", "0")
		w.Header().Set("Tollgate-Balance", strconv.FormatInt(short.Balance, 10))
		w.Header().Set("Tollgate-Op", op)
		return false, writeProblem(w, r, insufficient(short))
	case errors.Is(err, meter.ErrUnavailable) && h.app.OnStoreError == OnStoreErrorAllow:
		countUnbilled.Inc()
		h.logger.Warn("store unavailable: forwarding unbilled", zap.String("op", op), zap.Error(err))
		return true, nil
	case errors.Is(err, meter.ErrUnavailable):
		countStoreError.Inc()
		h.logger.Error("store unavailable", zap.String("op", op), zap.Error(err))
		w.Header().Set("Retry-After", "1")
		return false, writeProblem(w, r, storeUnavailable())
	default:
		countStoreError.Inc()
		h.logger.Error("store refused the request's payment", zap.String("op", op), zap.Error(err))
		return false, caddyhttp.Error(http.StatusInternalServerError, err)
	}
}

// errorStatus is the status Caddy answers a handler error with.
func errorStatus(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

// liveAmount is a placeholder value that may change after the request was
// forwarded.
type liveAmount struct{ atomic.Int64 }

// String returns the amount in decimal.
func (a *liveAmount) String() string { return strconv.FormatInt(a.Load(), 10) }

// refund gives the charge back, retrying in the background until the store
// acknowledges if it cannot now. ok reports a refund made now.
func (h *Handler) refund(ctx context.Context, account, op string, amount int64) (meter.Receipt, bool) {
	rf := meter.Refund{Account: account, Op: op, Amount: amount, Reason: meter.ReasonRefundOn}
	start := time.Now()
	r, err := h.app.store.Refund(ctx, rf)
	observeSince(storeRefund, start)
	if err == nil {
		if !r.Replayed {
			tokensRefunded.Add(float64(r.Amount))
		}
		return r, true
	}
	if !errors.Is(err, meter.ErrUnavailable) {
		h.logger.Error("refund refused", zap.String("op", op), zap.Error(err))
		return r, false
	}
	h.logger.Warn("refund failed; retrying in the background", zap.String("op", op), zap.Error(err))
	metricUnsettled.Inc()
	h.app.store.Retry(func(ctx context.Context) error {
		r, err := h.app.store.Refund(ctx, rf)
		if err == nil && !r.Replayed {
			tokensRefunded.Add(float64(r.Amount))
		}
		return err
	})
	return r, false
}

// authenticate returns the caller's account: from the account placeholder,
// or from the single Bearer token in the Authorization header.
func (a *App) authenticate(r *http.Request) (string, error) {
	if a.Account != "" {
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		account := repl.ReplaceAll(a.Account, "")
		if account == "" {
			return "", errNoCredentials
		}
		if !meter.ValidAccount(account) {
			return "", &auth.Error{Description: auth.ReasonBadAccount}
		}
		return account, nil
	}
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", errNoCredentials
	}
	if len(values) > 1 {
		return "", &auth.Error{Description: auth.ReasonMalformed}
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", errNoCredentials
	}
	return a.verifier.Verify(strings.TrimSpace(token))
}

// errNoCredentials is a request without a Bearer token.
var errNoCredentials = errors.New("no credentials")

// price returns the first price whose matchers match r.
func (h *Handler) price(r *http.Request) (*Price, bool, error) {
	for i := range h.Prices {
		p := &h.Prices[i]
		match, err := p.matchers.AnyMatchWithError(r)
		if err != nil {
			return nil, false, err
		}
		if match || len(p.matchers) == 0 {
			return p, true, nil
		}
	}
	return nil, false, nil
}

// route is what the ledger records of the price: its name, or the path.
func (p *Price) route(r *http.Request) string {
	if p.Route != "" {
		return p.Route
	}
	return r.URL.Path
}

// newOp returns a new op id: 128 random bits, and the step suffix of a
// charge (c) or a hold (h).
func newOp(step byte) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-" + string(step)
}

// stripTollgateHeaders removes every header named tollgate-* or tollgate_*,
// in any case, that the client sent.
func stripTollgateHeaders(h http.Header) {
	for name := range h {
		if len(name) > 9 && strings.EqualFold(name[:8], "tollgate") && (name[8] == '-' || name[8] == '_') {
			delete(h, name)
		}
	}
}

// isUpgrade reports a request for a protocol upgrade, such as a WebSocket:
// Upgrade with Connection: upgrade, or a CONNECT (HTTP/2's extended CONNECT).
func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodConnect ||
		(r.Header.Get("Upgrade") != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade"))
}

// isPreflight reports a CORS preflight: OPTIONS with
// Access-Control-Request-Method, no body and no Upgrade.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" &&
		r.ContentLength <= 0 && r.Header.Get("Transfer-Encoding") == "" && r.Header.Get("Upgrade") == ""
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
