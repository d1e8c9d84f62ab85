package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// responseWriter sets Tollgate's response headers when the headers go out,
// in place of any the upstream sent under those names.
type responseWriter struct {
	*caddyhttp.ResponseWriterWrapper
	charged, balance, op string

	// onHeader runs with the status just before the headers go out.
	onHeader    func(status int)
	wroteHeader bool
}

// WriteHeader sets Tollgate's headers, then writes the status.
func (w *responseWriter) WriteHeader(status int) {
	if w.wroteHeader || (status >= 100 && status < 200 && status != http.StatusSwitchingProtocols) {
		w.ResponseWriterWrapper.WriteHeader(status)
		return
	}
	w.wroteHeader = true
	if w.onHeader != nil {
		w.onHeader(status)
	}
	w.setHeaders(w.Header())
	w.ResponseWriterWrapper.WriteHeader(status)
}

// Write writes the headers first, as a 200, if they have not gone out.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(b)
}

// setHeaders drops every tollgate-* header and sets Tollgate's own.
func (w *responseWriter) setHeaders(h http.Header) {
	for name := range h {
		if len(name) > 9 && strings.EqualFold(name[:9], "tollgate-") {
			delete(h, name)
		}
	}
	h.Set("Tollgate-Charged", w.charged)
	if w.balance != "" {
		h.Set("Tollgate-Balance", w.balance)
	}
	if w.op != "" {
		h.Set("Tollgate-Op", w.op)
	}
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriterWrapper }
