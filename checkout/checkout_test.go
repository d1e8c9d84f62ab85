package checkout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/tollgate-dev/tollgate/checkout"
	"github.com/tollgate-dev/tollgate/meter"
)

const secret = "whsec_test_secret"

// fakeStripe serves the two calls a Seller makes: it makes sessions (each
// 1,000 cents a unit) and lists the sessions of a PaymentIntent.
type fakeStripe struct {
	*httptest.Server
	mu       sync.Mutex
	sessions map[string]map[string]any // by id
	byPI     map[string]string         // PaymentIntent -> session id
	down     atomic.Bool
}

func newFakeStripe(t *testing.T) *fakeStripe {
	f := &fakeStripe{sessions: map[string]map[string]any{}, byPI: map[string]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, `{"error":{"message":"down"}}`, http.StatusInternalServerError)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/checkout/sessions":
			_ = r.ParseForm()
			id := fmt.Sprintf("cs_test_%d", len(f.sessions)+1)
			var q int64
			fmt.Sscan(r.Form.Get("line_items[0][quantity]"), &q)
			s := map[string]any{
				"id": id, "object": "checkout.session", "url": "https://checkout.stripe.test/" + id,
				"amount_total": 1000 * q, "client_reference_id": r.Form.Get("client_reference_id"),
				"payment_intent": "pi_" + id, "payment_status": "unpaid", "livemode": false,
				"metadata": map[string]string{
					"tollgate_account":  r.Form.Get("metadata[tollgate_account]"),
					"tollgate_bundle":   r.Form.Get("metadata[tollgate_bundle]"),
					"tollgate_instance": r.Form.Get("metadata[tollgate_instance]"),
				},
			}
			f.sessions[id] = s
			f.byPI["pi_"+id] = id
			_ = json.NewEncoder(w).Encode(s)
		case r.Method == "GET" && r.URL.Path == "/v1/checkout/sessions":
			data := []any{}
			if id, ok := f.byPI[r.URL.Query().Get("payment_intent")]; ok {
				data = append(data, f.sessions[id])
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "has_more": false})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// session returns a copy of a session the fake made, as an event carries
// it, edited by edit.
func (f *fakeStripe) session(id string, edit func(map[string]any)) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.sessions[id])
	var s map[string]any
	_ = json.Unmarshal(b, &s)
	if edit != nil {
		edit(s)
	}
	return s
}

// flakyStore is a store whose purchase operations can be made to fail as
// an unreachable store does.
type flakyStore struct {
	meter.Store
	down atomic.Bool
}

func (s *flakyStore) FulfilPurchase(ctx context.Context, f meter.Fulfil) (meter.PurchaseReceipt, error) {
	if s.down.Load() {
		return meter.PurchaseReceipt{}, meter.ErrUnavailable
	}
	return s.Store.FulfilPurchase(ctx, f)
}

func (s *flakyStore) RefundPurchase(ctx context.Context, r meter.PurchaseRefund) (meter.PurchaseReceipt, error) {
	if s.down.Load() {
		return meter.PurchaseReceipt{}, meter.ErrUnavailable
	}
	return s.Store.RefundPurchase(ctx, r)
}

type harness struct {
	t      *testing.T
	seller *checkout.Seller
	stripe *fakeStripe
	store  *flakyStore
	events int
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, stripe: newFakeStripe(t), store: &flakyStore{Store: meter.NewMemory(meter.Config{})}}
	var err error
	h.seller, err = checkout.New(checkout.Config{
		SecretKey: "sk_test_123", WebhookSecret: secret, Instance: "gw-1",
		Bundles:    []checkout.Bundle{{Name: "starter", Price: "price_starter", Tokens: 1000}, {Name: "pro", Price: "price_pro", Tokens: 12000}},
		SuccessURL: "https://app.example/paid", CancelURL: "https://app.example/", APIURL: h.stripe.URL,
	}, h.store)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// buy makes a session and returns its id.
func (h *harness) buy(account, bundle string, quantity int64) string {
	h.t.Helper()
	u, err := h.seller.Checkout(context.Background(), account, bundle, quantity)
	if err != nil {
		h.t.Fatal(err)
	}
	return u[strings.LastIndexByte(u, '/')+1:]
}

// event returns a signed delivery of an event of type typ about object.
func (h *harness) event(typ string, object any, edit func(map[string]any), at time.Time, key string) ([]byte, string) {
	h.events++
	ev := map[string]any{
		"id": fmt.Sprintf("evt_%d", h.events), "object": "event", "type": typ, "livemode": false,
		"api_version": "2020-08-27", "created": at.Unix(), "data": map[string]any{"object": object},
	}
	if edit != nil {
		edit(ev)
	}
	body, _ := json.Marshal(ev)
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: key, Timestamp: at})
	return signed.Payload, signed.Header
}

