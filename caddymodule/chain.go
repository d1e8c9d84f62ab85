package caddymodule

import "github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
