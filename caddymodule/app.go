// Package caddymodule is Tollgate's Caddy glue: the tollgate app (a global
// option), the tollgate handler directive, and their Caddyfile syntax.
package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/checkout"
	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/notify"
)

func init() {
	caddy.RegisterModule(App{})
}

// Store error policies.
const (
	OnStoreErrorDeny  = "deny"
	OnStoreErrorAllow = "allow"
)

// App is the tollgate app: the configuration that every tollgate handler
// shares, and the store where balances live.
type App struct {
	// Store is where balances live. Default: memory.
	Store *StoreConfig `json:"store,omitempty"`

	// JWT says which tokens identify callers. Required by the tollgate
	// handler.
	JWT *JWTConfig `json:"jwt,omitempty"`

	// Account identifies callers by a placeholder set by an earlier auth
	// handler, instead of a JWT: {http.auth.user.id} after basic_auth or any
	// caddyauth provider, or a header that forward_auth copies. An empty
	// value is a 401. Default: none.
	Account string `json:"account,omitempty"`

	// SignupBonus is credited once, on an account's first caller operation.
	// Default: 0.
	SignupBonus int64 `json:"signup_bonus,omitempty"`

	// TopupURL is where callers buy more tokens: an absolute http or https
	// URL, given in every 402's problem body and in …/prices. Default:
	// none.
	TopupURL string `json:"topup_url,omitempty"`

	// Stripe sells bundles of tokens through Stripe Checkout. Default: none.
	Stripe *StripeConfig `json:"stripe,omitempty"`

	// Notify tells an endpoint of your own when a balance runs low, a
	// request is refused for the balance, or a credit lands. The Caddy
	// events tollgate.low_balance, tollgate.depleted and tollgate.credited
	// are emitted with or without it. Default: none.
	Notify *NotifyConfig `json:"notify,omitempty"`

	// HoldExpiry is how long a hold lives after its last extension, on the
	// store's clock; requests in flight renew theirs. At least 10s.
	// Default: 15m.
	HoldExpiry caddy.Duration `json:"hold_expiry,omitempty"`

	// LedgerRetention is how many ledger entries are kept per account.
	// Default: 10000.
	LedgerRetention int `json:"ledger_retention,omitempty"`

	// OnStoreError is what happens to a priced request when the store cannot
	// be reached: "deny" answers 503 and forwards nothing; "allow" forwards
	// it unbilled, logged. Default: deny.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Lease pays per-request prices from leases: holds that this gateway
	// takes on an account and spends locally, charged in the store at least
	// every flush. Default: on with store redis, off with store memory.
	Lease *LeaseConfig `json:"lease,omitempty"`

	store     meter.Store
	leases    *lease.Manager // nil when leases are off
	storeKey  string         // the usage pool key of a Redis store
	jwks      *jwksSource
	jwksKey   string // the usage pool key of the jwks client
	verifier  *auth.Verifier
	admins    *auth.Verifier   // tollgate_admin's: the admin scope and audience
	seller    *checkout.Seller // nil without stripe
	events    *caddyevents.App
	notifier  *notify.Notifier // nil without notify
	notifyKey string           // the usage pool key of the notifier
	demo      bool             // the HMAC secret is the published demo secret
	ctx       caddy.Context
	logger    *zap.Logger
}

// Hold expiry bounds.
const (
	// DefaultHoldExpiry is how long a hold lives after its last extension
	// when hold_expiry is not set.
	DefaultHoldExpiry = 15 * time.Minute

	// MinHoldExpiry is the shortest hold_expiry.
	MinHoldExpiry = 10 * time.Second

	// MaxHoldExpiry is the longest hold_expiry.
	MaxHoldExpiry = 366 * 24 * time.Hour
)

// holdExpiry is how long a hold lives after its last extension.
func (a *App) holdExpiry() time.Duration {
	if a.HoldExpiry == 0 {
		return DefaultHoldExpiry
	}
	return time.Duration(a.HoldExpiry)
}

