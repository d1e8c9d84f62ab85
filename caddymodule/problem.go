package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/meter"
)

// problem is an RFC 9457 problem detail.
type problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Balance *int64 `json:"balance,omitempty"`
	Price   *int64 `json:"price,omitempty"`

	// TopupURL is where to buy more tokens, on a 402.
	TopupURL string `json:"topup_url,omitempty"`

	header http.Header // response headers that go with it
}

// problemType is the prefix of every problem type.
const problemType = "urn:tollgate:problem:"

// refusedCredentials is the answer to a request whose credentials did not
// identify its caller: 503 keys-unavailable for a token whose keys have not
// been fetched yet, which may be good, and a 401 otherwise.
func refusedCredentials(err error) problem {
	if errors.Is(err, auth.ErrKeysUnavailable) {
		return keysUnavailable()
	}
	return unauthorized(err)
}

// unauthorized is the 401 for missing or refused credentials, err saying
// which.
func unauthorized(err error) problem {
	p := problem{Type: problemType + "invalid-token", Title: "Unauthorized", Status: http.StatusUnauthorized, header: http.Header{}}
	var ae *auth.Error
	if errors.As(err, &ae) {
		p.Detail = "The bearer token was refused: " + ae.Description + "."
		p.header.Set("WWW-Authenticate", `Bearer realm="tollgate", error="invalid_token", error_description="`+ae.Description+`"`)
	} else {
		p.Detail = "This API needs a bearer token."
		p.header.Set("WWW-Authenticate", `Bearer realm="tollgate"`)
	}
	return p
}

// keysUnavailable is the 503 for a token whose key would come from the key
// set while no fetch of the set has succeeded yet.
func keysUnavailable() problem {
	p := problem{Type: problemType + "keys-unavailable", Title: "Service Unavailable", Status: http.StatusServiceUnavailable, header: http.Header{},
		Detail: "The keys that verify this token have not been fetched yet; nothing was charged and the request was not served."}
	p.header.Set("Retry-After", "1")
	return p
}

// forbidden is the 403 for a good token without the admin scope or
// audience.
func forbidden() problem {
	p := problem{Type: problemType + "forbidden", Title: "Forbidden", Status: http.StatusForbidden, header: http.Header{},
		Detail: "The token does not carry the tollgate:admin scope for this audience."}
	p.header.Set("WWW-Authenticate", `Bearer realm="tollgate", error="insufficient_scope", scope="tollgate:admin"`)
	return p
}

// insufficient is the 402 for a balance that does not cover a price, with
// where to buy more when the operator said.
func insufficient(e *meter.InsufficientError, topupURL string) problem {
	return problem{
		Type: problemType + "insufficient-balance", Title: "Payment Required", Status: http.StatusPaymentRequired,
		Detail:  "The balance does not cover the price of this request.",
		Balance: &e.Balance, Price: &e.Price, TopupURL: topupURL,
	}
}

// storeUnavailable is the 503 for a store that cannot be reached.
func storeUnavailable() problem {
	return problem{
		Type: problemType + "store-unavailable", Title: "Service Unavailable", Status: http.StatusServiceUnavailable,
		Detail: "Balances cannot be reached right now; nothing was charged and the request was not forwarded.",
	}
}

// priceTooLarge is the 413 for a request body whose price is out of range.
func priceTooLarge() problem {
	return problem{
		Type: problemType + "invalid-request", Title: "Content Too Large", Status: http.StatusRequestEntityTooLarge,
		Detail: "The price of this request body exceeds 2^53-1 tokens.",
	}
}

// writeProblem answers with p. When the server has handle_errors routes it
// returns the error instead, with the body in {http.vars.tollgate.problem}
// for them to reproduce or restyle.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) error {
	body, err := json.Marshal(p)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	for name, values := range p.header {
		w.Header()[name] = values
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		caddyhttp.SetVar(r.Context(), "tollgate.problem", string(body))
		return caddyhttp.Error(p.Status, errors.New(p.Title))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	_, err = w.Write(body)
	return err
}
