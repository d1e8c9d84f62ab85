package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// tollgateBinary builds cmd/tollgate once per test run.
func tollgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binary = filepath.Join(workDir, "tollgate")
		out, err := exec.Command("go", "build", "-o", binary, "../cmd/tollgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// process is a gateway running as its own process.
type process struct {
	URL   string
	Admin string // its admin endpoint, when startProcess started it
	cmd   *exec.Cmd
	done  chan struct{} // closed once the process has been waited for
}

// startProcess runs a gateway as its own process on the same Redis keys as
// g. The test's end kills it.
func startProcess(t *testing.T, srv *redistest.Server, g *gateway, site, globals string) *process {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	p := runProcess(t, port, gatewayConfig(srv, g.prefix, adminPort, port, site, globals))
	p.Admin = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	return p
}

// runProcess runs a gateway as its own process on a Caddyfile that serves
// port, with env added to its environment. The test's end kills it.
func runProcess(t *testing.T, port int, caddyfile string, env ...string) *process {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tollgateBinary(t), "run", "--adapter", "caddyfile", "--config", file)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	waitFor(t, "the gateway process to serve", func() bool {
		resp, err := http.Get(p.URL + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return p
}

// kill kills the process with SIGKILL, so that it can clean nothing up, and
// waits until it is gone.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// TestTwoGateways sends a new account's requests through two gateway
// processes on one Redis: exactly what the balance covers is paid.
func TestTwoGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	site := "tollgate 3\nreverse_proxy " + up.Listener.Addr().String()
	g := startGateway(t, srv, site, "")
	other := startProcess(t, srv, g, site, "").URL
	const k = 137
	g.credit(t, "alice", 3*k)
	tok := token(t, "alice")

	paid, refused := burst(t, tok, 1000, g.URL, other)
	if paid != k || refused != 1000-k || up.hits.Load() != k {
		t.Errorf("%d paid, %d refused, %d upstream hits; want %d, %d, %d", paid, refused, up.hits.Load(), k, 1000-k, k)
	}
	if a := g.account(t, "alice"); a.Balance != 0 || a.Charged != 3*k {
		t.Errorf("account %+v, want balance 0 and %d charged", a, 3*k)
	}
}

// TestSignupBonusAcrossGateways sends a new account's first 100 requests
// through two gateway processes at once: the bonus is credited once, and
// exactly what it covers is paid.
func TestSignupBonusAcrossGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	site := "tollgate 3\nreverse_proxy " + up.Listener.Addr().String()
	g := startGateway(t, srv, site, "signup_bonus 50")
	other := startProcess(t, srv, g, site, "signup_bonus 50").URL
	paid, refused := burst(t, token(t, "newcomer"), 100, g.URL, other)
	if paid != 50/3 || refused != 100-50/3 {
		t.Errorf("%d paid and %d refused, want %d and %d", paid, refused, 50/3, 100-50/3)
	}
	a := g.account(t, "newcomer")
	if a.Credited != 50 || a.Charged != 3*(50/3) || a.Balance != 50%3 {
		t.Errorf("account %+v, want the bonus of 50 credited once", a)
	}
}
