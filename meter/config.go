package meter

import "time"

// Config holds what both stores share.
type Config struct {
	// Retention is how many ledger entries are kept per account. The running
	// totals are never trimmed. Default: 10000.
	Retention int

	// OpRetention is how long a request op is remembered after it closes, so
	// that repeating it changes nothing. Default: 24h.
	OpRetention time.Duration

	// Moved, when set, is called after an operation that changed what an
	// account has, balance + held (so not a hold, a lease or a release),
	// with that sum before and after it. It is called once, by the
	// operation that made the change, and never for a replay, so a
	// threshold that the sum crosses is crossed once across all gateways.
	// It must not block. Default: none.
	Moved func(account string, before, after int64)

	// Now is the gateway's clock. The memory store keeps time by it; the
	// Redis store uses it only to measure intervals, never comparing it with
	// Redis's clock. Default: time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.OpRetention <= 0 {
		c.OpRetention = DefaultOpRetention
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
