package caddymodule

import (
	"testing"

	"github.com/tollgate-dev/tollgate/pricing"
)

// FuzzCompoundPrice checks that any compound price either is refused or has
// an up-front hold and totals within [0, 2^53-1], and that the total of a
// response that fits in the first block never exceeds the up-front hold.
func FuzzCompoundPrice(f *testing.F) {
	f.Add(int64(2), "1 per 1KiB", "2 per 1MiB", "X-Usage 3 reserve 10", "4MiB", int64(1500), int64(1<<20), int64(7))
	f.Add(int64(0), "", "1 per 1", "", "1", int64(0), int64(1), int64(0))
	f.Add(int64(0), "", "", "X-Tokens 1 reserve 9007199254740991", "", int64(0), int64(0), int64(-1))
	f.Add(int64(9007199254740991), "1 per 1", "", "", "", int64(1), int64(0), int64(0))
	f.Add(int64(1), "", "5 per 3", "", "10", int64(0), int64(9), int64(0))
	f.Fuzz(func(t *testing.T, request int64, reqBytes, respBytes, usage, block string, contentLength, sent, reported int64) {
		c := CompoundPrice{Request: request, RequestBytes: reqBytes, ResponseBytes: respBytes, UsageHeader: usage, HoldBlock: block}
		p, err := c.compile()
		if err != nil || contentLength < 0 || sent < 0 {
			return
		}
		maxHold, minHold, err := p.UpFront(contentLength)
		if err != nil {
			return
		}
		if minHold < 1 || minHold > maxHold || maxHold > pricing.MaxAmount {
			t.Fatalf("%+v: up-front hold [%d, %d]", c, minHold, maxHold)
		}
		if p.ResponseBytes != nil && sent > p.Block() {
			sent = p.Block()
		}
		total, err := p.Total(contentLength, sent, reported, reported >= 0)
		if err != nil {
			t.Fatalf("%+v: total of what the up-front hold covers: %v", c, err)
		}
		if total < 0 || total > maxHold {
			t.Fatalf("%+v: total %d outside [0, %d] for %d sent", c, total, maxHold, sent)
		}
	})
}
