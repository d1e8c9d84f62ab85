package checkout

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/tollgate-dev/tollgate/meter"
)

// MaxEventBytes is the largest event delivery read.
const MaxEventBytes = 1 << 20

// Outcome is what became of an event delivery. Each is a bounded label.
type Outcome string

// The outcomes of a delivery.
const (
	Credited        Outcome = "credited"          // a paid session was credited
	AlreadyCredited Outcome = "already_credited"  // it was, by an earlier delivery
	Unpaid          Outcome = "unpaid"            // completed, paid later (async)
	Debited         Outcome = "debited"           // a refund or dispute took back its share
	Shortfall       Outcome = "shortfall"         // it took back less: the balance was too low
	PendingRefund   Outcome = "pending_refund"    // it came first: the credit will be smaller
	AlreadyDebited  Outcome = "already_debited"   // an earlier delivery took it back
	Refused         Outcome = "refused"           // bad signature, old timestamp, not JSON: 400
	StoreDown       Outcome = "store_unavailable" // 503, so that Stripe delivers it again
	StripeDown      Outcome = "stripe_unavailable"
	Connected       Outcome = "ignored_connected_account"
	OtherMode       Outcome = "ignored_livemode"
	OtherInstance   Outcome = "ignored_instance"
	OtherAccount    Outcome = "ignored_account_mismatch"
	UnknownSession  Outcome = "ignored_unknown_session"
	UnknownPurchase Outcome = "ignored_unknown_purchase"
	Other           Outcome = "ignored_event_type"
	NotSucceeded    Outcome = "ignored_refund_not_succeeded"
)

// Deliver verifies one event delivery (its body and its Stripe-Signature
// header) and applies it. It returns the HTTP status to answer Stripe with,
// and the outcome: 400 for a delivery that fails verification (nothing
// changes), 503 when the store or Stripe cannot be reached (Stripe delivers
// again), and 200 otherwise, also for events it ignores.
func (s *Seller) Deliver(ctx context.Context, body []byte, signature string) (int, Outcome) {
	ev, err := webhook.ConstructEventWithOptions(body, signature, s.cfg.WebhookSecret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
	if err != nil || ev.Data == nil {
		return http.StatusBadRequest, Refused
	}
	switch {
	case ev.Account != "":
		return http.StatusOK, Connected
	case ev.Livemode != s.livemode:
		return http.StatusOK, OtherMode
	}
	var out Outcome
	switch ev.Type {
	case stripe.EventTypeCheckoutSessionCompleted, stripe.EventTypeCheckoutSessionAsyncPaymentSucceeded:
		var sess stripe.CheckoutSession
		if json.Unmarshal(ev.Data.Raw, &sess) != nil {
			return http.StatusBadRequest, Refused
		}
		if ev.Type == stripe.EventTypeCheckoutSessionCompleted && sess.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid {
			return http.StatusOK, Unpaid
		}
		out = s.fulfil(ctx, &sess)
	case stripe.EventTypeRefundCreated, stripe.EventTypeRefundUpdated:
		var rf stripe.Refund
		if json.Unmarshal(ev.Data.Raw, &rf) != nil {
			return http.StatusBadRequest, Refused
		}
		if rf.Status != stripe.RefundStatusSucceeded {
			return http.StatusOK, NotSucceeded
		}
		out = s.takeBack(ctx, rf.PaymentIntent, "stripe-refund:"+rf.ID, rf.Amount, "refund")
	case stripe.EventTypeChargeDisputeCreated:
		var d stripe.Dispute
		if json.Unmarshal(ev.Data.Raw, &d) != nil {
			return http.StatusBadRequest, Refused
		}
		out = s.takeBack(ctx, d.PaymentIntent, "stripe-dispute:"+d.ID, d.Amount, "dispute")
	default:
		return http.StatusOK, Other
	}
	if out == StoreDown || out == StripeDown {
		return http.StatusServiceUnavailable, out
	}
	return http.StatusOK, out
}

// ours returns the account a session of this instance was made for, or the
// outcome of ignoring it.
func (s *Seller) ours(sess *stripe.CheckoutSession) (string, Outcome) {
	account := sess.Metadata[metaAccount]
	switch {
	case sess.Metadata[metaInstance] != s.cfg.Instance:
		return "", OtherInstance
	case account == "" || account != sess.ClientReferenceID:
		return "", OtherAccount
	}
	return account, ""
}

// fulfil credits a paid session's recorded tokens, once.
func (s *Seller) fulfil(ctx context.Context, sess *stripe.CheckoutSession) Outcome {
	account, ignored := s.ours(sess)
	if ignored != "" {
		return ignored
	}
	r, err := s.store.FulfilPurchase(ctx, meter.Fulfil{Account: account, Session: sess.ID, ID: "stripe:" + sess.ID, Reason: "purchase", By: "stripe"})
	switch {
	case errors.Is(err, meter.ErrNotFound), errors.Is(err, meter.ErrInvalid):
		return UnknownSession
	case err != nil:
		return StoreDown
	case r.Replayed:
		return AlreadyCredited
	}
	if s.cfg.Credited != nil && r.Amount > 0 {
		s.cfg.Credited(account, r.Amount, r.Balance)
	}
	return Credited
}

// takeBack debits the share of amount of the purchase paid by the
// PaymentIntent pi, under id. A session's id cannot be in its
// PaymentIntent's metadata (the session is made first), so the purchase is
// found by asking Stripe for the Checkout Session of the PaymentIntent.
func (s *Seller) takeBack(ctx context.Context, pi *stripe.PaymentIntent, id string, amount int64, reason string) Outcome {
	if pi == nil || pi.ID == "" || amount < 1 {
		return UnknownPurchase
	}
	params := &stripe.CheckoutSessionListParams{PaymentIntent: stripe.String(pi.ID)}
	var sess *stripe.CheckoutSession
	for c, err := range s.client.V1CheckoutSessions.List(ctx, params) {
		if err != nil {
			return StripeDown
		}
		if _, ignored := s.ours(c); ignored == "" {
			sess = c
			break
		}
	}
	if sess == nil {
		return UnknownPurchase
	}
	r, err := s.store.RefundPurchase(ctx, meter.PurchaseRefund{
		Account: sess.ClientReferenceID, Session: sess.ID, ID: id, Amount: amount, Reason: reason, By: "stripe",
	})
	switch {
	case errors.Is(err, meter.ErrNotFound), errors.Is(err, meter.ErrInvalid), errors.Is(err, meter.ErrConflict):
		return UnknownPurchase
	case err != nil:
		return StoreDown
	case r.Replayed:
		return AlreadyDebited
	case r.Pending:
		return PendingRefund
	case r.Shortfall > 0:
		return Shortfall
	}
	return Debited
}
