package caddymodule

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
)

// LeaseConfig says how per-request prices are paid from leases (package
// lease): holds that this gateway takes on an account and spends locally.
type LeaseConfig struct {
	// Off charges every request on its own, with one store call each.
	// Default: false with store redis. With store memory, leases are on only
	// when this config is given.
	Off bool `json:"off,omitempty"`

	// Size is the tokens a lease holds; 0 sizes each lease from the
	// account's recent rate on this gateway. Default: 0 (auto).
	Size int64 `json:"size,omitempty"`

	// Flush is how often what leases spent is charged in the store.
	// Default: 100ms.
	Flush caddy.Duration `json:"flush,omitempty"`

	// MinBalance is the available balance below which requests are charged
	// one by one. Default: 1000.
	MinBalance *int64 `json:"min_balance,omitempty"`
}

// Lease bounds.
const (
	minLeaseFlush = time.Millisecond
	maxLeaseFlush = time.Minute
)

// validate checks the lease settings against the hold expiry.
func (c *LeaseConfig) validate(holdExpiry time.Duration) error {
	flush := time.Duration(c.Flush)
	switch {
	case c.Size < 0 || c.Size > meter.MaxAmount:
		return fmt.Errorf("lease size must be auto or an integer in [1, %d], not %d", meter.MaxAmount, c.Size)
	case c.Flush != 0 && (flush < minLeaseFlush || flush > maxLeaseFlush):
		return fmt.Errorf("lease flush must be between %s and %s, not %s", minLeaseFlush, maxLeaseFlush, flush)
	case c.Flush != 0 && flush > holdExpiry/4:
		return fmt.Errorf("lease flush must be at most a quarter of hold_expiry (%s), not %s", holdExpiry, flush)
	case c.MinBalance != nil && (*c.MinBalance < 0 || *c.MinBalance > meter.MaxAmount):
		return fmt.Errorf("lease min_balance must be an integer in [0, %d], not %d", meter.MaxAmount, *c.MinBalance)
	}
	return nil
}

// leasing reports whether per-request prices are paid from leases.
func (a *App) leasing() bool {
	if a.Lease != nil {
		return !a.Lease.Off
	}
	return a.Store != nil && a.Store.Kind == "redis"
}

// provisionLeases makes the app's lease manager, when it leases. It starts
// working on the first request that an account's lease could pay.
func (a *App) provisionLeases() {
	if !a.leasing() {
		return
	}
	c := a.Lease
	if c == nil {
		c = &LeaseConfig{}
	}
	cfg := lease.Config{
		Size:       c.Size,
		Flush:      time.Duration(c.Flush),
		MinBalance: lease.DefaultMinBalance,
		TTL:        a.holdExpiry(),
		Logger:     a.logger.Named("lease"),
		Called: func(charged int64, err error) {
			if err == nil {
				metricLeaseFlushes.Inc()
				tokensCharged.Add(float64(charged))
			}
		},
		Lost: func(tokens int64) { metricLeaseUnbilled.Add(float64(tokens)) },
	}
	if c.MinBalance != nil {
		cfg.MinBalance = *c.MinBalance
	}
	a.leases = lease.New(a.store, cfg)
}

// leaseCloseTimeout bounds how long a config's end waits for its leases to
// be charged and given back; what is left goes on in the background.
const leaseCloseTimeout = 5 * time.Second

// stopLeases charges what every lease spent and gives back what it holds.
func (a *App) stopLeases() {
	if a.leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseCloseTimeout)
	defer cancel()
	if err := a.leases.Close(ctx); err != nil {
		a.logger.Warn("leases not all given back yet; going on in the background")
	}
}

// parseLease parses the lease option:
//
//	lease off
//	lease {
//		size        auto|<tokens>
//		flush       <duration>
//		min_balance <tokens>
//	}
func parseLease(d *caddyfile.Dispenser) (*LeaseConfig, error) {
	c := new(LeaseConfig)
	if d.NextArg() {
		if d.Val() != "off" {
			return nil, d.Errf("lease takes off or a block, not %q", d.Val())
		}
		c.Off = true
		return c, nil
	}
	for d.NextBlock(1) {
		switch d.Val() {
		case "size":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if d.Val() == "auto" {
				c.Size = 0
				break
			}
			n, err := strconv.ParseInt(d.Val(), 10, 64)
			if err != nil || n < 1 || d.Val() != strconv.FormatInt(n, 10) {
				return nil, d.Errf("lease size must be auto or a positive integer, not %q", d.Val())
			}
			c.Size = n
		case "flush":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			c.Flush = dur
		case "min_balance":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			c.MinBalance = &n
		default:
			return nil, d.Errf("unknown lease option %q", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return c, nil
}
