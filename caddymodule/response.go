package caddymodule

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// responseWriter sets Tollgate's response headers when the headers go out,
// in place of any the upstream sent under those names. Under a compound
// price it also meters the body: no byte goes out that the hold does not
// pay for.
type responseWriter struct {
	caddyhttp.ResponseWriterWrapper
	charged, balance, op, held string

	// payer, when the request is paid, runs with the status just before
	// the headers go out.
	payer       payer
	wroteHeader bool

	// meter is the hold of a request under a compound price, or nil.
	meter *held
	head  bool  // a HEAD request: it has no body to meter
	sent  int64 // the body bytes written, when there is no meter
}

// WriteHeader sets Tollgate's headers, then writes the status. An
// informational response (such as 103 Early Hints) goes out without the
// upstream's tollgate-* headers and usage report.
func (w *responseWriter) WriteHeader(status int) {
	if w.wroteHeader {
		w.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		h := w.Header()
		dropTollgateHeaders(h)
		if w.meter != nil && w.meter.price.Usage != nil {
			delete(h, w.meter.price.Usage.Header)
		}
		w.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	w.wroteHeader = true
	if w.payer != nil {
		w.payer.header(w, status)
	}
	w.setHeaders(w.Header())
	w.ResponseWriterWrapper.WriteHeader(status)
}

// Write writes the headers first, as a 200, if they have not gone out. Under
// a compound price it writes only what the hold pays for, holding the next
// block when b goes past it; what it cannot pay for ends in errCutOff.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.meter == nil || w.head {
		n, err := w.ResponseWriterWrapper.Write(b)
		w.sent += int64(n)
		return n, err
	}
	n, cut := w.meter.grant(&w.meter.resp, int64(len(b)))
	n = min(n, int64(len(b)))
	written, err := w.ResponseWriterWrapper.Write(b[:n])
	if int64(written) < n {
		w.meter.unsent(&w.meter.resp, n-int64(written))
	}
	if err == nil {
		err = cut
	}
	return written, err
}

// ReadFrom copies src to the client, through the underlying ReadFrom (so
// file_server keeps sendfile) in windows the hold already pays for.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.meter == nil || w.head {
		n, err := w.ResponseWriterWrapper.ReadFrom(src)
		w.sent += n
		return n, err
	}
	var total int64
	var buf []byte
	for {
		if window := w.meter.window(); window >= readFromWindow {
			n, err := w.ResponseWriterWrapper.ReadFrom(io.LimitReader(src, window))
			w.meter.passed(&w.meter.resp, n)
			total += n
			if err != nil || n < window {
				return total, err
			}
			continue
		}
		// Near the end of what is held, or of a known Content-Length, the
		// bytes go through Write, which holds more or settles first.
		if buf == nil {
			buf = make([]byte, readFromWindow)
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, err := w.Write(buf[:nr])
			total += int64(nw)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// readFromWindow is the least a ReadFrom window is worth: below it, bytes
// are copied through Write.
const readFromWindow = 32 << 10

// dropTollgateHeaders removes every tollgate-* header.
func dropTollgateHeaders(h http.Header) {
	for name := range h {
		if len(name) > 9 && strings.EqualFold(name[:9], "tollgate-") {
			delete(h, name)
		}
	}
}

// setHeaders drops every tollgate-* header and sets Tollgate's own, their
// values in one allocation.
func (w *responseWriter) setHeaders(h http.Header) {
	dropTollgateHeaders(h)
	values := make([]string, 0, 4)
	set := func(name, value string) {
		if value != "" {
			values = append(values, value)
			h[name] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	set("Tollgate-Charged", w.charged)
	set("Tollgate-Held", w.held)
	set("Tollgate-Balance", w.balance)
	set("Tollgate-Op", w.op)
}

// FlushError writes the headers first, as a 200, if they have not gone out,
// then flushes: http.ResponseController calls it.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(&w.ResponseWriterWrapper).Flush()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return &w.ResponseWriterWrapper }

// Interface guards
var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ io.ReaderFrom       = (*responseWriter)(nil)
)
