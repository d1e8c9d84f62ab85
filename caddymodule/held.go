package caddymodule

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/pricing"
)

// errCutOff is what a held response's Write returns when the next block
// cannot be paid or the hold is gone. reverse_proxy turns it into an abort on
// the handler's goroutine.
var errCutOff = errors.New("response cut off: the next block could not be held")

// holdState is where a held request's hold stands. Its transitions, each
// made under held.mu:
//
//	open     -> settled   settle: the response ended (or reached its
//	                      Content-Length, or its usage header came), or it
//	                      was cut off; a settle the store could not take now
//	                      is retried in the background and counts as made
//	open     -> released  release: refund_on lists the status or the abort
//	open     -> gone      an extension, renewal or settle found the hold
//	                      expired, released or cancelled in the store
//	open     -> unbilled  an extension failed under on_store_error allow
//	unbilled -> settled   settle charges what the hold covered
//	unbilled -> released  release, as from open
//
// settled, released and gone are final. Besides its state, a held request
// records what it learned on the way: where Tollgate cut it off (cut), that
// the balance ran out (short),
// that the client broke it (clientFailed), that no more blocks may be held
// after a failed renewal (noMore), the usage report (usage, reported,
// trailer), and that end has run (ended).
type holdState uint8

const (
	holdOpen     holdState = iota // held; response bytes are metered
	holdSettled                   // settled, or its settle is retried in the background
	holdReleased                  // released for refund_on
	holdGone                      // expired or closed elsewhere: nothing more is delivered
	holdUnbilled                  // an extension failed under allow: the rest is unbilled
)

// cutWhere is where Tollgate cut a held request off.
type cutWhere uint8

const (
	cutNone     cutWhere = iota
	cutResponse          // no more response bytes were paid for, or the hold is gone
	cutUpload            // no more request bytes were paid for
)

// cutResponse cuts the response off, unless the request was cut off
// already. Called with mu held.
func (hr *held) cutResponse() {
	if hr.cut == cutNone {
		hr.cut = cutResponse
	}
}

// usageReport is what a held request knows of the upstream's usage report.
type usageReport uint8

const (
	usageUnread usageReport = iota // no report came yet
	usageRead                      // a readable report came: reported
	usageBad                       // the report was missing or unreadable
)

// held is a request under a compound price: its hold, the response bytes
// sent against it, and its settlement, which happens exactly once.
type held struct {
	h        *Handler
	price    *pricing.Compound
	account  string
	op       string
	ctx      context.Context // detached from the client
	ttl      time.Duration
	fixed    int64 // tokens of the hold that are not for response bytes
	reqBytes int64 // the request's Content-Length

	// Placeholders, changed in place once the request was forwarded.
	charged, balanceVar *liveAmount

	mu           sync.Mutex
	state        holdState
	amount       int64 // tokens held
	balance      int64 // the available balance after the last store call
	seq          int64 // the last extension's sequence number
	lastAck      time.Time
	req, resp    flow  // request bytes (without a Content-Length) and response bytes
	length       int64 // the response's Content-Length, or -1
	cut          cutWhere
	short        bool // the balance ran out: an extension was refused for it, or granted less than its bytes need
	clientFailed bool // the client's body broke, or the client left
	ended        bool // end has run
	noMore       bool // a renewal failed under deny: no more blocks are held
	reported     int64
	usage        usageReport
	trailer      bool // the response announced the usage trailer
	timer        *time.Timer
	conn         net.Conn // the connection, once hijacked for an upgrade
}

// newHeld returns the state of a request whose up-front hold r was taken at
// start, for fixed tokens besides its metered bytes.
//
// reqBytes is the request's Content-Length, or -1 for a body of unknown
// length under a request_bytes price, metered as it is read: the hold then
// pays for its first block before the response's.
func newHeld(ctx context.Context, h *Handler, price *pricing.Compound, account, op string, r meter.Receipt, fixed, reqBytes int64, start time.Time) *held {
	hr := &held{
		h: h, price: price, account: account, op: op, ctx: ctx,
		ttl: h.app.holdExpiry(), fixed: fixed, reqBytes: reqBytes,
		charged: new(liveAmount), balanceVar: new(liveAmount),
		amount: r.Amount, balance: r.Balance, lastAck: start, length: -1,
	}
	hr.balanceVar.Store(r.Balance)
	tokens := r.Amount - fixed
	if reqBytes < 0 {
		hr.reqBytes = 0
		hr.req = flow{rate: price.RequestBytes, block: price.BlockOf(price.RequestBytes)}
		respMin := int64(0)
		if price.ResponseBytes != nil {
			respMin = price.ResponseBytes.Amount
		}
		maxTokens, _ := hr.req.extension(0)
		hr.req.tokens = min(tokens-respMin, maxTokens)
		tokens -= hr.req.tokens
	}
	hr.resp = flow{rate: price.ResponseBytes, block: price.Block(), tokens: tokens}
	hr.mu.Lock()
	hr.timer = time.AfterFunc(hr.ttl/3, hr.renew)
	hr.mu.Unlock()
	return hr
}

