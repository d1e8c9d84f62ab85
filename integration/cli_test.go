package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// cli runs the tollgate binary's operator command against g's admin API and
// returns its standard output, standard error and exit code.
func cli(t *testing.T, g *gateway, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(tollgateBinary(t), append(args, "--address", strings.TrimPrefix(g.Admin, "http://"))...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")

	for _, id := range []string{"alice", "auth0|abc", "a/b", "50%", "{x}"} {
		out, errOut, code := cli(t, g, "credit", "--account", id, "--amount", "1000", "--id", "order-123", "--reason", "purchase")
		if code != 0 || out != "credited 1000 to "+id+" (order-123): balance 1000\n" {
			t.Errorf("credit %s: %q %q exit %d", id, out, errOut, code)
		}
		out, _, code = cli(t, g, "balance", "--account", id)
		if code != 0 || !strings.HasPrefix(out, id+": balance 1000, held 0") {
			t.Errorf("balance %s: %q exit %d", id, out, code)
		}
	}
	out, _, code := cli(t, g, "credit", "--account", "alice", "--amount", "1000", "--id", "order-123", "--reason", "purchase")
	if code != 0 || !strings.HasPrefix(out, "already credited 1000") {
		t.Errorf("repeated credit: %q exit %d", out, code)
	}
	out, _, code = cli(t, g, "debit", "--account", "alice", "--amount", "10", "--id", "fix-7", "--json")
	if code != 0 || !strings.Contains(out, `"balance":990`) || !strings.Contains(out, `"replayed":false`) {
		t.Errorf("debit --json: %q exit %d", out, code)
	}
	out, _, code = cli(t, g, "ledger", "--account", "alice", "--limit", "5")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.Contains(lines[0], "debit") || !strings.Contains(lines[1], "credit") {
		t.Errorf("ledger: %q exit %d", out, code)
	}

	// Each failure has its own message and exit code, and changes nothing.
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"credit", "--account", "alice", "--amount", "1e3", "--id", "x"}, "bad amount", 2},
		{[]string{"credit", "--account", "alice", "--amount", "-5", "--id", "x"}, "bad amount", 2},
		{[]string{"credit", "--account", "alice", "--amount", "9007199254740992", "--id", "x"}, "bad amount", 2},
		{[]string{"credit", "--account", "alice", "--amount", "5"}, "--id is required", 2},
		{[]string{"credit", "--account", "alice", "--amount", "999", "--id", "order-123"}, "conflict", 4},
		{[]string{"debit", "--account", "alice", "--amount", "5000", "--id", "big"}, "insufficient balance", 5},
		{[]string{"balance", "--account", "nobody"}, "unknown account", 3},
		{[]string{"ledger", "--account", "nobody"}, "unknown account", 3},
		{[]string{"ledger", "--account", "alice", "--limit", "0"}, "bad --limit", 2},
	} {
		_, errOut, code := cli(t, g, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line with %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if a := g.account(t, "alice"); a.Balance != 990 || a.Credited != 1000 {
		t.Errorf("failures changed the account: %+v", a)
	}

	// The admin address read from a config file.
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte("{\n\tadmin "+strings.TrimPrefix(g.Admin, "http://")+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tollgateBinary(t), "balance", "--account", "alice", "--config", file, "--adapter", "caddyfile")
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "alice: balance 990") {
		t.Errorf("balance --config: %q, %v", out, err)
	}

	// An unreachable admin API.
	cmd = exec.Command(tollgateBinary(t), "balance", "--account", "alice", "--address", "127.0.0.1:1")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 || !strings.Contains(errOut.String(), "cannot reach the admin API") {
		t.Errorf("unreachable admin API: %v, %q", err, errOut.String())
	}
}
