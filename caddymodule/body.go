package caddymodule

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
)

// heldBody meters a request body of unknown length under a request_bytes
// price: the bytes the upstream reads are held block by block, and a block
// that cannot be paid fails the read, so that the upstream never gets bytes
// that were not paid for.
type heldBody struct {
	io.ReadCloser
	hr *held
}

// Read reads from the client and passes on what the hold pays for. A body
// the client breaks (a bad chunk, a disconnect) marks the request as failed
// by the client, which refund_on never refunds.
func (b *heldBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.hr.failedByClient()
	}
	if n <= 0 {
		return n, err
	}
	granted, cut := b.hr.grant(&b.hr.req, int64(n))
	if cut != nil {
		return int(min(granted, int64(n))), cut
	}
	return n, err
}

// failedByClient records that the client broke the request.
func (hr *held) failedByClient() {
	hr.mu.Lock()
	hr.clientFailed = true
	hr.mu.Unlock()
}

// cutInBody reports that the request body was cut off.
func (hr *held) cutInBody() bool {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	return hr.cut == cutUpload
}

// drainTime is how long the rest of a refused upload is read and thrown
// away, so that the client reads the 402 rather than meeting a reset.
const drainTime = 500 * time.Millisecond

// refuseUpload answers a request whose body was cut off before any response
// began: it settles what was forwarded (never refunded), then answers 402
// with Connection: close, and drains the rest of the body briefly before
// closing.
func (hr *held) refuseUpload(w http.ResponseWriter, r *http.Request) error {
	hr.mu.Lock()
	if !hr.ended {
		hr.ended = true
		hr.timer.Stop()
		// The upstream never answered: there is no usage to pay for.
		hr.usage, hr.reported = usageRead, 0
		hr.settle(true)
	}
	price, _ := hr.req.extension(0)
	balance, short := hr.balance, hr.short
	hr.mu.Unlock()

	h := w.Header()
	h.Set("Tollgate-Charged", hr.charged.String())
	h.Set("Tollgate-Held", "0")
	h.Set("Tollgate-Balance", strconv.FormatInt(balance, 10))
	h.Set("Tollgate-Op", hr.op)
	if r.ProtoMajor == 1 {
		h.Set("Connection", "close")
	}
	p := storeUnavailable()
	if short {
		countInsufficient.Inc()
		p = insufficient(&meter.InsufficientError{Balance: balance, Price: price}, hr.h.app.TopupURL)
		p.Detail = "The balance does not cover the next block of the request body; what was forwarded is charged."
	} else {
		countStoreError.Inc()
		p.Detail = "Balances cannot be reached right now; the request body was cut off, and what was forwarded is charged."
		h.Set("Retry-After", "1")
	}
	if err := writeProblem(w, r, p); err != nil || r.ProtoMajor != 1 {
		return err
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return nil
	}
	conn, brw, err := rc.Hijack()
	if err != nil {
		return nil
	}
	defer conn.Close()
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(drainTime))
	if _, err := io.Copy(io.Discard, brw.Reader); err != nil && !isTimeout(err) {
		hr.h.logger.Debug("draining a refused upload", zap.String("op", hr.op), zap.Error(err))
	}
	return nil
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
