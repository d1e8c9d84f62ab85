package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate-dev/tollgate/meter"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves the operator API on Caddy's admin endpoint, under
// /tollgate/: GET /tollgate/accounts, GET /tollgate/accounts/{id}, …/ledger,
// …/usage and …/verify, POST …/credit and …/debit, and GET /tollgate/verify.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tollgate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/tollgate/",
		Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			serveAdmin(w, r, strings.TrimPrefix(r.URL.EscapedPath(), "/tollgate"), liveApp(), "admin-endpoint")
			return nil
		}),
	}}
}

// The started apps, newest last. The admin API is provisioned before the
// apps of its config, so it finds the live one at request time.
var (
	liveMu   sync.Mutex
	liveApps []*App
)

func liveApp() *App {
	liveMu.Lock()
	defer liveMu.Unlock()
	if len(liveApps) == 0 {
		return nil
	}
	return liveApps[len(liveApps)-1]
}

func (a *App) goLive() {
	liveMu.Lock()
	liveApps = append(liveApps, a)
	liveMu.Unlock()
}

func (a *App) goDark() {
	liveMu.Lock()
	if i := slices.Index(liveApps, a); i >= 0 {
		liveApps = slices.Delete(liveApps, i, i+1)
	}
	liveMu.Unlock()
}

// maxAdminBody is the largest request body the operator API reads.
const maxAdminBody = 64 << 10

// apiRoots are the first path segments of the operator API.
var apiRoots = []string{"accounts", "verify"}

// serveAdmin serves the operator API at path (from /accounts or /verify on),
// for changes made by by.
func serveAdmin(w http.ResponseWriter, r *http.Request, path string, app *App, by string) {
	if app == nil {
		writeAdminProblem(w, http.StatusServiceUnavailable, "store-unavailable", "Tollgate is not running.", nil)
		return
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if segs[0] == "verify" && len(segs) == 1 {
		if allow(w, r, http.MethodGet, http.MethodHead) {
			verifyAccounts(w, r, app)
		}
		return
	}
	if segs[0] != "accounts" || len(segs) > 3 || (len(segs) > 1 && segs[1] == "") {
		writeAdminProblem(w, http.StatusNotFound, "not-found", "No such resource.", nil)
		return
	}
	if len(segs) == 1 {
		if allow(w, r, http.MethodGet, http.MethodHead) {
			listAccounts(w, r, app)
		}
		return
	}
	account, err := url.PathUnescape(segs[1])
	if err != nil || !meter.ValidAccount(account) {
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "The account id must be 1-128 printable ASCII bytes without spaces, and not . or .., percent-encoded in the path.", nil)
		return
	}
	action := ""
	if len(segs) == 3 {
		action = segs[2]
	}
	switch action {
	case "":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		a, err := app.store.Account(r.Context(), meter.Read{Account: account})
		if err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	case "ledger":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			serveLedger(w, r, app.store, meter.Read{Account: account})
		}
	case "usage":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			serveUsage(w, r, app.store, meter.Read{Account: account})
		}
	case "verify":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		c, err := app.store.Verify(r.Context(), account)
		if err != nil {
			writeStoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	case "credit", "debit":
		if !allow(w, r, http.MethodPost) {
			return
		}
		t, msg := readTransfer(r)
		if msg != "" {
			writeAdminProblem(w, http.StatusBadRequest, "invalid-request", msg, nil)
			return
		}
		t.Account, t.By = account, by
		var rcpt meter.TransferReceipt
		if action == "credit" {
			rcpt, err = app.store.Credit(r.Context(), t)
		} else {
			rcpt, err = app.store.Debit(r.Context(), t)
		}
		if err != nil {
			writeStoreError(w, err)
			return
		}
		if !rcpt.Replayed {
			kind := "credited"
			if action == "debit" {
				kind = "debited"
			} else {
				app.credited(account, t.Amount, rcpt.Balance)
			}
			metricTokens.WithLabelValues(kind).Add(float64(t.Amount))
		}
		writeJSON(w, http.StatusOK, rcpt)
	default:
		writeAdminProblem(w, http.StatusNotFound, "not-found", "No such resource.", nil)
	}
}

// allow answers 405 with Allow unless the request's method is one of
// methods, and reports whether it is.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeAdminProblem(w, http.StatusMethodNotAllowed, "invalid-request", "Use "+methods[0]+".", nil)
	return false
}

