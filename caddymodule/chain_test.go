package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
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

func TestUnguarded(t *testing.T) {
	toll := func() caddyhttp.MiddlewareHandler { return new(Handler) }
	auth := func() caddyhttp.MiddlewareHandler {
		return &reverseproxy.Handler{Rewrite: &rewrite.Rewrite{Method: "GET"}, HandleResponse: []caddyhttp.ResponseHandler{{
			Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"X-User"}}}}}},
		}}}
	}
	otherHeader := func() caddyhttp.MiddlewareHandler {
		return &reverseproxy.Handler{Rewrite: &rewrite.Rewrite{Method: "GET"}, HandleResponse: []caddyhttp.ResponseHandler{{
			Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&headers.Handler{Request: &headers.HeaderOps{Delete: []string{"Remote-User"}}}}}},
		}}}
	}
	proxy := func() caddyhttp.MiddlewareHandler { return new(reverseproxy.Handler) }
	sub := func(routes ...caddyhttp.Route) caddyhttp.MiddlewareHandler {
		return &caddyhttp.Subroute{Routes: routes}
	}
	always := func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route { return caddyhttp.Route{Handlers: hs} }
	matched := func(hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{caddyhttp.MatchPath{"/api/*"}}}, Handlers: hs}
	}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   bool
	}{
		{"forward_auth first in the site", caddyhttp.RouteList{matched(sub(always(auth()), always(toll(), proxy())))}, false},
		{"forward_auth in the same route, first", caddyhttp.RouteList{always(auth(), toll(), proxy())}, false},
		{"no forward_auth", caddyhttp.RouteList{always(toll(), proxy())}, true},
		{"forward_auth after tollgate", caddyhttp.RouteList{always(toll(), auth(), proxy())}, true},
		{"forward_auth only under a matcher", caddyhttp.RouteList{matched(auth()), always(toll(), proxy())}, true},
		{"forward_auth inside a handle block", caddyhttp.RouteList{always(sub(matched(sub(always(auth()))))), always(toll())}, true},
		{"a plain reverse_proxy is not forward_auth", caddyhttp.RouteList{always(proxy()), always(toll())}, true},
		{"no tollgate", caddyhttp.RouteList{always(proxy())}, false},
		{"forward_auth copying another header", caddyhttp.RouteList{always(otherHeader(), toll())}, true},
		{"forward_auth in a group", caddyhttp.RouteList{{Group: "g", Handlers: []caddyhttp.MiddlewareHandler{auth()}}, always(toll())}, true},
	} {
		if got, _ := unguarded(c.routes, "x-user", false); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
