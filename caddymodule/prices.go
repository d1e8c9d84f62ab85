package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// priceLine is one price line as a caller sees it in …/prices.
type priceLine struct {
	Route    string         `json:"route"`
	Amount   int64          `json:"amount,omitempty"`
	Compound *CompoundPrice `json:"compound,omitempty"`
}

// servePrices answers the price lines of the tollgate handlers in the site
// that serves r, in the order they are tried, the bundles on sale through
// Stripe, and where to buy more.
func (h *AccountHandler) servePrices(w http.ResponseWriter, r *http.Request) {
	lines := []priceLine{}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		for _, th := range siteTollgates(srv.Routes, h) {
			for i := range th.Prices {
				p := &th.Prices[i]
				lines = append(lines, priceLine{Route: p.line(), Amount: p.Amount, Compound: p.Compound})
			}
		}
	}
	type bundle struct {
		Name   string `json:"name"`
		Tokens int64  `json:"tokens"`
	}
	var bundles []bundle
	if h.app.seller != nil {
		for _, b := range h.app.seller.Bundles() {
			bundles = append(bundles, bundle{b.Name, b.Tokens})
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Prices   []priceLine `json:"prices"`
		Bundles  []bundle    `json:"bundles,omitempty"`
		TopupURL string      `json:"topup_url,omitempty"`
	}{lines, bundles, h.app.TopupURL})
}

// siteTollgates returns the tollgate handlers of the site, among routes,
// whose routes hold the handler h, in the order of the routes.
func siteTollgates(routes caddyhttp.RouteList, h caddyhttp.MiddlewareHandler) []*Handler {
	for _, route := range routes {
		if holds(route, h) {
			return tollgates(route, nil)
		}
	}
	return nil
}

// holds reports whether the route, or a subroute of it, has the handler h.
func holds(route caddyhttp.Route, h caddyhttp.MiddlewareHandler) bool {
	for _, handler := range route.Handlers {
		if handler == h {
			return true
		}
		if sub, ok := handler.(*caddyhttp.Subroute); ok {
			for _, inner := range sub.Routes {
				if holds(inner, h) {
					return true
				}
			}
		}
	}
	return false
}

// tollgates appends the tollgate handlers of the route and its subroutes
// to list.
func tollgates(route caddyhttp.Route, list []*Handler) []*Handler {
	for _, handler := range route.Handlers {
		switch th := handler.(type) {
		case *Handler:
			list = append(list, th)
		case *caddyhttp.Subroute:
			for _, inner := range th.Routes {
				list = tollgates(inner, list)
			}
		}
	}
	return list
}