// grant returns how many of the next n bytes of flow f may pass now, holding
// the next block first when they go past what is held. Fewer than n come with
// errCutOff. When response bytes complete a known Content-Length, the request
// is settled first.
//
// The bytes granted count as passed at once, under the same lock as the
// settle, so that no settle can miss them; a writer that sends fewer gives
// the rest back with unsent.
func (hr *held) grant(f *flow, n int64) (int64, error) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	k, err := hr.grantLocked(f, n)
	f.sent += k
	return k, err
}

// unsent gives back n bytes of flow f that grant allowed but that did not
// go out.
func (hr *held) unsent(f *flow, n int64) {
	hr.mu.Lock()
	f.sent -= n
	hr.mu.Unlock()
}

// grantLocked is grant's decision, with mu held.
func (hr *held) grantLocked(f *flow, n int64) (int64, error) {
	switch {
	case hr.state == holdGone:
		return hr.stop(f, 0)
	case hr.state == holdOpen:
	case hr.state == holdUnbilled:
		return n, nil
	case f == &hr.req && f.rate != nil:
		// A body still read after the request settled would go unpaid; the
		// response it belongs to is over and stays whole.
		return 0, errCutOff
	default:
		return n, nil
	}
	if hr.cut != cutNone {
		return 0, errCutOff
	}
	var long error
	if f == &hr.resp && hr.length >= 0 && f.sent+n > hr.length {
		// net/http refuses a write past the Content-Length; pass on only
		// what completes it.
		n, long = max(hr.length-f.sent, 0), http.ErrContentLength
	}
	if time.Since(hr.lastAck) >= hr.ttl/2 && (f.sent+n <= f.covered() || hr.noMore) {
		// A stalled process must not pass bytes under a hold that may have
		// expired.
		if !hr.extend(nil, 0, 0) {
			return hr.stop(f, 0)
		}
	}
	if f.sent+n > f.covered() {
		maxTokens, minTokens := f.extension(n)
		if hr.noMore || !hr.extend(f, maxTokens, minTokens) {
			return hr.stop(f, f.covered()-f.sent)
		}
		if hr.state == holdUnbilled {
			return n, long
		}
		if f.sent+n > f.covered() {
			// The store granted what the balance had left, less than
			// these bytes need: the balance ran out.
			hr.short = true
			return hr.stop(f, f.covered()-f.sent)
		}
	}
	if f == &hr.resp && hr.length >= 0 && f.sent+n == hr.length && hr.usageSettles() {
		// The client has the whole response with this write: settle first,
		// so that its balance shows the charge when it has read the end.
		f.sent += n
		hr.settle(false)
		f.sent -= n
		if hr.state == holdGone {
			return hr.stop(f, 0)
		}
	}
	return n, long
}

// stop cuts the request off after n more bytes of flow f.
func (hr *held) stop(f *flow, n int64) (int64, error) {
	if f == &hr.req {
		hr.cut = cutUpload
	} else if hr.cut == cutNone {
		hr.cut = cutResponse
	}
	return max(n, 0), errCutOff
}

// usageSettles reports that nothing about the usage is still to come: there
// is no usage price, the upstream's header reported it, or no trailer was
// announced to report it.
func (hr *held) usageSettles() bool {
	return hr.price.Usage == nil || hr.usage != usageUnread || !hr.trailer
}

