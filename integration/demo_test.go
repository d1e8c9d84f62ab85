package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/caddymodule"
)

// load adapts and runs a Caddyfile in this process.
func load(t *testing.T, cfg string) error {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return caddy.Load(js, true)
}

// TestDemoSecret runs the demo secret on localhost sites bound to loopback,
// and refuses it on any other site, and on any listener another machine
// can reach.
func TestDemoSecret(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), caddymodule.DemoSecret) {
		t.Fatal("Caddyfile.example does not use the demo secret")
	}
	const sites, listener = "every site is on localhost", "every listener binds only loopback addresses"
	for _, c := range []struct {
		sites, bind string
		refusal     string // what the error names; none when accepted
	}{
		{"http://localhost:%d", "bind 127.0.0.1", ""},
		{"http://127.0.0.1:%d", "bind 127.0.0.1", ""},
		{"http://localhost:%d", "bind localhost", ""},
		{"http://localhost:%d", "", listener},
		{"http://localhost:%d", "bind 0.0.0.0", listener},
		{"http://localhost:%d", "bind 127.0.0.1 0.0.0.0", listener},
		{"http://localhost:%d, http://example.test:%[1]d", "bind 127.0.0.1", sites},
		{"http://example.test:%d", "bind 127.0.0.1", sites},
		{":%d", "bind 127.0.0.1", sites},
	} {
		addrs := fmt.Sprintf(c.sites, freePort(t))
		cfg := `{
	admin off
	persist_config off
	tollgate {
		jwt {
			hmac_secret ` + caddymodule.DemoSecret + `
		}
	}
}
` + addrs + ` {
	` + c.bind + `
	tollgate 1
	respond ok
}
`
		err := load(t, cfg)
		if c.refusal == "" && err != nil {
			t.Errorf("%s, %q: %v", addrs, c.bind, err)
		}
		if c.refusal != "" && (err == nil || !strings.Contains(err.Error(), "demo hmac_secret") || !strings.Contains(err.Error(), c.refusal)) {
			t.Errorf("%s, %q: error %v, want the demo secret refused because not %s", addrs, c.bind, err, c.refusal)
		}
		_ = caddy.Stop()
	}
}

// TestDemoExample runs Caddyfile.example, on free ports: it serves the demo
// on loopback only, and without its default_bind, the demo secret is
// refused for the listener that binds every interface.
func TestDemoExample(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	port, upstream := freePort(t), freePort(t)
	cfg := strings.NewReplacer(
		"admin localhost:2019", "admin off\n\tpersist_config off",
		"localhost:8080", fmt.Sprintf("localhost:%d", port),
		"localhost:8081", fmt.Sprintf("localhost:%d", upstream),
		"127.0.0.1:8081", fmt.Sprintf("127.0.0.1:%d", upstream),
	).Replace(string(example))
	if !strings.Contains(cfg, "\tdefault_bind 127.0.0.1\n") {
		t.Fatal("Caddyfile.example does not bind its sites to loopback")
	}

	if err := load(t, cfg); err != nil {
		t.Fatalf("the example: %v", err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte(caddymodule.DemoSecret))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/hello", port), nil)
	req.Host = fmt.Sprintf("localhost:%d", port)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello from the upstream, alice\n" {
		t.Errorf("the example's /v1/hello: %d %q, want 200 and the upstream's hello", resp.StatusCode, body)
	}
	// Neither the gateway nor its upstream answers on another interface.
	if ip := outsideIP(t); ip != nil {
		for _, p := range []int{port, upstream} {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(p)), time.Second); err == nil {
				c.Close()
				t.Errorf("port %d answers on %s, want loopback only", p, ip)
			}
		}
	}
	_ = caddy.Stop()

	// Either server may be named: each listens on every interface.
	err = load(t, strings.Replace(cfg, "\tdefault_bind 127.0.0.1\n", "", 1))
	if err == nil || !strings.Contains(err.Error(), "demo hmac_secret") ||
		!strings.Contains(err.Error(), fmt.Sprintf("listens on :%d ", port)) && !strings.Contains(err.Error(), fmt.Sprintf("listens on :%d ", upstream)) {
		t.Errorf("the example without default_bind: error %v, want the demo secret refused for the listener :%d or :%d", err, port, upstream)
	}
}

// outsideIP returns an address of this machine that is not loopback, or
// nil when it has none.
func outsideIP(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}