// deliver sends a delivery signed now with the right secret.
func (h *harness) deliver(typ string, object any, edit func(map[string]any)) (int, checkout.Outcome) {
	body, sig := h.event(typ, object, edit, time.Now(), secret)
	return h.seller.Deliver(context.Background(), body, sig)
}

func (h *harness) balance(account string) int64 {
	h.t.Helper()
	a, err := h.store.Account(context.Background(), meter.Read{Account: account})
	if errors.Is(err, meter.ErrNotFound) {
		return -1
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return a.Balance
}

func expect(t *testing.T, what string, status int, out checkout.Outcome, wantStatus int, wantOut checkout.Outcome) {
	t.Helper()
	if status != wantStatus || out != wantOut {
		t.Errorf("%s: %d %s, want %d %s", what, status, out, wantStatus, wantOut)
	}
}

// TestDeliveries applies each kind of delivery the issue lists, and checks
// the balance after each: a paid session is credited exactly once, with the
// tokens recorded when the session was made.
func TestDeliveries(t *testing.T) {
	h := newHarness(t)
	paid := func(s map[string]any) { s["payment_status"] = "paid" }

	cs := h.buy("alice", "starter", 2)
	st, out := h.deliver("checkout.session.completed", h.stripe.session(cs, paid), nil)
	expect(t, "paid", st, out, 200, checkout.Credited)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs, paid), nil)
	expect(t, "redelivered", st, out, 200, checkout.AlreadyCredited)
	st, out = h.deliver("checkout.session.async_payment_succeeded", h.stripe.session(cs, paid), nil)
	expect(t, "the same session under the other event", st, out, 200, checkout.AlreadyCredited)
	if b := h.balance("alice"); b != 2000 {
		t.Fatalf("alice: %d, want 2000", b)
	}

	// Unpaid at completion, then paid.
	cs2 := h.buy("bob", "pro", 1)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs2, nil), nil)
	expect(t, "completed unpaid", st, out, 200, checkout.Unpaid)
	if b := h.balance("bob"); b != 0 {
		t.Errorf("bob before the async payment: %d", b)
	}
	st, out = h.deliver("checkout.session.async_payment_succeeded", h.stripe.session(cs2, nil), nil)
	expect(t, "async succeeded", st, out, 200, checkout.Credited)
	if b := h.balance("bob"); b != 12000 {
		t.Errorf("bob: %d, want 12000", b)
	}

	// What the event says of tokens or account is not believed.
	cs3 := h.buy("carol", "starter", 1)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs3, func(s map[string]any) {
		paid(s)
		s["metadata"].(map[string]any)["tollgate_tokens"] = "1000000"
		s["amount_total"] = 99999999
	}), nil)
	expect(t, "metadata claiming more tokens", st, out, 200, checkout.Credited)
	if b := h.balance("carol"); b != 1000 {
		t.Errorf("carol: %d, want the bundle's 1000", b)
	}
	for name, edit := range map[string]func(map[string]any){
		"another instance": func(s map[string]any) { s["metadata"].(map[string]any)["tollgate_instance"] = "gw-2" },
		"another account":  func(s map[string]any) { s["client_reference_id"] = "mallory" },
		"a session Tollgate did not make": func(s map[string]any) {
			s["id"] = "cs_test_forged"
		},
	} {
		cs := h.buy("dave", "starter", 1)
		st, out := h.deliver("checkout.session.completed", h.stripe.session(cs, func(s map[string]any) { paid(s); edit(s) }), nil)
		want := checkout.OtherInstance
		switch name {
		case "another account":
			want = checkout.OtherAccount
		case "a session Tollgate did not make":
			want = checkout.UnknownSession
		}
		expect(t, name, st, out, 200, want)
	}
	if b := h.balance("dave"); b != 0 {
		t.Errorf("dave: %d after ignored sessions", b)
	}
	if b := h.balance("mallory"); b != -1 {
		t.Errorf("mallory exists: %d", b)
	}

	// Connected accounts, the other mode, other event types.
	cs4 := h.buy("erin", "starter", 1)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs4, paid), func(e map[string]any) { e["account"] = "acct_123" })
	expect(t, "a connected account's event", st, out, 200, checkout.Connected)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs4, paid), func(e map[string]any) { e["livemode"] = true })
	expect(t, "a live event for a test key", st, out, 200, checkout.OtherMode)
	st, out = h.deliver("customer.created", map[string]any{"id": "cus_1", "object": "customer"}, nil)
	expect(t, "an unknown event type", st, out, 200, checkout.Other)
	if b := h.balance("erin"); b != 0 {
		t.Errorf("erin: %d after ignored events", b)
	}

	// Store down: 503, then credited once on redelivery.
	h.store.down.Store(true)
	st, out = h.deliver("checkout.session.completed", h.stripe.session(cs4, paid), nil)
	expect(t, "store down", st, out, 503, checkout.StoreDown)
	h.store.down.Store(false)
	for range 2 {
		h.deliver("checkout.session.completed", h.stripe.session(cs4, paid), nil)
	}
	if b := h.balance("erin"); b != 1000 {
		t.Errorf("erin after redeliveries: %d, want 1000", b)
	}
}