// serveLedger answers a page of an account's ledger: limit (1-1000, default
// 50) entries before the entry id before, newest first.
func serveLedger(w http.ResponseWriter, r *http.Request, store meter.Store, rd meter.Read) {
	q := meter.LedgerQuery{Read: rd, Before: r.URL.Query().Get("before")}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > meter.MaxLedgerLimit {
			writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "limit must be an integer from 1 to 1000.", nil)
			return
		}
		q.Limit = n
	}
	page, err := store.Ledger(r.Context(), q)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// listAccounts answers a page of account ids from the cursor; limit is a
// hint.
func listAccounts(w http.ResponseWriter, r *http.Request, app *App) {
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	page, err := app.store.Accounts(r.Context(), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// verifyAccounts answers the checks of a page of accounts from the cursor;
// limit is a hint.
func verifyAccounts(w http.ResponseWriter, r *http.Request, app *App) {
	limit, ok := pageLimit(w, r)
	if !ok {
		return
	}
	page, err := app.store.VerifyPage(r.Context(), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// pageLimit reads the limit of an account page: 1-1000, or 0 when the
// request gives none. It answers 400 to any other, and reports whether the
// limit is good.
func pageLimit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > meter.MaxAccountsLimit {
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "limit must be an integer from 1 to 1000.", nil)
		return 0, false
	}
	return n, true
}

// plainAmount is how an amount must be written: a decimal integer without
// sign, fraction, exponent or quotes.
var plainAmount = regexp.MustCompile(`^[1-9][0-9]{0,15}$`)

// readTransfer reads a credit or debit body strictly. It returns what is
// wrong with it, or "".
func readTransfer(r *http.Request) (meter.Transfer, string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		return meter.Transfer{}, "The body could not be read."
	}
	if len(body) > maxAdminBody {
		return meter.Transfer{}, "The body is over 64 KiB."
	}
	var in struct {
		Amount json.RawMessage `json:"amount"`
		ID     json.RawMessage `json:"id"`
		Reason json.RawMessage `json:"reason"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return meter.Transfer{}, "The body must be a JSON object with amount, id and an optional reason, and nothing else."
	}
	if dec.More() {
		return meter.Transfer{}, "The body must hold one JSON object."
	}
	// The store checks the values; here the JSON types are checked.
	var t meter.Transfer
	n, err := strconv.ParseInt(string(in.Amount), 10, 64)
	if !plainAmount.Match(in.Amount) || err != nil || n > meter.MaxAmount {
		return t, "amount must be a plain decimal integer from 1 to 2^53-1, without quotes, sign, fraction or exponent."
	}
	t.Amount = n
	if !jsonString(in.ID, &t.ID) {
		return t, "id is required: a string of 1-255 printable ASCII bytes without spaces."
	}
	if in.Reason != nil && !jsonString(in.Reason, &t.Reason) {
		return t, "reason must be a string of at most 256 printable bytes."
	}
	return t, ""
}

// jsonString decodes raw into s if raw is a JSON string.
func jsonString(raw json.RawMessage, s *string) bool {
	return len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, s) == nil
}

// writeStoreError answers a store error as a problem.
func writeStoreError(w http.ResponseWriter, err error) {
	var short *meter.InsufficientError
	switch {
	case errors.As(err, &short):
		writeAdminProblem(w, http.StatusPaymentRequired, "insufficient-balance", "The balance does not cover the debit.", short)
	case errors.Is(err, meter.ErrNotFound):
		writeAdminProblem(w, http.StatusNotFound, "not-found", "The account was never seen.", nil)
	case errors.Is(err, meter.ErrConflict):
		writeAdminProblem(w, http.StatusConflict, "conflict", "The id was already used with another amount or reason.", nil)
	case errors.Is(err, meter.ErrInvalid):
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "The request was refused: "+strings.TrimPrefix(err.Error(), "invalid argument: ")+".", nil)
	default:
		w.Header().Set("Retry-After", "1")
		writeAdminProblem(w, http.StatusServiceUnavailable, "store-unavailable", "Balances cannot be reached right now.", nil)
	}
}

func writeAdminProblem(w http.ResponseWriter, status int, kind, detail string, short *meter.InsufficientError) {
	p := problem{Type: problemType + kind, Title: http.StatusText(status), Status: status, Detail: detail}
	if short != nil {
		p.Balance, p.Price = &short.Balance, &short.Price
	}
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeAdminProblem(w, http.StatusInternalServerError, "invalid-request", "The answer could not be written.", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Interface guards
var _ caddy.AdminRouter = AdminAPI{}
