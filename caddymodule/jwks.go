package caddymodule

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/tollgate-dev/tollgate/auth"
)

// JWKSConfig is a JSON Web Key Set whose keys verify tokens by their kid,
// fetched from its URL and refreshed, as identity providers publish them.
type JWKSConfig struct {
	// URL is where the key set is fetched: https, or http on loopback.
	URL string `json:"url"`

	// Refresh is how often the key set is fetched again. Default: 1h.
	Refresh caddy.Duration `json:"refresh,omitempty"`

	// Wait is the longest a request waits for the key set: its first fetch,
	// or a fetch for a kid it does not hold. A token for the set that
	// waited this long for the first fetch is answered 503
	// keys-unavailable. Default: 250ms.
	Wait caddy.Duration `json:"wait,omitempty"`

	// Timeout bounds each fetch of the key set. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// JWKS defaults.
const (
	DefaultJWKSRefresh = time.Hour
	DefaultJWKSWait    = 250 * time.Millisecond
	DefaultJWKSTimeout = 5 * time.Second

	// jwksUnknownKID is how often a kid the set does not hold may make it
	// be fetched again, per process: a flood of random kids costs one fetch.
	jwksUnknownKID = 5 * time.Minute
)

// settings returns the key set's durations, defaults filled in.
func (c *JWKSConfig) settings() (refresh, wait, timeout time.Duration) {
	refresh, wait, timeout = time.Duration(c.Refresh), time.Duration(c.Wait), time.Duration(c.Timeout)
	if refresh <= 0 {
		refresh = DefaultJWKSRefresh
	}
	if wait <= 0 {
		wait = DefaultJWKSWait
	}
	if timeout <= 0 {
		timeout = DefaultJWKSTimeout
	}
	return refresh, wait, timeout
}

// check refuses a URL that is not https, or http on loopback.
func (c *JWKSConfig) check(u string) error {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		return fmt.Errorf("jwks: %q is not a URL", u)
	}
	if parsed.Scheme != "https" && (parsed.Scheme != "http" || !isLoopback(parsed.Hostname())) {
		return fmt.Errorf("jwks: %q must be https (http only on loopback)", u)
	}
	return nil
}

// jwksClients shares key set clients across config reloads, so that a
// reload neither fetches again nor resets the unknown-kid limit.
var jwksClients = caddy.NewUsagePool()

// jwksClient fetches one key set and keeps it fresh, in the background.
type jwksClient struct {
	ready    chan struct{} // closed once a fetch gave keys, or the client stopped
	keys     keyfunc.Keyfunc
	ctx      context.Context // ends at Destruct
	cancel   context.CancelFunc
	stopKeys context.CancelFunc // ends the refreshes of the keys in use
	timeout  time.Duration
	limit    *rate.Limiter

	mu      sync.Mutex
	refresh chan struct{} // closed when the fetch for an unknown kid ends

	// waits counts the requests that waited for a fetch: those whose kid
	// the set did not hold.
	waits atomic.Int64
}

// newJWKSClient starts fetching u in the background.
func newJWKSClient(u string, refresh, timeout time.Duration, logger *zap.Logger) *jwksClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &jwksClient{ready: make(chan struct{}), ctx: ctx, cancel: cancel, timeout: timeout,
		limit: rate.NewLimiter(rate.Every(jwksUnknownKID), 1)}
	go func() {
		defer close(c.ready)
		// Until a fetch gives keys, try again with a growing pause: an
		// identity provider down at start must not cost the unknown-kid
		// allowance of the callers that arrive meanwhile.
		for pause := time.Second; ; pause = min(2*pause, time.Minute) {
			attempt, stop := context.WithCancel(ctx)
			keys, err := keyfunc.NewDefaultOverrideCtx(attempt, []string{u}, keyfunc.Override{
				Client:            &http.Client{Timeout: timeout},
				HTTPTimeout:       timeout,
				RefreshInterval:   refresh,
				RateLimitWaitMax:  timeout,
				RefreshUnknownKID: c.limit,
				RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
					return func(_ context.Context, err error) {
						logger.Error("fetching the jwks failed", zap.String("url", u), zap.Error(err))
					}
				},
			})
			if err == nil {
				if all, _ := keys.Storage().KeyReadAll(attempt); len(all) > 0 {
					c.keys, c.stopKeys = keys, stop // its refreshes run until Destruct
					return
				}
				err = errors.New("the key set holds no key")
			}
			stop()
			logger.Error("cannot use the jwks yet; trying again", zap.String("url", u), zap.Duration("in", pause), zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}()
	return c
}

