package caddymodule

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/checkout"
)

// serveCheckout makes a Stripe Checkout Session for the caller: POST
// {"bundle":"starter","quantity":1} (quantity defaults to 1) answers
// {"url":"https://checkout.stripe.com/…"}. Only JSON, and never a request
// another site's page made, so that no page can make a logged-in browser
// buy.
func (h *AccountHandler) serveCheckout(w http.ResponseWriter, r *http.Request, account string) {
	if !sameSiteJSON(w, r) {
		return
	}
	var body struct {
		Bundle   string `json:"bundle"`
		Quantity *int64 `json:"quantity"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || dec.More() {
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", `The body must be {"bundle":"<name>","quantity":<1-100>}.`, nil)
		return
	}
	quantity := int64(1)
	if body.Quantity != nil {
		quantity = *body.Quantity
	}
	u, err := h.app.seller.Checkout(r.Context(), account, body.Bundle, quantity)
	switch {
	case errors.Is(err, checkout.ErrUnknownBundle), errors.Is(err, checkout.ErrQuantity):
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "No such bundle, or a quantity outside 1-100.", nil)
	case errors.Is(err, checkout.ErrRateLimited):
		w.Header().Set("Retry-After", "6")
		writeAdminProblem(w, http.StatusTooManyRequests, "rate-limited", "Too many checkouts for this account; try again in a minute.", nil)
	case errors.Is(err, checkout.ErrStripe):
		h.app.logger.Error("stripe checkout", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		writeAdminProblem(w, http.StatusServiceUnavailable, "stripe-unavailable", "Stripe could not make the checkout; try again shortly.", nil)
	case err != nil:
		writeStoreError(w, err)
	default:
		writeJSON(w, http.StatusOK, struct {
			URL string `json:"url"`
		}{u})
	}
}

// sameSiteJSON refuses, with 415 or 403, a change asked for in anything but
// JSON, or by another site's page (Sec-Fetch-Site: cross-site), and reports
// whether the request may go on.
func sameSiteJSON(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		writeAdminProblem(w, http.StatusForbidden, "forbidden", "Another site's page cannot change this account.", nil)
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeAdminProblem(w, http.StatusUnsupportedMediaType, "invalid-request", "The body must be application/json.", nil)
		return false
	}
	return true
}
