package caddymodule

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/pricing"
)

// shadowed is the payer of a request under a shadow tollgate: it pays
// nothing and calls no store, and once the request ends it counts what the
// request would have cost, refund_on included, in
// tollgate_shadow_tokens_total and the var tollgate.shadow.
type shadowed struct {
	h        *Handler
	price    *Price
	r        *http.Request
	body     *countingBody // the request body, under a price by its bytes
	refunded bool          // the status is one refund_on lists

	reported   int64 // the usage the upstream reported in its headers
	reportedOK bool
}

// shadow forwards a priced request under a shadow tollgate.
func (h *Handler) shadow(rw *responseWriter, r *http.Request, next caddyhttp.Handler, price *Price) error {
	s := &shadowed{h: h, price: price, r: r}
	if c := price.compound; c != nil && c.RequestBytes != nil && r.Body != nil && r.Body != http.NoBody {
		s.body = &countingBody{ReadCloser: r.Body}
		r.Body = s.body
	}
	return forward(rw, r, next, s)
}

// header reads and removes the upstream's usage report, and notes whether
// refund_on lists the status.
func (s *shadowed) header(w *responseWriter, status int) {
	if c := s.price.compound; c != nil && c.Usage != nil {
		h := w.Header()
		if values, ok := h[c.Usage.Header]; ok {
			if len(values) == 1 {
				v := strings.TrimSpace(values[0])
				n, err := strconv.ParseInt(v, 10, 64)
				s.reported, s.reportedOK = n, err == nil && n <= pricing.MaxAmount && strings.Trim(v, "0123456789") == ""
			}
			delete(h, c.Usage.Header)
		}
	}
	s.refunded = s.h.refundOn.status(status)
}

// end counts what the request would have cost.
func (s *shadowed) end(w *responseWriter, o outcome) {
	var cost int64
	refunded := s.refunded || (o.status != 0 && s.h.refundOn.status(o.status)) || (o.aborted && s.h.refundOn.aborted)
	switch {
	case refunded && !o.clientGone:
	case s.price.compound != nil:
		var reqBytes int64
		if s.body != nil {
			reqBytes = s.body.n.Load()
		}
		cost, _ = s.price.compound.Total(reqBytes, w.sent, s.reported, s.reportedOK)
	default:
		cost = s.price.Amount
	}
	metricShadowTokens.WithLabelValues(s.price.line()).Add(float64(cost))
	caddyhttp.SetVar(s.r.Context(), "tollgate.shadow", cost)
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