// Destruct stops the refreshes once no config uses the key set.
func (c *jwksClient) Destruct() error {
	c.cancel()
	<-c.ready
	if c.stopKeys != nil {
		c.stopKeys()
	}
	return nil
}

// errNoKey is a kid the fetched key set does not hold, or an empty one.
var errNoKey = errors.New("the jwks holds no such key")

// key returns the key named kid, fetching the set again, at most once per
// jwksUnknownKID, when it does not hold it. A request waits at most wait:
// for the first fetch, whose absence is auth.ErrKeysUnavailable, then for
// the fetch of a kid the set does not hold.
func (c *jwksClient) key(kid, alg string, wait time.Duration) (crypto.PublicKey, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-c.ready:
	case <-timer.C:
		return nil, auth.ErrKeysUnavailable
	}
	if c.keys == nil {
		return nil, auth.ErrKeysUnavailable
	}
	if kid == "" {
		return nil, errNoKey
	}
	if key, ok := c.held(kid, alg); ok {
		return key, nil
	}
	c.waits.Add(1)
	select {
	case <-c.fetch(kid):
	case <-timer.C:
		return nil, errNoKey
	}
	if key, ok := c.held(kid, alg); ok {
		return key, nil
	}
	return nil, errNoKey
}

// cancelled is a context that has ended: a read with it of a kid the set
// does not hold neither waits for, nor starts, a fetch.
var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// held returns the key named kid if the set holds it now, without fetching:
// a key for signatures, declared for alg or for no algorithm (alg "" takes
// any).
func (c *jwksClient) held(kid, alg string) (crypto.PublicKey, bool) {
	jwk, err := c.keys.Storage().KeyRead(cancelled, kid)
	if err != nil {
		return nil, false
	}
	meta := jwk.Marshal()
	if use := meta.USE.String(); use != "" && use != "sig" {
		return nil, false
	}
	if a := meta.ALG.String(); alg != "" && a != "" && a != alg {
		return nil, false
	}
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	return key, true
}

// fetch starts a fetch for kid, or joins the one under way, and returns a
// channel closed when it ends. The fetch runs on its own timeout, apart
// from the requests that wait for it; the limiter drops it unless a fetch
// for an unknown kid is due.
func (c *jwksClient) fetch(kid string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refresh != nil {
		return c.refresh
	}
	done := make(chan struct{})
	c.refresh = done
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
		defer cancel()
		_, _ = c.keys.Storage().KeyRead(ctx, kid)
		c.mu.Lock()
		c.refresh = nil
		c.mu.Unlock()
		close(done)
	}()
	return done
}

// jwksSource is a config's view of a shared key set client: the verifier's
// auth.KeySet. It is connected when the app starts.
type jwksSource struct {
	url  string
	wait time.Duration

	mu     sync.RWMutex
	client *jwksClient
}

// Key returns the key named kid for alg; see auth.KeySet.
func (s *jwksSource) Key(kid, alg string) (crypto.PublicKey, error) {
	s.mu.RLock()
	c := s.client
	s.mu.RUnlock()
	if c == nil {
		return nil, auth.ErrKeysUnavailable
	}
	return c.key(kid, alg, s.wait)
}

// Has reports whether the set holds key under kid now; see auth.KeySet.
func (s *jwksSource) Has(kid string, key crypto.PublicKey) bool {
	s.mu.RLock()
	c := s.client
	s.mu.RUnlock()
	if c == nil {
		return false
	}
	select {
	case <-c.ready:
	default:
		return false
	}
	if c.keys == nil {
		return false
	}
	now, ok := c.held(kid, "")
	same, comparable := now.(interface{ Equal(crypto.PublicKey) bool })
	return ok && comparable && same.Equal(key)
}

// connect takes the shared client of the key set, starting it if no config
// has; the key is the app's to give back in Cleanup.
func (s *jwksSource) connect(refresh, timeout time.Duration, logger *zap.Logger) (string, error) {
	key := fmt.Sprintf("%s|%s|%s", s.url, refresh, timeout)
	v, _, err := jwksClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newJWKSClient(s.url, refresh, timeout, logger), nil
	})
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.client = v.(*jwksClient)
	s.mu.Unlock()
	return key, nil
}

// Interface guards
var _ caddy.Destructor = (*jwksClient)(nil)
