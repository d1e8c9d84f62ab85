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

	// Shadow prices and counts every request as usual but charges nothing
	// and calls no store: what each would have cost goes to
	// tollgate_shadow_tokens_total{route} and the var tollgate.shadow. It is
	// how a price is tried on live traffic. Default: false.
	Shadow bool `json:"shadow,omitempty"`

	app      *App
	refundOn refundSet
	logger   *zap.Logger
}

// Price is one price line.
type Price struct {
	// MatcherSetsRaw selects the requests this price applies to. Default:
	// every request.
	MatcherSetsRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`

	// Route names the price in the ledger and in usage. Default: the
	// request's path in the ledger, and "*" in usage.
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
	rw := &responseWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, charged: "0"}
	if !ok {
		countFree.Inc()
		caddyhttp.SetVar(r.Context(), "tollgate.charged", 0)
		return next.ServeHTTP(rw, r)
	}
	if h.Shadow {
		countShadow.Inc()
		return h.shadow(rw, r, next, price)
	}

	// The store stays open for this request even if a config reload
	// lets go of it meanwhile.
	defer h.app.store.Use()()
	// Money moves on a context the client cannot cancel: a disconnect never
	// leaves an outcome unknown.
	ctx := context.WithoutCancel(r.Context())
	var p payer
	if price.compound != nil {
		p, err = h.hold(ctx, rw, r, account, price)
	} else {
		p, err = h.pay(ctx, rw, r, account, price)
	}
	if p == nil {
		return err
	}
	return forward(rw, r, next, p)
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
		return false, writeProblem(w, r, insufficient(short, h.app.TopupURL))
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

// route is what the ledger records of the price: its name, or the path (at
// most meter.MaxLabel bytes of it).
func (p *Price) route(r *http.Request) string {
	if p.Route != "" {
		return p.Route
	}
	return label(r.URL.Path)
}

// line is the name usage counts the price's requests under: its route, or
// "*". Unlike a path, it is bounded by the config.
func (p *Price) line() string {
	if p.Route != "" {
		return p.Route
	}
	return meter.DefaultLine
}

// label cuts a method or path the client chose to what the ledger records.
func label(s string) string {
	return s[:min(len(s), meter.MaxLabel)]
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