// DemoSecret is the HMAC secret published in Caddyfile.example and the
// README. It is refused unless every site is on localhost or loopback and
// every listener binds only loopback addresses.
const DemoSecret = "tollgate-demo-secret-change-me-0123456789"

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tollgate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets the app up: it resolves placeholders, builds the JWT
// verifier and takes its store, shared across config reloads.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx, a.logger = ctx, ctx.Logger()
	if a.Account != "" && a.JWT != nil {
		return errors.New("tollgate takes jwt or account, not both")
	}
	if a.Account != "" && !accountPlaceholder.MatchString(a.Account) {
		return fmt.Errorf("account must be one placeholder that an earlier handler sets: {http.auth.user.id}, "+
			"{http.request.header.<Name>} (copied by forward_auth), {http.request.tls.client.<field>} or {http.vars.<name>}; not %q", a.Account)
	}
	if a.HoldExpiry != 0 && time.Duration(a.HoldExpiry) < MinHoldExpiry {
		return fmt.Errorf("hold_expiry must be at least %s, not %s", MinHoldExpiry, time.Duration(a.HoldExpiry))
	}
	if time.Duration(a.HoldExpiry) > MaxHoldExpiry {
		return fmt.Errorf("hold_expiry must be at most %s, not %s", MaxHoldExpiry, time.Duration(a.HoldExpiry))
	}
	if a.SignupBonus < 0 || a.SignupBonus > meter.MaxAmount {
		return errors.New("signup_bonus must be an integer in [0, 2^53-1]")
	}
	if a.TopupURL != "" {
		if u, err := url.Parse(a.TopupURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("topup_url must be an absolute http or https URL, not %q", a.TopupURL)
		}
	}
	if a.LedgerRetention < 0 {
		return errors.New("ledger_retention must be positive")
	}
	switch a.OnStoreError {
	case "":
		a.OnStoreError = OnStoreErrorDeny
	case OnStoreErrorDeny, OnStoreErrorAllow:
	default:
		return fmt.Errorf("on_store_error must be deny or allow, not %q", a.OnStoreError)
	}
	if a.Lease != nil {
		if err := a.Lease.validate(a.holdExpiry()); err != nil {
			return err
		}
	}
	repl := caddy.NewReplacer()
	if a.JWT != nil {
		v, admins, set, err := a.JWT.verifiers(repl)
		if err != nil {
			return fmt.Errorf("jwt: %w", err)
		}
		a.verifier, a.admins, a.jwks = v, admins, set
		a.demo = repl.ReplaceKnown(a.JWT.HMACSecret, "") == DemoSecret
	}
	if err := a.provisionStore(repl); err != nil {
		return err
	}
	a.provisionLeases()
	if err := a.provisionNotify(repl); err != nil {
		return err
	}
	if a.Stripe != nil {
		s, err := a.Stripe.seller(repl, a)
		if err != nil {
			return err
		}
		a.seller = s
	}
	return nil
}

// accountPlaceholder is what account may be: a single placeholder for an
// identity that a handler sets, never one the client chooses outright (a
// query or a cookie), and never one with text around it, which would turn
// an empty identity into a shared account.
var accountPlaceholder = regexp.MustCompile(`^\{(http\.auth\.user\.[A-Za-z0-9_.-]+|http\.request\.header\.[A-Za-z0-9-]+|http\.request\.tls\.client\.[a-z_.]+|http\.vars\.[A-Za-z0-9_.-]+)\}$`)

// tollgateApp returns the config's tollgate app for a handler named
// directive, which identifies callers by jwt or account; tollgate_admin
// needs jwt.
func tollgateApp(ctx caddy.Context, directive string) (*App, error) {
	app, err := ctx.App("tollgate")
	if err != nil {
		return nil, fmt.Errorf("getting the tollgate app: %w", err)
	}
	a := app.(*App)
	switch {
	case directive == "tollgate_admin" && a.verifier == nil:
		return nil, fmt.Errorf("the %s directive needs jwt in the tollgate global option: admin tokens carry a scope", directive)
	case a.verifier == nil && a.Account == "":
		return nil, fmt.Errorf("the %s directive needs jwt or account in the tollgate global option", directive)
	}
	return a, nil
}

// Start makes the app the one the admin API serves, and checks that Redis
// keeps balances safe, logging any risk it finds.
func (a *App) Start() error {
	if a.demo {
		if err := a.checkDemoSites(); err != nil {
			return err
		}
	}
	a.warnChains()
	if a.jwks != nil {
		// The key set is fetched in the background: requests wait for it,
		// bounded, and caddy validate never fetches.
		refresh, _, timeout := a.JWT.JWKS.settings()
		key, err := a.jwks.connect(refresh, timeout, a.logger)
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		a.jwksKey = key
	}
	a.goLive()
	a.checkStore()
	return nil
}

