package meter

import "time"

// Limits on identifiers and text.
const (
	maxAccountLen = 128
	maxOpLen      = 255
	maxIDLen      = 255
	maxReasonLen  = 256
)

// MaxLabel is the longest method or route a ledger entry records, in
// bytes.
const MaxLabel = 1024

// ValidAccount reports whether id is a valid account id: 1-128 bytes, each
// 0x21-0x7E, and neither "." nor "..".
func ValidAccount(id string) bool {
	return len(id) <= maxAccountLen && printable(id, false) && id != "." && id != ".."
}

// ValidAmount reports whether n is in [0, MaxAmount].
func ValidAmount(n int64) bool { return n >= 0 && n <= MaxAmount }

// printable reports whether s is non-empty and every byte is 0x21-0x7E, or
// also a space when spaces is true.
func printable(s string, spaces bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x21 || c > 0x7e) && !(spaces && c == ' ') {
			return false
		}
	}
	return true
}

func checkAccount(id string) error {
	if !ValidAccount(id) {
		return invalid("account id must be 1-128 printable ASCII bytes without spaces, and not . or ..")
	}
	return nil
}

func checkOp(op string) error {
	if len(op) > maxOpLen || !printable(op, false) {
		return invalid("op must be 1-255 printable ASCII bytes without spaces")
	}
	return nil
}

// checkPositive checks an amount that must be in [1, MaxAmount].
func checkPositive(name string, n int64) error {
	if n < 1 || n > MaxAmount {
		return invalid("%s must be an integer in [1, 2^53-1]", name)
	}
	return nil
}

// checkAmount checks an amount that must be in [0, MaxAmount].
func checkAmount(name string, n int64) error {
	if !ValidAmount(n) {
		return invalid("%s must be an integer in [0, 2^53-1]", name)
	}
	return nil
}

