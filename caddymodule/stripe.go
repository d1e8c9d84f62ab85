package caddymodule

import (
	"os"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tollgate-dev/tollgate/checkout"
)

// StripeConfig sells bundles of tokens through Stripe Checkout: callers buy
// at tollgate_account's …/checkout, and tollgate_webhook credits what Stripe
// says was paid.
type StripeConfig struct {
	// SecretKey is the Stripe API key: sk_test_… or sk_live_… (restricted
	// keys, rk_…, work too). Placeholders such as {env.STRIPE_SECRET_KEY}
	// are replaced. Required.
	SecretKey string `json:"secret_key,omitempty"`

	// WebhookSecret is the signing secret of the webhook endpoint
	// (whsec_…). Placeholders are replaced. Required.
	WebhookSecret string `json:"webhook_secret,omitempty"`

	// Bundles are what callers can buy. At least one is required.
	Bundles []StripeBundle `json:"bundles,omitempty"`

	// SuccessURL is where Stripe sends the caller after paying. Required.
	SuccessURL string `json:"success_url,omitempty"`

	// CancelURL is where Stripe sends the caller who goes back. Required.
	CancelURL string `json:"cancel_url,omitempty"`

	// Instance names this Tollgate in the sessions' metadata, so that
	// several can share one Stripe account: each ignores the others'
	// sessions. Default: the admin address Caddy starts with
	// (CADDY_ADMIN, else localhost:2019).
	Instance string `json:"instance,omitempty"`

	// APIURL is another Stripe API, such as stripe-mock: https, or http on
	// a loopback address. Default: Stripe's.
	APIURL string `json:"api_url,omitempty"`
}

// StripeBundle is a number of tokens sold at a Stripe Price.
type StripeBundle struct {
	// Name is what callers ask for, as in {"bundle":"starter"}. Required.
	Name string `json:"name"`

	// Price is the Stripe Price id, such as price_1QxAbC. Required.
	Price string `json:"price"`

	// Tokens is what one unit credits. Required.
	Tokens int64 `json:"tokens"`
}

// seller returns the checkout.Seller for the config, with its secrets'
// placeholders replaced.
func (c *StripeConfig) seller(repl *caddy.Replacer, app *App) (*checkout.Seller, error) {
	instance := c.Instance
	if instance == "" {
		instance = os.Getenv("CADDY_ADMIN")
	}
	if instance == "" {
		instance = caddy.DefaultAdminListen
	}
	cfg := checkout.Config{
		SecretKey:     repl.ReplaceKnown(c.SecretKey, ""),
		WebhookSecret: repl.ReplaceKnown(c.WebhookSecret, ""),
		SuccessURL:    repl.ReplaceKnown(c.SuccessURL, ""),
		CancelURL:     repl.ReplaceKnown(c.CancelURL, ""),
		Instance:      repl.ReplaceKnown(instance, ""),
		APIURL:        repl.ReplaceKnown(c.APIURL, ""),
		Credited: func(account string, amount, balance int64) {
			metricTokens.WithLabelValues("credited").Add(float64(amount))
			app.credited(account, amount, balance)
		},
	}
	for _, b := range c.Bundles {
		cfg.Bundles = append(cfg.Bundles, checkout.Bundle{Name: b.Name, Price: b.Price, Tokens: b.Tokens})
	}
	return checkout.New(cfg, app.store)
}

// parseStripe parses the stripe block of the global option:
//
//	stripe {
//		secret_key     <key>
//		webhook_secret <secret>
//		bundle         <name> <price id> <tokens>
//		success_url    <url>
//		cancel_url     <url>
//		instance       <name>
//		api_url        <url>
//	}
func parseStripe(d *caddyfile.Dispenser) (*StripeConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(StripeConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if name == "bundle" {
			args := d.RemainingArgs()
			if len(args) != 3 {
				return nil, d.Err("bundle takes a name, a Stripe Price id and the tokens a unit credits")
			}
			n, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil || n < 1 {
				return nil, d.Errf("bundle %s: tokens must be a positive integer, not %q", args[0], args[2])
			}
			c.Bundles = append(c.Bundles, StripeBundle{Name: args[0], Price: args[1], Tokens: n})
			continue
		}
		field := map[string]*string{
			"secret_key": &c.SecretKey, "webhook_secret": &c.WebhookSecret, "success_url": &c.SuccessURL,
			"cancel_url": &c.CancelURL, "instance": &c.Instance, "api_url": &c.APIURL,
		}[name]
		if field == nil {
			return nil, d.Errf("unknown stripe option %q", name)
		}
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		*field = d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return c, nil
}
