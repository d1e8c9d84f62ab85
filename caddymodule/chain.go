package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
// routes without a forward_auth having run for it first, unconditionally:
// at the top level of its route list, in a route without matchers, before
// the tollgate. guarded says one already has. It also returns whether one
// has once the routes are through.
func unguarded(routes caddyhttp.RouteList, guarded bool) (reached, guardedAfter bool) {
	for _, route := range routes {
		always := len(route.MatcherSets) == 0
		inner := guarded
		for _, handler := range route.Handlers {
			switch h := handler.(type) {
			case *Handler:
				if !inner {
					return true, guarded
				}
			case *reverseproxy.Handler:
				if isForwardAuth(h) && always {
					inner = true
				}
			case *caddyhttp.Subroute:
				var after bool
				if reached, after = unguarded(h.Routes, inner); reached {
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

// isForwardAuth reports a reverse_proxy that forward_auth made: it asks the
// upstream with GET and handles the answer itself.
func isForwardAuth(h *reverseproxy.Handler) bool {
	return h.Rewrite != nil && h.Rewrite.Method == http.MethodGet && len(h.HandleResponse) > 0
}
