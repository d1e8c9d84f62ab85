package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/notify"
)

// NotifyConfig tells an endpoint of your own about accounts: each
// notification is a POST of JSON signed with Tollgate-Signature, retried
// with backoff for 24 hours under one id.
type NotifyConfig struct {
	// URL receives the notifications: http or https. Required.
	URL string `json:"url,omitempty"`

	// Secret signs each delivery; placeholders such as {env.X} are
	// replaced. Required.
	Secret string `json:"secret,omitempty"`

	// LowBalance are thresholds of balance + held: each fires once when an
	// account falls below it, and again only after the account rose to it
	// or above. Default: none.
	LowBalance []int64 `json:"low_balance,omitempty"`

	// Events are the notifications sent: low_balance, depleted, credited.
	// Default: all three.
	Events []string `json:"events,omitempty"`
}

// notifyEvents are the values Events takes.
var notifyEvents = []string{notify.LowBalance, notify.Depleted, notify.Credited}

// notifiers keep each endpoint's queue across config reloads.
var notifiers = caddy.NewUsagePool()

// sharedNotifier is a notifier in the pool.
type sharedNotifier struct{ *notify.Notifier }

// Destruct stops the notifier.
func (n sharedNotifier) Destruct() error {
	n.Close()
	return nil
}

// provisionNotify finds the events app, when the config has one (without
// it nothing can subscribe), checks the notify block and takes its
// endpoint's notifier from the pool.
func (a *App) provisionNotify(repl *caddy.Replacer) error {
	ev, err := a.ctx.AppIfConfigured("events")
	switch {
	case err == nil:
		a.events = ev.(*caddyevents.App)
	case !errors.Is(err, caddy.ErrNotConfigured):
		return fmt.Errorf("getting the events app: %w", err)
	}
	c := a.Notify
	if c == nil {
		return nil
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("notify url must be an absolute http or https URL, not %q", c.URL)
	}
	secret := repl.ReplaceKnown(c.Secret, "")
	if secret == "" {
		return errors.New("notify needs a secret, which must not be empty after placeholders are resolved")
	}
	for _, t := range c.LowBalance {
		if t < 1 || t > meter.MaxAmount {
			return fmt.Errorf("notify low_balance thresholds must be integers in [1, 2^53-1], not %d", t)
		}
	}
	for _, e := range c.Events {
		if !slices.Contains(notifyEvents, e) {
			return fmt.Errorf("notify events are low_balance, depleted and credited, not %q", e)
		}
	}
	a.notifyKey = c.URL + "\x00" + secret
	val, _, err := notifiers.LoadOrNew(a.notifyKey, func() (caddy.Destructor, error) {
		n, err := notify.New(notify.Config{URL: c.URL, Secret: secret, Count: func(typ, outcome string) {
			metricNotifications.WithLabelValues(typ, outcome).Inc()
		}})
		return sharedNotifier{n}, err
	})
	if err != nil {
		return err
	}
	a.notifier = val.(sharedNotifier).Notifier
	return nil
}

// cleanupNotify gives the notifier back to the pool, which stops it when
// no config uses it.
func (a *App) cleanupNotify() {
	if a.notifyKey != "" {
		_, _ = notifiers.Delete(a.notifyKey)
		a.notifyKey = ""
	}
}

// moved is every store's Config.Moved: the live app tells of each
// low_balance threshold that an account's balance + held fell below.
func moved(account string, before, after int64) {
	a := liveApp()
	if a == nil || a.Notify == nil {
		return
	}
	for _, t := range a.Notify.LowBalance {
		if before >= t && after < t {
			a.tell(notify.Event{Type: notify.LowBalance, Account: account, Balance: after, Threshold: &t})
		}
	}
}

// tell emits a Caddy event tollgate.<type> and, when the notify block
// names its type, sends the notification. Event handlers run apart from
// the request or the store operation that told, which never waits for
// them.
func (a *App) tell(e notify.Event) {
	data := map[string]any{"account": e.Account, "balance": e.Balance}
	if e.Threshold != nil {
		data["threshold"] = *e.Threshold
	}
	if e.Amount != nil {
		data["amount"] = *e.Amount
	}
	if a.events != nil {
		go a.events.Emit(a.ctx, "tollgate."+e.Type, data)
	}
	if a.notifier != nil && (len(a.Notify.Events) == 0 || slices.Contains(a.Notify.Events, e.Type)) {
		a.notifier.Send(e)
	}
}

// credited tells of a credit that landed.
func (a *App) credited(account string, amount, balance int64) {
	a.tell(notify.Event{Type: notify.Credited, Account: account, Balance: balance, Amount: &amount})
}

// parseNotify parses the notify block of the global option:
//
//	notify {
//		url         <url>
//		secret      <secret>
//		low_balance <threshold>...
//		events      low_balance|depleted|credited...
//	}
func parseNotify(d *caddyfile.Dispenser) (*NotifyConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(NotifyConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "url", "secret":
			name := d.Val()
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if name == "url" {
				c.URL = d.Val()
			} else {
				c.Secret = d.Val()
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "low_balance":
			for d.NextArg() {
				n, err := strconv.ParseInt(d.Val(), 10, 64)
				if err != nil {
					return nil, d.Errf("low_balance thresholds must be integers, not %q", d.Val())
				}
				c.LowBalance = append(c.LowBalance, n)
			}
			if len(c.LowBalance) == 0 {
				return nil, d.ArgErr()
			}
		case "events":
			c.Events = d.RemainingArgs()
			if len(c.Events) == 0 {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unknown notify option %q", d.Val())
		}
	}
	return c, nil
}

// Interface guards
var _ caddy.Destructor = sharedNotifier{}
