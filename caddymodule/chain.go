package caddymodule

import (
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// maxTollgates returns the most tollgate handlers one request can pass
// through the routes, as far as their structure tells. Routes of one group
// are exclusive, so a group counts its largest route; a terminal route ends
// the chain, so only the largest counts (sites are terminal routes); any
// other route may match too, so those add up.
func maxTollgates(routes caddyhttp.RouteList) int {
	total, terminal := 0, 0
	groups := map[string]int{}
	for _, route := range routes {
		n := 0
		for _, handler := range route.Handlers {
			switch h := handler.(type) {
			case *Handler:
				n++
			case *caddyhttp.Subroute:
				n += maxTollgates(h.Routes)
			}
		}
		switch {
		case route.Group != "":
			groups[route.Group] = max(groups[route.Group], n)
		case route.Terminal:
			terminal = max(terminal, n)
		default:
			total += n
		}
	}
	for _, n := range groups {
		total += n
	}
	return total + terminal
}

// unguarded reports whether a request can reach a tollgate handler in the
// routes without a forward_auth that replaces header having run for it
// first, unconditionally: in a route without matchers and outside any
// group, before the tollgate. guarded says one already has. It also returns
// whether one has once the routes are through.
func unguarded(routes caddyhttp.RouteList, header string, guarded bool) (reached, guardedAfter bool) {
	for _, route := range routes {
		always := len(route.MatcherSets) == 0 && route.Group == ""
		inner := guarded
		for _, handler := range route.Handlers {
			switch h := handler.(type) {
			case *Handler:
				if !inner {
					return true, guarded
				}
			case *reverseproxy.Handler:
				if always && replaces(h, header) {
					inner = true
				}
			case *caddyhttp.Subroute:
				var after bool
				if reached, after = unguarded(h.Routes, header, inner); reached {
					return true, guarded
				}
				inner = inner || (always && after)
			}
		}
		if always {
			guarded = inner
		}
	}
	return false, guarded
}

// replaces reports a reverse_proxy that forward_auth made (it asks the
// upstream with GET and handles the answer itself) and that deletes the
// client's header before copying the auth server's: copy_headers names it.
func replaces(h *reverseproxy.Handler, header string) bool {
	if h.Rewrite == nil || h.Rewrite.Method != http.MethodGet {
		return false
	}
	for _, answer := range h.HandleResponse {
		for _, route := range answer.Routes {
			for _, handler := range route.Handlers {
				if hh, ok := handler.(*headers.Handler); ok && hh.Request != nil &&
					slices.ContainsFunc(hh.Request.Delete, func(d string) bool { return strings.EqualFold(d, header) }) {
					return true
				}
			}
		}
	}
	return false
}