func checkLabel(name, s string) error {
	if len(s) > MaxLabel {
		return invalid("%s is longer than %d bytes", name, MaxLabel)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < time.Millisecond || ttl > 366*24*time.Hour {
		return invalid("hold ttl must be between 1ms and 366 days")
	}
	return nil
}

func checkRequest(account, op string) error {
	if err := checkAccount(account); err != nil {
		return err
	}
	return checkOp(op)
}

func (c Charge) validate() error {
	if err := checkRequest(c.Account, c.Op); err != nil {
		return err
	}
	if err := checkPositive("amount", c.Amount); err != nil {
		return err
	}
	if err := checkAmount("bonus", c.Bonus); err != nil {
		return err
	}
	if err := checkLabel("method", c.Method); err != nil {
		return err
	}
	if err := checkLabel("line", c.Line); err != nil {
		return err
	}
	return checkLabel("route", c.Route)
}

func (h Hold) validate() error {
	if err := checkRequest(h.Account, h.Op); err != nil {
		return err
	}
	if err := checkPositive("max", h.Max); err != nil {
		return err
	}
	if err := checkPositive("min", h.Min); err != nil {
		return err
	}
	if h.Min > h.Max {
		return invalid("min must not exceed max")
	}
	if err := checkTTL(h.TTL); err != nil {
		return err
	}
	if err := checkAmount("bonus", h.Bonus); err != nil {
		return err
	}
	if err := checkLabel("method", h.Method); err != nil {
		return err
	}
	if err := checkLabel("line", h.Line); err != nil {
		return err
	}
	return checkLabel("route", h.Route)
}

func (e Extend) validate() error {
	if err := checkRequest(e.Account, e.Op); err != nil {
		return err
	}
	if e.Seq < 1 || e.Seq > MaxAmount {
		return invalid("seq must be an integer in [1, 2^53-1]")
	}
	if err := checkAmount("max", e.Max); err != nil {
		return err
	}
	if err := checkAmount("min", e.Min); err != nil {
		return err
	}
	if e.Min > e.Max {
		return invalid("min must not exceed max")
	}
	if e.Max > 0 && e.Min == 0 {
		return invalid("an extension that adds tokens needs min of at least 1")
	}
	return checkTTL(e.TTL)
}

func (s Settle) validate() error {
	if err := checkRequest(s.Account, s.Op); err != nil {
		return err
	}
	return checkAmount("amount", s.Amount)
}

func (r Release) validate() error {
	if err := checkRequest(r.Account, r.Op); err != nil {
		return err
	}
	if r.Reason != ReasonRefundOn && r.Reason != ReasonNotForwarded {
		return invalid("release reason must be refund_on or not_forwarded")
	}
	return nil
}

func (r Refund) validate() error {
	if err := checkRequest(r.Account, r.Op); err != nil {
		return err
	}
	if err := checkPositive("amount", r.Amount); err != nil {
		return err
	}
	if r.Reason != ReasonRefundOn && r.Reason != ReasonNotForwarded {
		return invalid("refund reason must be refund_on or not_forwarded")
	}
	return nil
}

func (c Cancel) validate() error { return checkRequest(c.Account, c.Op) }

// MaxLeaseParts bounds the charges, and the refunds, of one call on a
// lease.
const MaxLeaseParts = 1000

func (l Lease) validate() error {
	if err := checkRequest(l.Account, l.Op); err != nil {
		return err
	}
	if l.Seq < 1 || l.Seq > MaxAmount {
		return invalid("seq must be an integer in [1, 2^53-1]")
	}
	if err := checkTTL(l.TTL); err != nil {
		return err
	}
	if err := checkAmount("grow", l.Grow); err != nil {
		return err
	}
	if err := checkAmount("shrink", l.Shrink); err != nil {
		return err
	}
	switch {
	case l.Grow > 0 && l.Shrink > 0:
		return invalid("a lease call grows or shrinks, not both")
	case l.Drain < 0:
		return invalid("drain must not be negative")
	case len(l.Charges) > MaxLeaseParts || len(l.Refunds) > MaxLeaseParts:
		return invalid("a lease call takes at most %d charges and %d refunds", MaxLeaseParts, MaxLeaseParts)
	case l.Seq == 1 && (l.Grow < 1 || l.Shrink > 0 || l.Close || len(l.Charges) > 0 || len(l.Refunds) > 0):
		return invalid("the first call on a lease only takes it, of at least 1 token")
	}
	var charged, refunded int64
	for _, c := range l.Charges {
		if err := checkPositive("charge amount", c.Amount); err != nil {
			return err
		}
		if err := checkPositive("charge count", c.Count); err != nil {
			return err
		}
		if err := checkLabel("method", c.Method); err != nil {
			return err
		}
		if err := checkLabel("route", c.Route); err != nil {
			return err
		}
		if err := checkLabel("line", c.Line); err != nil {
			return err
		}
		if charged += c.Amount; charged > MaxAmount {
			return invalid("charges exceed 2^53-1")
		}
	}
	for _, r := range l.Refunds {
		if r.Seq < 2 || r.Seq >= l.Seq {
			return invalid("a refund names an earlier call on the lease")
		}
		if err := checkPositive("refund amount", r.Amount); err != nil {
			return err
		}
		if err := checkPositive("refund count", r.Count); err != nil {
			return err
		}
		if err := checkLabel("line", r.Line); err != nil {
			return err
		}
		if refunded += r.Amount; refunded > MaxAmount {
			return invalid("refunds exceed 2^53-1")
		}
	}
	return nil
}

func (t Transfer) validate() error {
	if err := checkAccount(t.Account); err != nil {
		return err
	}
	if err := checkID("id", t.ID); err != nil {
		return err
	}
	if err := checkPositive("amount", t.Amount); err != nil {
		return err
	}
	return checkNote(t.Reason, t.By)
}

// checkID checks an id the caller chose: 1-255 printable bytes.
func checkID(name, id string) error {
	if len(id) > maxIDLen || !printable(id, false) {
		return invalid("%s must be 1-255 printable ASCII bytes without spaces", name)
	}
	return nil
}

// checkNote checks the reason and the author an entry records.
func checkNote(reason, by string) error {
	if len(reason) > maxReasonLen || (reason != "" && !printable(reason, true)) {
		return invalid("reason must be at most 256 printable bytes")
	}
	if len(by) > maxIDLen || (by != "" && !printable(by, false)) {
		return invalid("by must be at most 255 printable ASCII bytes without spaces")
	}
	return nil
}

func (r Read) validate() error {
	if err := checkAccount(r.Account); err != nil {
		return err
	}
	if r.Mode != Caller && r.Mode != Operator {
		return invalid("unknown read mode")
	}
	return checkAmount("bonus", r.Bonus)
}

func (q *LedgerQuery) validate() error {
	if err := q.Read.validate(); err != nil {
		return err
	}
	if q.Limit == 0 {
		q.Limit = DefaultLedgerLimit
	}
	if q.Limit < 1 || q.Limit > MaxLedgerLimit {
		return invalid("limit must be 1-1000")
	}
	if q.Before != "" {
		if _, _, ok := parseEntryID(q.Before); !ok {
			return invalid("before must be a ledger entry id")
		}
	}
	return nil
}
