package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestMaxTollgates(t *testing.T) {
	toll := func() caddyhttp.MiddlewareHandler { return new(Handler) }
	sub := func(routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: routes}
	}
	route := func(group string, hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{Group: group, Handlers: hs}
	}
	site := func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{Terminal: true, Handlers: hs}
	}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   int
	}{
		{"none", caddyhttp.RouteList{route("")}, 0},
		{"one", caddyhttp.RouteList{route("", toll())}, 1},
		{"two in one chain", caddyhttp.RouteList{route("", toll()), route("", sub(route("", toll())))}, 2},
		{"exclusive handle blocks", caddyhttp.RouteList{route("g", sub(route("", toll()))), route("g", sub(route("", toll())))}, 1},
		{"outer and inside a handle block", caddyhttp.RouteList{route("", toll()), route("g", sub(route("", toll()))), route("g")}, 2},
		{"sites are apart", caddyhttp.RouteList{site(sub(route("", toll()))), site(sub(route("", toll())))}, 1},
		{"two in one site", caddyhttp.RouteList{site(sub(route("", toll()), route("", sub(route("", toll())))))}, 2},
	} {
		if got := maxTollgates(c.routes); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