// TestRefusedDeliveries answers 400 to a delivery that fails verification,
// and changes nothing.
func TestRefusedDeliveries(t *testing.T) {
	h := newHarness(t)
	cs := h.buy("alice", "starter", 1)
	sess := h.stripe.session(cs, func(s map[string]any) { s["payment_status"] = "paid" })
	now := time.Now()
	body, sig := h.event("checkout.session.completed", sess, nil, now, secret)
	cases := map[string][2]string{
		"a tampered body": {strings.Replace(string(body), `"paid"`, `"paid" `, 1), sig},
		"a wrong secret": func() [2]string {
			b, s := h.event("checkout.session.completed", sess, nil, now, "whsec_other")
			return [2]string{string(b), s}
		}(),
		"a timestamp 6 minutes old": func() [2]string {
			b, s := h.event("checkout.session.completed", sess, nil, now.Add(-6*time.Minute), secret)
			return [2]string{string(b), s}
		}(),
		"no signature": {string(body), ""},
		"a body not JSON": func() [2]string {
			s := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte("not json"), Secret: secret})
			return [2]string{string(s.Payload), s.Header}
		}(),
	}
	for name, c := range cases {
		st, out := h.seller.Deliver(context.Background(), []byte(c[0]), c[1])
		expect(t, name, st, out, 400, checkout.Refused)
	}
	if b := h.balance("alice"); b != 0 {
		t.Errorf("alice: %d after refused deliveries", b)
	}
	st, out := h.seller.Deliver(context.Background(), body, sig)
	expect(t, "the genuine delivery", st, out, 200, checkout.Credited)
}

// TestRefundsAndDisputes takes back the refunded share of a purchase, once
// per refund, before and after its credit, and from a balance too low.
func TestRefundsAndDisputes(t *testing.T) {
	h := newHarness(t)
	paid := func(s map[string]any) { s["payment_status"] = "paid" }
	refund := func(id, pi string, amount int64, status string) map[string]any {
		return map[string]any{"id": id, "object": "refund", "amount": amount, "status": status, "payment_intent": pi}
	}

	cs := h.buy("alice", "starter", 3) // 3,000 tokens for 3,000 cents
	h.deliver("checkout.session.completed", h.stripe.session(cs, paid), nil)
	st, out := h.deliver("refund.created", refund("re_1", "pi_"+cs, 1000, "pending"), nil)
	expect(t, "a pending refund", st, out, 200, checkout.NotSucceeded)
	st, out = h.deliver("refund.updated", refund("re_1", "pi_"+cs, 1000, "succeeded"), nil)
	expect(t, "the refund succeeded", st, out, 200, checkout.Debited)
	st, out = h.deliver("refund.updated", refund("re_1", "pi_"+cs, 1000, "succeeded"), nil)
	expect(t, "the refund again", st, out, 200, checkout.AlreadyDebited)
	if b := h.balance("alice"); b != 2000 {
		t.Errorf("alice after a third refunded: %d, want 2000", b)
	}

	// A dispute of the rest, with the balance spent down: the shortfall.
	if _, err := h.store.Charge(context.Background(), meter.Charge{Account: "alice", Op: "spend", Amount: 1500}); err != nil {
		t.Fatal(err)
	}
	st, out = h.deliver("charge.dispute.created", map[string]any{"id": "dp_1", "object": "dispute", "amount": 2000, "payment_intent": "pi_" + cs}, nil)
	expect(t, "a dispute past the balance", st, out, 200, checkout.Shortfall)
	if b := h.balance("alice"); b != 0 {
		t.Errorf("alice after the dispute: %d, want 0", b)
	}

	// A refund that comes before its purchase's credit.
	cs2 := h.buy("bob", "pro", 1) // 12,000 tokens for 1,000 cents
	st, out = h.deliver("refund.created", refund("re_2", "pi_"+cs2, 250, "succeeded"), nil)
	expect(t, "a refund before the purchase", st, out, 200, checkout.PendingRefund)
	h.deliver("checkout.session.completed", h.stripe.session(cs2, paid), nil)
	if b := h.balance("bob"); b != 9000 {
		t.Errorf("bob: %d, want 12000 less a quarter", b)
	}

	// Store down: 503, then taken back once on redelivery.
	h.store.down.Store(true)
	st, out = h.deliver("refund.created", refund("re_5", "pi_"+cs2, 100, "succeeded"), nil)
	expect(t, "a refund with the store down", st, out, 503, checkout.StoreDown)
	h.store.down.Store(false)
	for i, want := range []checkout.Outcome{checkout.Debited, checkout.AlreadyDebited} {
		st, out = h.deliver("refund.created", refund("re_5", "pi_"+cs2, 100, "succeeded"), nil)
		expect(t, fmt.Sprint("the refund redelivered, ", i+1), st, out, 200, want)
	}
	if b := h.balance("bob"); b != 7800 {
		t.Errorf("bob after a refund of a tenth: %d, want 9000 less 1200", b)
	}

	st, out = h.deliver("refund.created", refund("re_3", "pi_unknown", 100, "succeeded"), nil)
	expect(t, "a refund of a payment Tollgate did not sell", st, out, 200, checkout.UnknownPurchase)
	h.stripe.down.Store(true)
	st, out = h.deliver("refund.created", refund("re_4", "pi_"+cs2, 100, "succeeded"), nil)
	expect(t, "Stripe down", st, out, 503, checkout.StripeDown)
}

