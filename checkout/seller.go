// Package checkout sells bundles of tokens through Stripe Checkout: it makes
// a Checkout Session for an account, records what the session will credit,
// and turns Stripe's signed event deliveries into exactly one credit per
// paid session and one debit per refund or dispute. It knows nothing of
// Caddy.
package checkout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-go/v82"
	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/meter"
)

// Bundle is a number of tokens sold at a Stripe Price.
type Bundle struct {
	Name   string
	Price  string // the Stripe Price id, such as price_1QxAbC
	Tokens int64  // tokens a unit credits
}

// Config is how a Seller reaches Stripe and what it sells.
type Config struct {
	SecretKey     string
	WebhookSecret string
	Bundles       []Bundle
	SuccessURL    string
	CancelURL     string

	// Instance names this gateway in the sessions' metadata; a delivery
	// for a session of another instance is ignored.
	Instance string

	// APIURL is another Stripe API, such as stripe-mock; "" for Stripe's.
	APIURL string

	// Credited, when set, is told of each purchase credited: the account,
	// the tokens and the balance after.
	Credited func(account string, amount, balance int64)
}

// Metadata keys a Seller puts on a session and its PaymentIntent.
const (
	metaAccount  = "tollgate_account"
	metaBundle   = "tollgate_bundle"
	metaInstance = "tollgate_instance"
)

// Checkouts per account: a burst of 10, then one every 6 seconds.
const (
	checkoutBurst = 10
	checkoutEvery = 6 * time.Second
	maxLimiters   = 10_000
)

// Errors of Checkout.
var (
	ErrUnknownBundle = errors.New("no such bundle")
	ErrQuantity      = errors.New("quantity must be 1-100")
	ErrRateLimited   = errors.New("too many checkouts for this account; try again in a minute")
	ErrStripe        = errors.New("stripe did not make the session")
)