// checkDemoSites refuses the demo secret unless every route of every HTTP
// server matches only localhost or loopback hosts, and every listener of
// every HTTP server binds only loopback addresses: a Host: localhost header
// from another machine must not reach a site that trusts the demo secret.
func (a *App) checkDemoSites() error {
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	for name, srv := range app.(*caddyhttp.App).Servers {
		for _, route := range srv.Routes {
			if !loopbackOnly(route.MatcherSets) {
				return fmt.Errorf("the demo hmac_secret is published: it is refused unless every site is on localhost, and server %s has a site that is not", name)
			}
		}
		for _, addr := range srv.Listen {
			if !loopbackListener(addr) {
				return fmt.Errorf("the demo hmac_secret is published: it is refused unless every listener binds only loopback addresses, "+
					"and server %s listens on %s (bind its sites to 127.0.0.1)", name, addr)
			}
		}
	}
	return nil
}

// loopbackListener reports whether a server's listen address binds only
// loopback: localhost or a loopback address with a port, or a unix socket.
// An address without a host, such as :8080, binds every interface, and a
// file descriptor could be any socket.
func loopbackListener(addr string) bool {
	na, err := caddy.ParseNetworkAddress(addr)
	switch {
	case err != nil, na.IsFdNetwork():
		return false
	case na.IsUnixNetwork():
		return true
	}
	ip := net.ParseIP(na.Host)
	return na.Host == "localhost" || ip != nil && ip.IsLoopback()
}

// warnChains warns about each server where one request can reach two
// tollgate handlers: the first that runs prices the request, and the others
// only pass it on, which is rarely what was meant. With the account taken
// from a request header, it also warns where a request can reach tollgate
// without forward_auth having set that header first.
func (a *App) warnChains() {
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	header, fromHeader := strings.CutPrefix(strings.Trim(a.Account, "{}"), "http.request.header.")
	for name, srv := range app.(*caddyhttp.App).Servers {
		if n := maxTollgates(srv.Routes); n > 1 {
			a.logger.Warn("one request can reach several tollgate handlers; the first that runs prices it, and the others pass it on",
				zap.String("server", name), zap.Int("handlers", n))
		}
		if reached, _ := unguarded(srv.Routes, header, false); fromHeader && reached {
			a.logger.Warn("the account comes from a request header, but a request can reach tollgate without a forward_auth "+
				"replacing it first, so a client could send it itself: put forward_auth at the top level of the site, without a matcher, "+
				"with the header in its copy_headers",
				zap.String("server", name), zap.String("account", a.Account))
		}
	}
}

// isLoopback reports a host name that stays on this machine: localhost, a
// .localhost name, or a loopback address.
func isLoopback(h string) bool {
	h = strings.Trim(h, "[]")
	ip := net.ParseIP(h)
	return h == "localhost" || strings.HasSuffix(h, ".localhost") || ip != nil && ip.IsLoopback()
}

// loopbackOnly reports whether every matcher set limits requests to
// localhost or loopback hosts.
func loopbackOnly(sets caddyhttp.MatcherSets) bool {
	if len(sets) == 0 {
		return false
	}
	for _, set := range sets {
		limited := false
		for _, m := range set {
			var hosts caddyhttp.MatchHost
			switch h := m.(type) {
			case *caddyhttp.MatchHost:
				hosts = *h
			case caddyhttp.MatchHost:
				hosts = h
			default:
				continue
			}
			limited = len(hosts) > 0
			for _, h := range hosts {
				if !isLoopback(h) {
					return false
				}
			}
		}
		if !limited {
			return false
		}
	}
	return true
}

// Stop hands the admin API back to the previous app, and charges and gives
// back every lease; the store outlives the config until Cleanup.
func (a *App) Stop() error {
	a.goDark()
	a.stopLeases()
	return nil
}

// Cleanup gives back every lease, and the Redis store back to the pool,
// which closes it when no config uses it and its background work is done.
func (a *App) Cleanup() error {
	a.stopLeases()
	a.cleanupNotify()
	if a.jwksKey != "" {
		_, _ = jwksClients.Delete(a.jwksKey)
		a.jwksKey = ""
	}
	if a.storeKey != "" {
		_, err := redisStores.Delete(a.storeKey)
		a.storeKey = ""
		return err
	}
	return nil
}

