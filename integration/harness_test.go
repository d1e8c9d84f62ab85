// Package integration drives a real Caddy with Tollgate, in this process,
// against a real redis-server and a real upstream.
package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/golang-jwt/jwt/v5"

	_ "github.com/tollgate-dev/tollgate/caddymodule"
	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// secret is the HMAC secret of the gateways under test.
const secret = "integration-secret-0123456789-abcdef"

func TestMain(m *testing.M) {
	// Keep Go's caches where they are for the builds tests make, before HOME
	// moves.
	if out, err := exec.Command("go", "env", "GOCACHE", "GOPATH", "GOMODCACHE").Output(); err == nil {
		for i, v := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			os.Setenv([]string{"GOCACHE", "GOPATH", "GOMODCACHE"}[i], v)
		}
	}
	// Caddy keeps its data and autosaved config under these.
	dir, err := os.MkdirTemp("", "tollgate-integration")
	if err != nil {
		panic(err)
	}
	workDir = dir
	for _, v := range []string{"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"} {
		os.Setenv(v, dir)
	}
	code := m.Run()
	_ = caddy.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// workDir is the test run's own directory, removed at its end.
var workDir string

// upstream is a real HTTP upstream that counts what reaches it.
type upstream struct {
	*httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	headers []http.Header // of every request, in order
}

// newUpstream serves /fail with a 500, and everything else with a 200 whose
// body is the Tollgate-Account header it got. It also sends a Tollgate-Balance
// header of its own, which the gateway must drop.
func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("Tollgate-Balance", "999999")
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, r.Header.Get("Tollgate-Account"))
	}))
	t.Cleanup(u.Close)
	return u
}

// lastHeader returns the headers of the last request the upstream got.
func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.headers) == 0 {
		return nil
	}
	return u.headers[len(u.headers)-1]
}

// gateway is a running Caddy with Tollgate on a Redis store.
type gateway struct {
	prefix string // its Redis keys' prefix
	URL    string // http://127.0.0.1:port
	Admin  string // http://127.0.0.1:port of Caddy's admin endpoint
	store  *meter.Redis
	redis  *redistest.Server
	client *http.Client
}

// lastConfig is the JSON config startGateway loaded last.
var lastConfig []byte

// prefixes keeps every gateway's keys apart.
var prefixes atomic.Int64

// startGateway loads a Caddyfile into this process's Caddy. site is the body
// of the metered site; {upstream} in it is replaced with the upstream's
// address. globals go into the tollgate global option after the store and
// jwt.
func startGateway(t *testing.T, srv *redistest.Server, site, globals string) *gateway {
	t.Helper()
	return startGatewayWith(t, srv, hmacJWT, site, globals)
}

// startGatewayWith is startGateway with identity, such as a jwt block or an
// account line, in place of the HMAC jwt block.
func startGatewayWith(t *testing.T, srv *redistest.Server, identity, site, globals string) *gateway {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	prefix := fmt.Sprintf("it%d", prefixes.Add(1))
	cfg := identityConfig(srv, prefix, adminPort, port, identity, site, globals)
	adapter := caddyconfig.GetAdapter("caddyfile")
	js, _, err := adapter.Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", cfg, err)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("loading:\n%s\n%v", js, err)
	}
	lastConfig = js
	t.Cleanup(func() { _ = caddy.Stop() })
	store, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL(), Prefix: prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &gateway{
		prefix: prefix,
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		store:  store,
		redis:  srv,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}},
	}
}

// hmacJWT identifies the callers of the gateways under test: HS256 tokens
// with the test secret, issuer and audience.
var hmacJWT = fmt.Sprintf(`jwt {
			hmac_secret %s
			issuer https://issuer.test/
			audience https://api.test/
		}`, secret)

// gatewayConfig is the Caddyfile of a gateway on Redis with keys under
// prefix, listening on port, with site as its metered site's body.
func gatewayConfig(srv *redistest.Server, prefix string, adminPort, port int, site, globals string) string {
	return identityConfig(srv, prefix, adminPort, port, hmacJWT, site, globals)
}

// identityConfig is gatewayConfig with identity in place of the HMAC jwt
// block.
func identityConfig(srv *redistest.Server, prefix string, adminPort, port int, identity, site, globals string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		store redis {
			url %s
			prefix %s
		}
		%s
		%s
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, adminPort, srv.URL(), prefix, identity, globals, port, site)
}

// freePort returns a port nothing listens on now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// credit gives an account tokens.
func (g *gateway) credit(t *testing.T, account string, amount int64) {
	t.Helper()
	_, err := g.store.Credit(context.Background(), meter.Transfer{Account: account, ID: fmt.Sprint("credit-", time.Now().UnixNano()), Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
}

// account reads an account's totals.
func (g *gateway) account(t *testing.T, id string) meter.Account {
	t.Helper()
	a, err := g.store.Account(context.Background(), meter.Read{Account: id})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// do sends a request with a token (none when token is "") and returns the
// response with its body read.
func (g *gateway) do(t *testing.T, method, path, token string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, g.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// token mints a token for account with the gateway's secret, issuer and
// audience, edited by edit.
func token(t *testing.T, account string, edit ...func(jwt.MapClaims)) string {
	t.Helper()
	claims := jwt.MapClaims{
		"sub": account,
		"iss": "https://issuer.test/",
		"aud": "https://api.test/",
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for _, e := range edit {
		e(claims)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// expectStatus fails the test unless resp has status want.
func expectStatus(t *testing.T, what string, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, want, strings.TrimSpace(body))
	}
}

// httptestServer starts an upstream with handler and returns its address.
func httptestServer(t *testing.T, handler http.HandlerFunc) string {
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// tokenPlain mints a token without issuer and audience.
func tokenPlain(t *testing.T, account string) string {
	return token(t, account, func(c jwt.MapClaims) { delete(c, "iss"); delete(c, "aud") })
}

// meterRead is an operator read of an account.
func meterRead(account string) meter.Read { return meter.Read{Account: account} }
