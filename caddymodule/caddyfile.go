package caddymodule

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate-dev/tollgate/pricing"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("tollgate", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("tollgate", parseHandler)
	httpcaddyfile.RegisterDirectiveOrder("tollgate", httpcaddyfile.Before, "request_header")
}

// parseGlobalOption parses the tollgate global option:
//
//	tollgate {
//		store memory | redis <url> | redis {
//			url <url> | sentinel <master> <addr>… | cluster <addr>…
//			username … password … sentinel_password …
//			tls { ca … server_name … client_cert <cert> <key> }
//			replicas … timeout … prefix …
//		}
//		jwt {
//			hmac_secret   <secret>
//			public_key    <file> [<kid>]
//			algorithms    <alg>…
//			issuer        <iss>
//			audience      <aud>
//			leeway        <duration>
//			account_claim <claim>
//		}
//		lease off | lease {
//			size auto|<tokens>  flush <duration>  min_balance <tokens>
//		}
//		signup_bonus     <amount>
//		topup_url        <url>
//		stripe { … }
//		notify { … }
//		ledger_retention <entries>
//		on_store_error   deny|allow
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // the option's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			s, err := parseStore(d)
			if err != nil {
				return nil, err
			}
			app.Store = s
		case "jwt":
			j, err := parseJWT(d)
			if err != nil {
				return nil, err
			}
			app.JWT = j
		case "account":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			app.Account = d.Val()
		case "signup_bonus":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			app.SignupBonus = n
		case "notify":
			n, err := parseNotify(d)
			if err != nil {
				return nil, err
			}
			app.Notify = n
		case "stripe":
			s, err := parseStripe(d)
			if err != nil {
				return nil, err
			}
			app.Stripe = s
		case "topup_url":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			app.TopupURL = d.Val()
		case "ledger_retention":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			if n < 1 {
				return nil, d.Err("ledger_retention must be at least 1")
			}
			app.LedgerRetention = int(n)
		case "hold_expiry":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			app.HoldExpiry = dur
		case "lease":
			l, err := parseLease(d)
			if err != nil {
				return nil, err
			}
			app.Lease = l
		case "on_store_error":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			if v := d.Val(); v != OnStoreErrorDeny && v != OnStoreErrorAllow {
				return nil, d.Errf("on_store_error must be deny or allow, not %q", v)
			}
			app.OnStoreError = d.Val()
		default:
			return nil, d.Errf("unknown tollgate option %q", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	if app.JWT != nil && app.Account != "" {
		return nil, d.Err("tollgate takes jwt or account, not both")
	}
	return httpcaddyfile.App{Name: "tollgate", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseStore(d *caddyfile.Dispenser) (*StoreConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	s := &StoreConfig{Kind: d.Val()}
	switch s.Kind {
	case "memory":
		return s, nil
	case "redis":
	default:
		return nil, d.Errf("unknown store %q: want memory or redis", s.Kind)
	}
	if d.NextArg() {
		s.URL = d.Val()
		return s, nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "url":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			s.URL = d.Val()
		case "timeout":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			s.Timeout = dur
		case "prefix":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			s.Prefix = d.Val()
		case "sentinel":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return nil, d.Err("sentinel needs a master name and at least one sentinel address")
			}
			s.Sentinel = &SentinelConfig{Master: args[0], Addrs: args[1:]}
			continue
		case "cluster":
			if s.Cluster = d.RemainingArgs(); len(s.Cluster) == 0 {
				return nil, d.Err("cluster needs at least one node address")
			}
			continue
		case "username", "password", "sentinel_password":
			name := d.Val()
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			switch name {
			case "username":
				s.Username = d.Val()
			case "password":
				s.Password = d.Val()
			default:
				s.SentinelPassword = d.Val()
			}
		case "replicas":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return nil, d.Errf("replicas must be a whole number, not %q", d.Val())
			}
			s.Replicas = n
		case "tls":
			t, err := parseStoreTLS(d)
			if err != nil {
				return nil, err
			}
			s.TLS = t
			continue
		default:
			return nil, d.Errf("unknown store redis option %q", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	ways := 0
	for _, set := range []bool{s.URL != "", s.Sentinel != nil, len(s.Cluster) > 0} {
		if set {
			ways++
		}
	}
	if ways != 1 {
		return nil, d.Err("store redis needs exactly one of url, sentinel and cluster")
	}
	return s, nil
}

// parseStoreTLS parses the store's tls block.
func parseStoreTLS(d *caddyfile.Dispenser) (*StoreTLS, error) {
	t := new(StoreTLS)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "ca":
			if !d.AllArgs(&t.CA) {
				return nil, d.ArgErr()
			}
		case "server_name":
			if !d.AllArgs(&t.ServerName) {
				return nil, d.ArgErr()
			}
		case "client_cert":
			if !d.AllArgs(&t.ClientCert, &t.ClientKey) {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unknown tls option %q", d.Val())
		}
	}
	return t, nil
}

func parseJWT(d *caddyfile.Dispenser) (*JWTConfig, error) {
	j := new(JWTConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		switch name {
		case "public_key":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return nil, d.ArgErr()
			}
			k := PublicKeyConfig{File: args[0]}
			if len(args) == 2 {
				k.KID = args[1]
			}
			j.PublicKeys = append(j.PublicKeys, k)
			continue
		case "algorithms":
			j.Algorithms = d.RemainingArgs()
			if len(j.Algorithms) == 0 {
				return nil, d.ArgErr()
			}
			continue
		case "leeway":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			j.Leeway = dur
		case "jwks":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			j.JWKS = &JWKSConfig{URL: d.Val()}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				opt := d.Val()
				dur, err := durationArg(d)
				if err != nil {
					return nil, err
				}
				switch opt {
				case "refresh":
					j.JWKS.Refresh = dur
				case "wait":
					j.JWKS.Wait = dur
				case "timeout":
					j.JWKS.Timeout = dur
				default:
					return nil, d.Errf("unknown jwks option %q: want refresh, wait or timeout", opt)
				}
				if d.NextArg() {
					return nil, d.ArgErr()
				}
			}
			continue
		default:
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			v := d.Val()
			switch name {
			case "hmac_secret":
				j.HMACSecret = v
			case "issuer":
				j.Issuer = v
			case "audience":
				j.Audience = v
			case "account_claim":
				j.AccountClaim = v
			case "scope_claim":
				j.ScopeClaim = v
			case "admin_audience":
				j.AdminAudience = v
			default:
				return nil, d.Errf("unknown jwt option %q", name)
			}
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return j, nil
}

// parseHandler parses the tollgate directive:
//
//	tollgate [<matcher>] <amount>
//
//	tollgate [<matcher>] {
//		price <matcher> <amount>
//		refund_on <condition>…
//		shadow
//	}
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	h.Next() // the directive's name
	if h.NextArg() {
		n, err := parseAmount(h.Dispenser, h.Val())
		if err != nil {
			return nil, err
		}
		handler.Prices = []Price{{Amount: n}}
		if h.NextArg() {
			return nil, h.ArgErr()
		}
		if h.NextBlock(0) {
			return nil, h.Err("tollgate takes an amount or a block, not both")
		}
		return handler, nil
	}
	for h.NextBlock(0) {
		switch h.Val() {
		case "price":
			if !h.NextArg() {
				return nil, h.Err("price needs a matcher (* for every request) and an amount")
			}
			token := h.Val()
			h.Prev()
			matcherSet, ok, err := h.MatcherToken()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, h.Errf("price needs a matcher first (* for every request), not %q", token)
			}
			p := Price{Route: token}
			if matcherSet != nil {
				p.MatcherSetsRaw = caddyhttp.RawMatcherSets{matcherSet}
			}
			if token == "*" {
				p.Route = ""
			}
			if !h.NextArg() {
				if p.Compound, err = parseCompound(h.Dispenser); err != nil {
					return nil, err
				}
				if p.Compound == nil {
					return nil, h.Err("price needs an amount after its matcher")
				}
				handler.Prices = append(handler.Prices, p)
				continue
			}
			if p.Amount, err = parseAmount(h.Dispenser, h.Val()); err != nil {
				return nil, err
			}
			if h.NextArg() {
				return nil, h.ArgErr()
			}
			handler.Prices = append(handler.Prices, p)
		case "refund_on":
			conds := h.RemainingArgs()
			if len(conds) == 0 {
				return nil, h.ArgErr()
			}
			if _, err := parseRefundOn(conds); err != nil {
				return nil, h.Err(err.Error())
			}
			handler.RefundOn = conds
		case "shadow":
			if h.NextArg() {
				return nil, h.ArgErr()
			}
			handler.Shadow = true
		default:
			return nil, h.Errf("unknown tollgate subdirective %q", h.Val())
		}
	}
	if len(handler.Prices) == 0 {
		return nil, h.Err("tollgate needs an amount, or a block with price lines")
	}
	return handler, nil
}

