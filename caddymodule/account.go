package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/dashboard"
	"github.com/tollgate-dev/tollgate/meter"
)

func init() {
	caddy.RegisterModule(AccountHandler{})
	httpcaddyfile.RegisterHandlerDirective("tollgate_account", parseAccountHandler)
	httpcaddyfile.RegisterDirectiveOrder("tollgate_account", httpcaddyfile.After, "forward_auth")
}

// AccountHandler serves callers their own account: …/balance,
// …/ledger?limit=&before= and …/usage?by=&from=&to=, for the account their
// token names and no other, …/prices, the site's price lines, and, with
// stripe, POST …/checkout. Its answers are never cached, and vary by the
// caller's credentials. At …/ it serves the dashboard, a page that holds no
// data and reads these.
// It routes on the tail of the path, so it works under any prefix. Only GET
// and HEAD are served.
type AccountHandler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (AccountHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_account",
		New: func() caddy.Module { return new(AccountHandler) },
	}
}

// Provision finds the tollgate app.
func (h *AccountHandler) Provision(ctx caddy.Context) error {
	var err error
	h.app, err = tollgateApp(ctx, "tollgate_account")
	return err
}

// ServeHTTP serves the dashboard to anyone, and the caller their own
// balance, ledger, usage, prices and checkout.
func (h *AccountHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if isPreflight(r) {
		return next.ServeHTTP(w, r)
	}
	tail := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	if dashboard.Has(tail) {
		// The page holds no data: it is served to anyone.
		if allow(w, r, http.MethodGet, http.MethodHead) {
			dashboard.Serve(w, r, tail)
		}
		return nil
	}
	account, err := h.app.authenticate(r)
	if err != nil {
		countUnauthenticated.Inc()
		return writeProblem(w, r, refusedCredentials(err))
	}
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.id", account)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Authorization, Cookie")
	rd := meter.Read{Account: account, Mode: meter.Caller, Bonus: h.app.SignupBonus}
	if tail == "checkout" && h.app.seller != nil {
		if allow(w, r, http.MethodPost) {
			h.serveCheckout(w, r, account)
		}
		return nil
	}
	if tail != "balance" && tail != "ledger" && tail != "usage" && tail != "prices" {
		writeAdminProblem(w, http.StatusNotFound, "not-found", "No such resource: this account's balance, ledger, usage and prices are at …/balance, …/ledger, …/usage and …/prices.", nil)
		return nil
	}
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return nil
	}
	switch tail {
	case "ledger":
		serveLedger(w, r, h.app.store, rd)
		return nil
	case "usage":
		serveUsage(w, r, h.app.store, rd)
		return nil
	case "prices":
		h.servePrices(w, r)
		return nil
	}
	a, err := h.app.store.Account(r.Context(), rd)
	if err != nil {
		writeStoreError(w, err)
		return nil
	}
	writeJSON(w, http.StatusOK, struct {
		Account string `json:"account"`
		Balance int64  `json:"balance"`
		Held    int64  `json:"held"`
	}{a.Account, a.Balance, a.Held})
	return nil
}

// parseAccountHandler parses the tollgate_account directive, which takes no
// arguments besides its matcher.
func parseAccountHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	if h.NextArg() || h.NextBlock(0) {
		return nil, h.Err("tollgate_account takes only a matcher")
	}
	return new(AccountHandler), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AccountHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AccountHandler)(nil)
)
