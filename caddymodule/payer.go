package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// payer is how a request pays its price: taken before the request is
// forwarded, then refunded or settled exactly once, whatever way the request
// ends. Its kinds are a charge of its own (charge), a ticket of a lease
// (leased), and a hold for byte and usage prices (held).
//
// Its life, as forward drives it: paid up front; header, at most once, as
// the response headers go out; end, exactly once, when the handler has
// returned or panicked.
type payer interface {
	// header runs just before the response headers go out, with their
	// status. It refunds or releases what refund_on lists, and sets the
	// values of Tollgate's headers on w.
	header(w *responseWriter, status int)

	// end runs once the handler has returned or panicked. It refunds,
	// releases or settles, unless header already did, and sets the values
	// of Tollgate's headers on w for a response not written yet.
	end(w *responseWriter, o outcome)
}

// cutter is a payer that can stop a request midway: a hold whose next
// block could not be paid.
type cutter interface {
	// cutInBody reports that the request body was cut off.
	cutInBody() bool

	// refuseUpload answers a request whose body was cut off before any
	// response began.
	refuseUpload(w http.ResponseWriter, r *http.Request) error

	// isCutOff reports that Tollgate cut the response off.
	isCutOff() bool
}

// outcome is how a request ended, for payer.end.
type outcome struct {
	// status is the error's status when no response was written, and 0
	// otherwise.
	status int

	// aborted reports a response aborted after its headers went out, by the
	// upstream: not by the client leaving, and not by Tollgate's cut-off.
	aborted bool

	// clientGone reports that the client left or broke its request: what
	// it caused is never refunded.
	clientGone bool
}

// forward passes a paid request on and ends its payment exactly once:
// when the handler returns, and when it panics (then the panic goes on).
func forward(rw *responseWriter, r *http.Request, next caddyhttp.Handler, p payer) error {
	w := rw.ResponseWriterWrapper.ResponseWriter
	rw.payer = p
	cut, _ := p.(cutter)
	defer func() {
		if v := recover(); v != nil {
			// Any panic but an abort before the headers is a 500.
			o := outcome{clientGone: r.Context().Err() != nil}
			if v != http.ErrAbortHandler && !rw.wroteHeader {
				o.status = http.StatusInternalServerError
			}
			o.aborted = v == http.ErrAbortHandler && !o.clientGone && (cut == nil || !cut.isCutOff())
			p.end(rw, o)
			panic(v)
		}
	}()
	err := next.ServeHTTP(rw, r)
	if cut != nil && !rw.wroteHeader && cut.cutInBody() {
		return cut.refuseUpload(w, r)
	}
	// A client that left is not refunded, whatever status reverse_proxy
	// reports for it (502, 504).
	o := outcome{clientGone: r.Context().Err() != nil}
	if !rw.wroteHeader {
		if err == nil {
			rw.WriteHeader(http.StatusOK)
		} else {
			o.status = errorStatus(err)
		}
	}
	p.end(rw, o)
	if o.status != 0 {
		// Caddy writes the error's status with the headers set now.
		rw.setHeaders(w.Header())
	}
	if cut != nil && cut.isCutOff() {
		// A cut-off must break the connection, also when the handler
		// returned normally: the end of a chunked response would otherwise
		// tell the client it has it all.
		panic(http.ErrAbortHandler)
	}
	return err
}