// extend adds up to maxTokens to the hold for flow f (none for a renewal),
// at least minTokens, and renews it. It reports whether the request may go
// on; when it may not, the state says why. Called with mu held.
func (hr *held) extend(f *flow, maxTokens, minTokens int64) bool {
	hr.seq++
	start := time.Now()
	r, err := hr.h.app.store.Extend(hr.ctx, meter.Extend{
		Account: hr.account, Op: hr.op, Seq: hr.seq, Max: maxTokens, Min: minTokens, TTL: hr.ttl,
	})
	observeSince(storeExtend, start)
	var short *meter.InsufficientError
	switch {
	case err == nil:
		hr.amount, hr.balance, hr.lastAck = r.Held, r.Balance, start
		hr.balanceVar.Store(r.Balance)
		if f != nil {
			f.tokens += r.Amount
		}
		return true
	case errors.As(err, &short):
		hr.balance, hr.short = short.Balance, true
		hr.balanceVar.Store(short.Balance)
		return false
	case isGone(err) && hr.state == holdUnbilled:
		// The rest goes unbilled already.
		return true
	case isGone(err):
		hr.h.logger.Warn("hold gone before its request ended; cutting the response off", zap.String("op", hr.op))
		hr.state = holdGone
		return false
	case errors.Is(err, meter.ErrUnavailable) && hr.h.app.OnStoreError == OnStoreErrorAllow:
		if hr.state == holdOpen {
			countUnbilled.Inc()
			hr.h.logger.Warn("store unavailable: delivering the rest unbilled", zap.String("op", hr.op), zap.Error(err))
			hr.state = holdUnbilled
		}
		return true
	default:
		hr.h.logger.Error("extending a hold failed; cutting the response off at what is held", zap.String("op", hr.op), zap.Error(err))
		return false
	}
}

// renew keeps the hold alive while the request is, every ttl/3. A renewal
// that fails under deny stops further blocks: the response goes on to what is
// held.
func (hr *held) renew() {
	hr.mu.Lock()
	if hr.state != holdOpen && hr.state != holdUnbilled {
		hr.mu.Unlock()
		return
	}
	if !hr.extend(nil, 0, 0) && hr.state == holdOpen {
		hr.noMore = true
	}
	var idle net.Conn
	if hr.state == holdGone && hr.conn != nil {
		// An idle upgraded connection whose hold is gone is closed, once
		// the lock is let go.
		hr.cutResponse()
		idle = hr.conn
	}
	if hr.state == holdOpen || hr.state == holdUnbilled {
		hr.timer.Reset(hr.ttl / 3)
	}
	hr.mu.Unlock()
	if idle != nil {
		idle.Close()
	}
}

// total is what the request costs with the bytes passed so far: the formula
// of the price, never more than is held. Bytes delivered unbilled are not
// counted.
func (hr *held) total() int64 {
	reported, ok := hr.reported, hr.usage == usageRead
	reqBytes, respBytes := hr.reqBytes, hr.resp.sent
	if hr.req.rate != nil {
		reqBytes = hr.req.sent
	}
	if hr.state == holdUnbilled {
		reqBytes, respBytes = min(reqBytes, hr.req.covered()), min(respBytes, hr.resp.covered())
	}
	t, err := hr.price.Total(reqBytes, respBytes, reported, ok)
	if err != nil {
		return hr.amount
	}
	return min(t, hr.amount)
}

// settle charges the price of the bytes passed and releases the rest of the
// hold, or retries in the background while the store cannot be reached.
// Called with mu held.
func (hr *held) settle(cutOff bool) {
	if hr.state != holdOpen && hr.state != holdUnbilled {
		return
	}
	hr.timer.Stop()
	if hr.price.Usage != nil && (hr.usage != usageRead || hr.reported > hr.price.Usage.Reserve) {
		metricUsageCapped.Inc()
		hr.h.logger.Warn("usage report missing, unreadable or above the reserve; settling at the reserve",
			zap.String("op", hr.op), zap.String("header", hr.price.Usage.Header))
	}
	s := meter.Settle{Account: hr.account, Op: hr.op, Amount: hr.total(), CutOff: cutOff}
	start := time.Now()
	r, err := hr.h.app.store.Settle(hr.ctx, s)
	observeSince(storeSettle, start)
	switch {
	case err == nil:
		hr.state = holdSettled
		hr.settled(r)
	case isGone(err):
		hr.h.logger.Warn("hold gone before it was settled: it was released in full", zap.String("op", hr.op))
		hr.state = holdGone
	case errors.Is(err, meter.ErrUnavailable):
		hr.state = holdSettled
		hr.charged.Store(s.Amount)
		hr.h.logger.Warn("settle failed; retrying in the background", zap.String("op", hr.op), zap.Error(err))
		metricUnsettled.Inc()
		hr.h.app.store.Retry(func(ctx context.Context) error {
			r, err := hr.h.app.store.Settle(ctx, s)
			if err == nil && !r.Replayed {
				tokensCharged.Add(float64(r.Amount))
			}
			return err
		})
	default:
		hr.state = holdSettled
		hr.h.logger.Error("settle refused", zap.String("op", hr.op), zap.Error(err))
	}
}

// settled records a settle's receipt.
func (hr *held) settled(r meter.Receipt) {
	if !r.Replayed {
		tokensCharged.Add(float64(r.Amount))
	}
	hr.amount, hr.balance = 0, r.Balance
	hr.charged.Store(r.Amount)
	hr.balanceVar.Store(r.Balance)
}

// release gives the whole hold back, for refund_on. Called with mu held.
func (hr *held) release() {
	if hr.state != holdOpen && hr.state != holdUnbilled {
		return
	}
	hr.timer.Stop()
	hr.state = holdReleased
	rl := meter.Release{Account: hr.account, Op: hr.op, Reason: meter.ReasonRefundOn}
	start := time.Now()
	r, err := hr.h.app.store.Release(hr.ctx, rl)
	observeSince(storeRelease, start)
	switch {
	case err == nil:
		hr.amount, hr.balance = 0, r.Balance
		hr.balanceVar.Store(r.Balance)
	case isGone(err):
	case errors.Is(err, meter.ErrUnavailable):
		hr.h.logger.Warn("release failed; retrying in the background", zap.String("op", hr.op), zap.Error(err))
		metricUnsettled.Inc()
		hr.h.app.store.Retry(func(ctx context.Context) error {
			_, err := hr.h.app.store.Release(ctx, rl)
			return err
		})
	default:
		hr.h.logger.Error("release refused", zap.String("op", hr.op), zap.Error(err))
	}
}

// header runs just before the response headers go out. It takes the usage
// header out of them, releases the hold for a refund_on status, settles a
// price the usage header completes, and sets Tollgate's headers.
func (hr *held) header(w *responseWriter, status int) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	h := w.Header()
	if u := hr.price.Usage; u != nil {
		if values, ok := h[u.Header]; ok {
			hr.report(values)
			delete(h, u.Header)
		}
		hr.trailer = unannounce(h, u.Header)
	}
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n >= 0 && status != http.StatusSwitchingProtocols {
		hr.length = n
	}
	switch {
	case hr.cut != cutNone:
		// Tollgate's own cut-off settles what was delivered.
	case hr.h.refundOn.status(status):
		hr.release()
	case hr.usage != usageUnread && hr.price.ResponseBytes == nil && hr.req.rate == nil:
		hr.settle(false)
	}
	w.charged = strconv.FormatInt(hr.charged.Load(), 10)
	w.held = strconv.FormatInt(hr.amount, 10)
	w.balance = strconv.FormatInt(hr.balance, 10)
}

// report reads the upstream's usage report.
func (hr *held) report(values []string) {
	hr.usage = usageBad
	if len(values) != 1 {
		return
	}
	v := strings.TrimSpace(values[0])
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > pricing.MaxAmount || strings.Trim(v, "0123456789") != "" {
		return
	}
	hr.usage, hr.reported = usageRead, n
}

// end settles the request when its handler has returned or panicked, unless
// it was settled or released already, and sets the values of Tollgate's
// headers on w for a response not written yet. An outcome the client caused
// (it left, or its body broke) is never refunded.
func (hr *held) end(w *responseWriter, o outcome) {
	if o.clientGone {
		// reverse_proxy may still report a 502 or 504 for it.
		hr.failedByClient()
	}
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if o.status != 0 {
		defer func() {
			w.charged, w.held, w.balance = hr.charged.String(), "0", hr.balanceVar.String()
		}()
	}
	if hr.ended {
		return
	}
	h, status, refundable := w.Header(), o.status, o.aborted
	hr.ended = true
	hr.timer.Stop()
	if u := hr.price.Usage; u != nil {
		// A trailer counts only when no header came first; either way the
		// client never sees it.
		if values := stripTrailer(h, u.Header); values != nil && hr.usage == usageUnread {
			hr.report(values)
		}
	}
	unbilled := hr.state == holdUnbilled
	switch {
	case hr.cut != cutNone:
		hr.settle(true)
	case refundable && hr.h.refundOn.aborted && !hr.clientFailed && hr.state == holdSettled:
		// The usage header settled the request before the upstream failed.
		if amount := hr.charged.Load(); amount > 0 {
			if r, ok := hr.h.refund(hr.ctx, hr.account, hr.op, amount); ok {
				hr.charged.Store(0)
				hr.balanceVar.Store(r.Balance)
			}
		}
	case !hr.clientFailed && (status != 0 && hr.h.refundOn.status(status) || refundable && hr.h.refundOn.aborted):
		hr.release()
	default:
		hr.settle(false)
	}
	// A hold found gone cuts off the end of a response still going out,
	// unless it was going out unbilled anyway.
	if hr.state == holdGone && status == 0 && !unbilled {
		hr.cutResponse()
	}
}

