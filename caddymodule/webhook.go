package caddymodule

import (
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/checkout"
)

func init() {
	caddy.RegisterModule(WebhookHandler{})
	httpcaddyfile.RegisterHandlerDirective("tollgate_webhook", parseWebhookHandler)
	httpcaddyfile.RegisterDirectiveOrder("tollgate_webhook", httpcaddyfile.After, "forward_auth")
}

// WebhookHandler takes Stripe's event deliveries for the stripe block of
// the tollgate global option: a paid Checkout Session is credited once, and
// a refund or dispute takes back its share. It answers 400 to a delivery it
// cannot verify, 503 when the store or Stripe is down (Stripe delivers
// again), and 200 otherwise. It serves POST only, on any path it is given.
type WebhookHandler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (WebhookHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_webhook",
		New: func() caddy.Module { return new(WebhookHandler) },
	}
}

// Provision finds the tollgate app, which must sell through Stripe.
func (h *WebhookHandler) Provision(ctx caddy.Context) error {
	app, err := ctx.App("tollgate")
	if err != nil {
		return fmt.Errorf("getting the tollgate app: %w", err)
	}
	h.app = app.(*App)
	if h.app.seller == nil {
		return fmt.Errorf("the tollgate_webhook directive needs stripe in the tollgate global option")
	}
	return nil
}

// ServeHTTP verifies and applies one delivery.
func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !allow(w, r, http.MethodPost) {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, checkout.MaxEventBytes+1))
	if err != nil || len(body) > checkout.MaxEventBytes {
		metricStripeEvents.WithLabelValues(string(checkout.Refused)).Inc()
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "The delivery could not be read, or is over 1 MiB.", nil)
		return nil
	}
	status, outcome := h.app.seller.Deliver(r.Context(), body, r.Header.Get("Stripe-Signature"))
	metricStripeEvents.WithLabelValues(string(outcome)).Inc()
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, status, struct {
		Outcome checkout.Outcome `json:"outcome"`
	}{outcome})
	return nil
}

// parseWebhookHandler parses the tollgate_webhook directive, which takes no
// arguments besides its matcher.
func parseWebhookHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	if h.NextArg() || h.NextBlock(0) {
		return nil, h.Err("tollgate_webhook takes only a matcher")
	}
	return new(WebhookHandler), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*WebhookHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*WebhookHandler)(nil)
)
