package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/tollgate-dev/tollgate/pricing"
)

// CompoundPrice is a price by request, by request and response bytes, and by
// usage the upstream reports. The terms add up, each rounded up on its own.
// A request under a compound price is held up front and settled when its
// response ends.
type CompoundPrice struct {
	// Request is the tokens each request costs. Default: 0.
	Request int64 `json:"request,omitempty"`

	// RequestBytes is "<amount> per <size>" of request body, such as
	// "1 per 1KiB". A body with a Content-Length is paid up front; one
	// without is held block by block as the upstream reads it. Default:
	// none.
	RequestBytes string `json:"request_bytes,omitempty"`

	// ResponseBytes is "<amount> per <size>" of response body as sent to the
	// client, such as "2 per 1MiB". Default: none.
	ResponseBytes string `json:"response_bytes,omitempty"`

	// UsageHeader is "<Header-Name> <amount> reserve <units>": the upstream
	// reports the units used in that response header or trailer, each costs
	// amount, and reserve units are held up front. Default: none.
	UsageHeader string `json:"usage_header,omitempty"`

	// HoldBlock is how many bytes are held per store call, in each
	// direction, rounded up to whole pricing units. Default: 1MiB.
	HoldBlock string `json:"hold_block,omitempty"`
}

// compile checks the price and returns its arithmetic.
func (c *CompoundPrice) compile() (pricing.Compound, error) {
	p := pricing.Compound{Request: c.Request}
	if c.Request < 0 || c.Request > pricing.MaxAmount {
		return p, fmt.Errorf("request must be an integer in [0, 2^53-1], not %d", c.Request)
	}
	for _, term := range []struct {
		name, value string
		rate        **pricing.Rate
	}{{"request_bytes", c.RequestBytes, &p.RequestBytes}, {"response_bytes", c.ResponseBytes, &p.ResponseBytes}} {
		if term.value == "" {
			continue
		}
		r, err := pricing.ParseRate(term.value)
		if err != nil {
			return p, fmt.Errorf("%s: %w", term.name, err)
		}
		*term.rate = &r
	}
	if c.UsageHeader != "" {
		u, err := parseUsage(c.UsageHeader)
		if err != nil {
			return p, err
		}
		p.Usage = &u
	}
	if c.HoldBlock != "" {
		if c.ResponseBytes == "" && c.RequestBytes == "" {
			return p, fmt.Errorf("hold_block needs a request_bytes or response_bytes price")
		}
		n, err := pricing.ParseSize(c.HoldBlock)
		if err != nil {
			return p, fmt.Errorf("hold_block: %w", err)
		}
		p.HoldBlock = n
	}
	if p.RequestBytes == nil && p.ResponseBytes == nil && p.Usage == nil {
		return p, fmt.Errorf("a compound price needs request_bytes, response_bytes or usage_header; for a price per request alone, write the amount")
	}
	if _, _, err := p.UpFront(0); err != nil {
		return p, fmt.Errorf("the up-front hold: %w", err)
	}
	return p, nil
}

// parseUsage parses "<Header-Name> <amount> reserve <units>".
func parseUsage(s string) (pricing.Usage, error) {
	f := strings.Fields(s)
	if len(f) != 4 || f[2] != "reserve" {
		return pricing.Usage{}, fmt.Errorf("usage_header must be <Header-Name> <amount> reserve <units>, not %q", s)
	}
	if !httpguts.ValidHeaderFieldName(f[0]) {
		return pricing.Usage{}, fmt.Errorf("usage_header: %q is not a header name", f[0])
	}
	amount, err := pricing.ParseAmount(f[1])
	if err != nil {
		return pricing.Usage{}, fmt.Errorf("usage_header: %w", err)
	}
	reserve, err := pricing.ParseAmount(f[3])
	if err != nil {
		return pricing.Usage{}, fmt.Errorf("usage_header reserve: %w", err)
	}
	return pricing.Usage{Header: http.CanonicalHeaderKey(f[0]), Amount: amount, Reserve: reserve}, nil
}