// hijacked records the connection of an upgraded request, to close it if
// its hold is found gone while it is idle.
func (hr *held) hijacked(c net.Conn) {
	hr.mu.Lock()
	hr.conn = c
	hr.mu.Unlock()
}

// passed records bytes of flow f passed on.
func (hr *held) passed(f *flow, n int64) {
	hr.mu.Lock()
	f.sent += n
	hr.mu.Unlock()
}

// isCutOff reports that Tollgate cut the response off.
func (hr *held) isCutOff() bool {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return hr.cut != cutNone
}

// stripTrailer removes the trailer name, in either of the forms a handler
// sets it, and returns its values.
func stripTrailer(h http.Header, name string) []string {
	var values []string
	for _, key := range []string{name, http.TrailerPrefix + name} {
		if v, ok := h[key]; ok {
			if values == nil {
				values = v
			}
			delete(h, key)
		}
	}
	return values
}

// unannounce removes name from the Trailer header, so that the client is
// not told of a trailer it will not get, and reports whether it was there.
func unannounce(h http.Header, name string) bool {
	values, ok := h["Trailer"]
	if !ok {
		return false
	}
	var keep []string
	found := false
	for _, v := range values {
		for _, n := range strings.Split(v, ",") {
			switch n = strings.TrimSpace(n); {
			case http.CanonicalHeaderKey(n) == name:
				found = true
			case n != "":
				keep = append(keep, n)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Trailer")
	} else {
		h["Trailer"] = []string{strings.Join(keep, ", ")}
	}
	return found
}

// maxReadFromWindow bounds a ReadFrom window, so that the hold's staleness
// is checked at least this often.
const maxReadFromWindow = 1 << 20

// window returns how many response bytes may go out now without a store
// call: what the hold pays for, at most maxReadFromWindow, short of the last
// byte of a known Content-Length, which is settled first; none when a
// renewal is due.
func (hr *held) window() int64 {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	switch {
	case hr.state == holdOpen && hr.cut == cutNone:
	case hr.state == holdGone || hr.cut != cutNone:
		return 0
	default:
		return math.MaxInt64
	}
	if time.Since(hr.lastAck) >= hr.ttl/2 {
		return 0
	}
	n := min(hr.resp.covered()-hr.resp.sent, maxReadFromWindow)
	if hr.length >= 0 && hr.usageSettles() {
		n = min(n, hr.length-hr.resp.sent-1)
	}
	return max(n, 0)
}

// flow is one direction of metered bytes: the tokens of the hold that pay for
// it, and the bytes that have passed.
type flow struct {
	rate   *pricing.Rate // nil when the direction is not metered
	block  int64         // bytes held per extension
	tokens int64         // tokens of the hold for this direction
	sent   int64         // bytes passed
}

// covered returns how many bytes the flow's tokens pay for.
func (f *flow) covered() int64 {
	if f.rate == nil {
		return math.MaxInt64
	}
	units := f.tokens / f.rate.Amount
	if units > math.MaxInt64/f.rate.Per {
		return math.MaxInt64
	}
	return units * f.rate.Per
}

// extension returns the extension that lets n more bytes through: up to the
// larger of a block and what they need, at least one pricing unit.
func (f *flow) extension(n int64) (maxTokens, minTokens int64) {
	need := f.rate.Units(f.sent+n) - f.tokens/f.rate.Amount
	units := max(f.block/f.rate.Per, need)
	if units > pricing.MaxAmount/f.rate.Amount {
		units = pricing.MaxAmount / f.rate.Amount
	}
	return units * f.rate.Amount, f.rate.Amount
}

// isGone reports a hold that is no longer there to extend, settle or
// release: expired or closed (ErrGone), cancelled, or lost by the store.
func isGone(err error) bool {
	return errors.Is(err, meter.ErrGone) || errors.Is(err, meter.ErrCancelled) || errors.Is(err, meter.ErrNotFound)
}