// parseCompound parses a compound price block, or returns nil when there is
// none.
func parseCompound(d *caddyfile.Dispenser) (*CompoundPrice, error) {
	c := new(CompoundPrice)
	found := false
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		found = true
		name := d.Val()
		args := d.RemainingArgs()
		switch {
		case name == "request" && len(args) == 1:
			n, err := parseAmount(d, args[0])
			if err != nil {
				return nil, err
			}
			c.Request = n
		case (name == "request_bytes" || name == "response_bytes") && len(args) == 3 && args[1] == "per":
			if _, err := pricing.ParseRate(strings.Join(args, " ")); err != nil {
				return nil, d.Errf("%s: %v", name, err)
			}
			if name == "request_bytes" {
				c.RequestBytes = strings.Join(args, " ")
			} else {
				c.ResponseBytes = strings.Join(args, " ")
			}
		case name == "usage_header" && len(args) == 4 && args[2] == "reserve":
			if _, err := pricing.ParseAmount(args[1]); err != nil {
				return nil, d.Errf("usage_header: %v", err)
			}
			if _, err := pricing.ParseAmount(args[3]); err != nil {
				return nil, d.Errf("usage_header reserve: %v", err)
			}
			c.UsageHeader = strings.Join(args, " ")
		case name == "hold_block" && len(args) == 1:
			if _, err := pricing.ParseSize(args[0]); err != nil {
				return nil, d.Errf("hold_block: %v", err)
			}
			c.HoldBlock = args[0]
		case slices.Contains([]string{"request", "request_bytes", "response_bytes", "usage_header", "hold_block"}, name):
			return nil, d.Errf("bad %s line: want %s", name, compoundSyntax[name])
		default:
			return nil, d.Errf("unknown price subdirective %q", name)
		}
	}
	if !found {
		return nil, nil
	}
	if _, err := c.compile(); err != nil {
		return nil, d.Err(err.Error())
	}
	return c, nil
}

// compoundSyntax is how each compound price line is written.
var compoundSyntax = map[string]string{
	"request":        "request <amount>",
	"request_bytes":  "request_bytes <amount> per <size>",
	"response_bytes": "response_bytes <amount> per <size>",
	"usage_header":   "usage_header <Header-Name> <amount> reserve <units>",
	"hold_block":     "hold_block <size>",
}

// parseAmount parses a price: a whole number from 1 to 2^53-1.
func parseAmount(d *caddyfile.Dispenser, s string) (int64, error) {
	n, err := pricing.ParseAmount(s)
	if err != nil {
		return 0, d.Err(err.Error())
	}
	return n, nil
}

func intArg(d *caddyfile.Dispenser) (int64, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.ParseInt(d.Val(), 10, 64)
	if err != nil || n < 0 || n > 1<<53-1 || d.Val() != strconv.FormatInt(n, 10) {
		return 0, d.Errf("%q is not an integer from 0 to 2^53-1", d.Val())
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("bad duration %q: %v", d.Val(), err)
	}
	return caddy.Duration(dur), nil
}
