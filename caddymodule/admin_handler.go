package caddymodule

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/auth"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
	httpcaddyfile.RegisterHandlerDirective("tollgate_admin", parseAdminHandler)
	httpcaddyfile.RegisterDirectiveOrder("tollgate_admin", httpcaddyfile.After, "forward_auth")
}

// AdminHandler serves the operator API in a site, from the first path
// segment named accounts or verify on, to tokens that carry the
// tollgate:admin scope (and admin_audience, when set). What it changes
// records the admin's account as detail.by.
type AdminHandler struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision finds the tollgate app.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	var err error
	h.app, err = tollgateApp(ctx, "tollgate_admin")
	return err
}

// ServeHTTP serves the operator API to admins.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if isPreflight(r) {
		return next.ServeHTTP(w, r)
	}
	values := r.Header.Values("Authorization")
	scheme, token, _ := strings.Cut(strings.Join(values, ","), " ")
	if len(values) != 1 || !strings.EqualFold(scheme, "Bearer") {
		return writeProblem(w, r, unauthorized(errNoCredentials))
	}
	admin, err := h.app.admins.Verify(strings.TrimSpace(token))
	var ae *auth.Error
	switch {
	case errors.Is(err, auth.ErrInsufficientScope), errors.As(err, &ae) && ae.Description == auth.ReasonAudience:
		// A good token, but not one for the operator API.
		return writeProblem(w, r, forbidden())
	case err != nil:
		return writeProblem(w, r, refusedCredentials(err))
	}
	r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.id", admin)
	segs := strings.Split(r.URL.EscapedPath(), "/")
	i := slices.IndexFunc(segs, func(seg string) bool { return slices.Contains(apiRoots, seg) })
	if i < 0 {
		writeAdminProblem(w, http.StatusNotFound, "not-found", "No such resource: the operator API starts at …/accounts or …/verify.", nil)
		return nil
	}
	serveAdmin(w, r, "/"+strings.Join(segs[i:], "/"), h.app, admin)
	return nil
}

// parseAdminHandler parses the tollgate_admin directive, which takes no
// arguments besides its matcher.
func parseAdminHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	if h.NextArg() || h.NextBlock(0) {
		return nil, h.Err("tollgate_admin takes only a matcher")
	}
	return new(AdminHandler), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
)