// Seller makes Checkout Sessions and takes Stripe's event deliveries.
type Seller struct {
	cfg      Config
	store    meter.Store
	client   *stripe.Client
	livemode bool
	bundles  map[string]Bundle

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// New checks cfg and returns a Seller that records purchases in store.
func New(cfg Config, store meter.Store) (*Seller, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Seller{
		cfg:      cfg,
		store:    store,
		livemode: strings.Contains(cfg.SecretKey, "_live_"),
		bundles:  make(map[string]Bundle, len(cfg.Bundles)),
		limiters: map[string]*rate.Limiter{},
	}
	for _, b := range cfg.Bundles {
		s.bundles[b.Name] = b
	}
	backend := &stripe.BackendConfig{
		HTTPClient:    &http.Client{Timeout: 20 * time.Second},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	if cfg.APIURL != "" {
		backend.URL = stripe.String(strings.TrimSuffix(cfg.APIURL, "/"))
	}
	s.client = stripe.NewClient(cfg.SecretKey, stripe.WithBackends(&stripe.Backends{
		API:         stripe.GetBackendWithConfig(stripe.APIBackend, backend),
		Connect:     stripe.GetBackendWithConfig(stripe.ConnectBackend, backend),
		Uploads:     stripe.GetBackendWithConfig(stripe.UploadsBackend, backend),
		MeterEvents: stripe.GetBackendWithConfig(stripe.MeterEventsBackend, backend),
	}))
	return s, nil
}

func (cfg Config) validate() error {
	switch {
	case cfg.SecretKey == "":
		return errors.New("stripe needs a secret_key")
	case cfg.WebhookSecret == "":
		return errors.New("stripe needs a webhook_secret")
	case len(cfg.Bundles) == 0:
		return errors.New("stripe needs at least one bundle")
	case cfg.Instance == "":
		return errors.New("stripe needs an instance name")
	}
	for _, u := range []struct{ name, value string }{{"success_url", cfg.SuccessURL}, {"cancel_url", cfg.CancelURL}} {
		if p, err := url.Parse(u.value); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fmt.Errorf("stripe %s must be an absolute http or https URL, not %q", u.name, u.value)
		}
	}
	if cfg.APIURL != "" {
		p, err := url.Parse(cfg.APIURL)
		if err != nil || p.Host == "" || (p.Scheme != "https" && !(p.Scheme == "http" && loopback(p.Hostname()))) {
			return fmt.Errorf("stripe api_url must be https, or http on a loopback address, not %q", cfg.APIURL)
		}
	}
	seen := map[string]bool{}
	for _, b := range cfg.Bundles {
		switch {
		case b.Name == "" || b.Price == "":
			return errors.New("a stripe bundle needs a name and a price id")
		case seen[b.Name]:
			return fmt.Errorf("stripe bundle %q is given twice", b.Name)
		case b.Tokens < 1 || b.Tokens*100 > meter.MaxAmount:
			return fmt.Errorf("stripe bundle %q: tokens must be 1 to (2^53-1)/100", b.Name)
		}
		seen[b.Name] = true
	}
	return nil
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// Bundles returns the bundles for sale, in the order configured.
func (s *Seller) Bundles() []Bundle { return s.cfg.Bundles }

// Checkout makes a Checkout Session for quantity units of a bundle, bought
// by account, records what it will credit, and returns its URL.
func (s *Seller) Checkout(ctx context.Context, account, bundle string, quantity int64) (string, error) {
	b, ok := s.bundles[bundle]
	if !ok {
		return "", ErrUnknownBundle
	}
	if quantity < 1 || quantity > 100 {
		return "", ErrQuantity
	}
	if !s.allow(account) {
		return "", ErrRateLimited
	}
	meta := map[string]string{metaAccount: account, metaBundle: bundle, metaInstance: s.cfg.Instance}
	params := &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModePayment)),
		LineItems:         []*stripe.CheckoutSessionCreateLineItemParams{{Price: stripe.String(b.Price), Quantity: stripe.Int64(quantity)}},
		ClientReferenceID: stripe.String(account),
		SuccessURL:        stripe.String(s.cfg.SuccessURL),
		CancelURL:         stripe.String(s.cfg.CancelURL),
		CustomText: &stripe.CheckoutSessionCreateCustomTextParams{
			Submit: &stripe.CheckoutSessionCreateCustomTextSubmitParams{Message: stripe.String("Tokens for the account " + account)},
		},
		Metadata:          meta,
		PaymentIntentData: &stripe.CheckoutSessionCreatePaymentIntentDataParams{Metadata: meta},
	}
	params.SetIdempotencyKey(newKey())
	sess, err := s.client.V1CheckoutSessions.Create(ctx, params)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrStripe, err)
	}
	if sess.ID == "" || sess.URL == "" {
		return "", fmt.Errorf("%w: the session has no id or url", ErrStripe)
	}
	total := sess.AmountTotal
	if total < 1 {
		// Stripe gives the total of a session with line items; an API that
		// does not (stripe-mock) gives the price.
		price, err := s.client.V1Prices.Retrieve(ctx, b.Price, nil)
		if err != nil || price.UnitAmount < 1 {
			return "", fmt.Errorf("%w: the session has no amount, nor its price (%v)", ErrStripe, err)
		}
		total = price.UnitAmount * quantity
	}
	p := meter.Purchase{Account: account, Session: sess.ID, Bundle: bundle, Quantity: quantity, Tokens: b.Tokens * quantity, Total: total}
	if err := s.store.RecordPurchase(ctx, p); err != nil {
		return "", err
	}
	return sess.URL, nil
}

// allow takes one checkout from the account's allowance.
func (s *Seller) allow(account string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[account]
	if l == nil {
		if len(s.limiters) >= maxLimiters {
			// Forget the accounts whose allowance is whole again.
			now := time.Now()
			for a, l := range s.limiters {
				if l.TokensAt(now) >= checkoutBurst {
					delete(s.limiters, a)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(checkoutEvery), checkoutBurst)
		s.limiters[account] = l
	}
	return l.Allow()
}

// newKey returns an idempotency key for one Stripe call.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