// JWTConfig says which tokens identify callers.
type JWTConfig struct {
	// HMACSecret verifies HS256, HS384 and HS512 tokens; at least 32 bytes
	// after placeholders are resolved.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// PublicKeys verify RSA, ECDSA and Ed25519 tokens.
	PublicKeys []PublicKeyConfig `json:"public_keys,omitempty"`

	// JWKS is a key set whose keys verify tokens by kid, as identity
	// providers publish them. Default: none.
	JWKS *JWKSConfig `json:"jwks,omitempty"`

	// Algorithms is the allow-list of signing algorithms. Default: the
	// families of the keys given.
	Algorithms []string `json:"algorithms,omitempty"`

	// Issuer is the required iss; required with public keys.
	Issuer string `json:"issuer,omitempty"`

	// Audience must be in aud; required with public keys.
	Audience string `json:"audience,omitempty"`

	// Leeway is the clock skew allowed on exp, nbf and iat. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// AccountClaim is the claim that names the account. Default: sub.
	AccountClaim string `json:"account_claim,omitempty"`

	// ScopeClaim is where tollgate_admin looks for the tollgate:admin
	// scope: a space-separated string or an array. Default: scope.
	ScopeClaim string `json:"scope_claim,omitempty"`

	// AdminAudience, if set, must be in the aud of tollgate_admin's tokens,
	// in place of Audience. Default: Audience.
	AdminAudience string `json:"admin_audience,omitempty"`
}

// PublicKeyConfig is a PEM file holding one public key.
type PublicKeyConfig struct {
	// File is the PEM file's path.
	File string `json:"file"`

	// KID is the key id tokens name it by. Default: none; then tokens
	// without a kid are tried against it.
	KID string `json:"kid,omitempty"`
}

// AdminScope is the scope tollgate_admin's tokens carry.
const AdminScope = "tollgate:admin"

// verifiers resolves placeholders and builds the callers' verifier and
// tollgate_admin's.
func (c *JWTConfig) verifiers(repl *caddy.Replacer) (callers, admins *auth.Verifier, set *jwksSource, err error) {
	cfg := auth.Config{
		Algorithms:   c.Algorithms,
		Issuer:       repl.ReplaceKnown(c.Issuer, ""),
		Audience:     repl.ReplaceKnown(c.Audience, ""),
		Leeway:       time.Duration(c.Leeway),
		AccountClaim: c.AccountClaim,
	}
	if c.JWKS != nil {
		u := repl.ReplaceKnown(c.JWKS.URL, "")
		if err := c.JWKS.check(u); err != nil {
			return nil, nil, nil, err
		}
		_, wait, _ := c.JWKS.settings()
		set = &jwksSource{url: u, wait: wait}
		cfg.KeySet = set
	}
	if c.HMACSecret != "" {
		secret := repl.ReplaceKnown(c.HMACSecret, "")
		if secret == "" {
			return nil, nil, nil, errors.New("hmac_secret is empty after placeholders are resolved")
		}
		cfg.HMACSecret = []byte(secret)
	}
	for _, k := range c.PublicKeys {
		path := repl.ReplaceKnown(k.File, "")
		if path == "" {
			return nil, nil, nil, errors.New("a public_key path is empty after placeholders are resolved")
		}
		key, err := auth.LoadPublicKey(path)
		if err != nil {
			return nil, nil, nil, err
		}
		cfg.PublicKeys = append(cfg.PublicKeys, auth.PublicKey{KID: k.KID, Key: key})
	}
	adminAudience := repl.ReplaceKnown(c.AdminAudience, "")
	if strings.TrimSpace(c.Issuer) != "" && cfg.Issuer == "" || strings.TrimSpace(c.Audience) != "" && cfg.Audience == "" ||
		c.AdminAudience != "" && adminAudience == "" {
		return nil, nil, nil, errors.New("issuer, audience or admin_audience is empty after placeholders are resolved")
	}
	if callers, err = auth.New(cfg); err != nil {
		return nil, nil, nil, err
	}
	cfg.Scope, cfg.ScopeClaim = AdminScope, c.ScopeClaim
	if adminAudience != "" {
		cfg.Audience = adminAudience
	}
	if admins, err = auth.New(cfg); err != nil {
		return nil, nil, nil, err
	}
	return callers, admins, set, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