// TestCheckoutRequests refuses unknown bundles and quantities, and limits
// each account to a burst of 10.
func TestCheckoutRequests(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.seller.Checkout(ctx, "alice", "gold", 1); !errors.Is(err, checkout.ErrUnknownBundle) {
		t.Errorf("unknown bundle: %v", err)
	}
	for _, q := range []int64{0, 101, -1} {
		if _, err := h.seller.Checkout(ctx, "alice", "starter", q); !errors.Is(err, checkout.ErrQuantity) {
			t.Errorf("quantity %d: %v", q, err)
		}
	}
	for i := range 10 {
		if _, err := h.seller.Checkout(ctx, "alice", "starter", 1); err != nil {
			t.Fatalf("checkout %d: %v", i+1, err)
		}
	}
	if _, err := h.seller.Checkout(ctx, "alice", "starter", 1); !errors.Is(err, checkout.ErrRateLimited) {
		t.Errorf("the 11th checkout: %v", err)
	}
	if _, err := h.seller.Checkout(ctx, "bob", "starter", 1); err != nil {
		t.Errorf("another account: %v", err)
	}
	h.stripe.down.Store(true)
	if _, err := h.seller.Checkout(ctx, "carol", "starter", 1); !errors.Is(err, checkout.ErrStripe) {
		t.Errorf("Stripe down: %v", err)
	}
}

// TestConfig refuses what cannot work.
func TestConfig(t *testing.T) {
	good := checkout.Config{
		SecretKey: "sk_test_1", WebhookSecret: "whsec_1", Instance: "i",
		Bundles:    []checkout.Bundle{{Name: "a", Price: "price_a", Tokens: 1}},
		SuccessURL: "https://a.example/ok", CancelURL: "https://a.example/",
	}
	for name, edit := range map[string]func(*checkout.Config){
		"no secret key":        func(c *checkout.Config) { c.SecretKey = "" },
		"no webhook secret":    func(c *checkout.Config) { c.WebhookSecret = "" },
		"no bundle":            func(c *checkout.Config) { c.Bundles = nil },
		"a bundle twice":       func(c *checkout.Config) { c.Bundles = append(c.Bundles, c.Bundles[0]) },
		"a bundle of 0 tokens": func(c *checkout.Config) { c.Bundles[0].Tokens = 0 },
		"a relative success":   func(c *checkout.Config) { c.SuccessURL = "/ok" },
		"an http api far away": func(c *checkout.Config) { c.APIURL = "http://stripe.example" },
	} {
		c := good
		c.Bundles = append([]checkout.Bundle(nil), good.Bundles...)
		edit(&c)
		if _, err := checkout.New(c, meter.NewMemory(meter.Config{})); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := good
	c.APIURL = "http://127.0.0.1:12111"
	if _, err := checkout.New(c, meter.NewMemory(meter.Config{})); err != nil {
		t.Errorf("http on loopback: %v", err)
	}
}
