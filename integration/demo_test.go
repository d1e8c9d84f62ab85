package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

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

// TestDemoSecret runs the demo secret on localhost, and refuses it on any
// other site.
func TestDemoSecret(t *testing.T) {
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(example), caddymodule.DemoSecret) {
		t.Fatal("Caddyfile.example does not use the demo secret")
	}
	for _, c := range []struct {
		sites string
		ok    bool
	}{
		{"http://localhost:%d", true},
		{"http://127.0.0.1:%d", true},
		{"http://localhost:%d, http://example.test:%[1]d", false},
		{"http://example.test:%d", false},
		{":%d", false},
	} {
		sites := fmt.Sprintf(c.sites, freePort(t))
		cfg := `{
	admin off
	persist_config off
	tollgate {
		jwt {
			hmac_secret ` + caddymodule.DemoSecret + `
		}
	}
}
` + sites + ` {
	bind 127.0.0.1
	tollgate 1
	respond ok
}
`
		err := load(t, cfg)
		if c.ok && err != nil {
			t.Errorf("%s: %v", sites, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "demo hmac_secret")) {
			t.Errorf("%s: error %v, want the demo secret refused", sites, err)
		}
		_ = caddy.Stop()
	}
}
