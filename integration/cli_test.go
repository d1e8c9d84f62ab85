package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
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
	for range 3 {
		g.do(t, "GET", "/x", token(t, "alice"))
	}
	last, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meterRead("alice"), Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	day := last.Entries[0].Time.Truncate(24 * time.Hour).Format(time.RFC3339)
	out, _, code = cli(t, g, "usage", "--account", "alice", "--by", "day")
	if want := day + "  charged          3  requests        3   * 3/3\n"; code != 0 || out != want {
		t.Errorf("usage --by day: %q exit %d, want %q", out, code, want)
	}
	out, _, code = cli(t, g, "usage", "--account", "alice", "--to", "2000-01-01T00:00:00Z", "--json")
	if code != 0 || out != `{"account":"alice","by":"hour","buckets":[]}`+"\n" {
		t.Errorf("usage --to 2000 --json: %q exit %d", out, code)
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
		{[]string{"usage", "--account", "nobody"}, "unknown account", 3},
		{[]string{"usage", "--account", "alice", "--by", "week"}, "bad --by", 2},
		{[]string{"usage", "--account", "alice", "--from", "monday"}, "bad --from", 2},
	} {
		_, errOut, code := cli(t, g, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line with %q", c.args, code, errOut, c.code, c.want)
		}
	}
	if a := g.account(t, "alice"); a.Balance != 987 || a.Credited != 1000 {
		t.Errorf("failures changed the account: %+v", a)
	}

	// The admin address read from a config file.
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte("{\n\tadmin "+strings.TrimPrefix(g.Admin, "http://")+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tollgateBinary(t), "balance", "--account", "alice", "--config", file, "--adapter", "caddyfile")
	if out, err := cmd.Output(); err != nil || !strings.HasPrefix(string(out), "alice: balance 987") {
		t.Errorf("balance --config: %q, %v", out, err)
	}

	// An unreachable admin API.
	cmd = exec.Command(tollgateBinary(t), "balance", "--account", "alice", "--address", "127.0.0.1:1")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 1 || !strings.Contains(errOut.String(), "cannot reach the admin API") {
		t.Errorf("unreachable admin API: %v, %q", err, errOut.String())
	}
}

// TestCLIVerify checks every account, and one, with tollgate verify, before
// and after a stray write to one account's keys.
func TestCLIVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)
	for range 3 {
		resp, body := g.do(t, "GET", "/x", token(t, "alice"))
		expectStatus(t, "paid request", resp, body, http.StatusOK)
	}
	g.credit(t, "bob", 7)

	for _, c := range []struct {
		args      []string
		out, fail string
		code      int
	}{
		{[]string{"verify"}, "checked 2 accounts: 0 drift\n", "", 0},
		{[]string{"verify", "--json"}, `{"checked":2,"drift":[]}` + "\n", "", 0},
		{[]string{"verify", "--account", "alice"}, "checked 1 account: 0 drift\n", "", 0},
		{[]string{"verify", "--account", "nobody"}, "", "unknown account", 3},
	} {
		out, errOut, code := cli(t, g, c.args...)
		if code != c.code || out != c.out || !strings.Contains(errOut, c.fail) || strings.Count(errOut, "\n") > 1 {
			t.Errorf("%q: %q %q exit %d; want %q, exit %d", c.args, out, errOut, code, c.out, c.code)
		}
	}

	g.corrupt(t, "bob")
	held := "bob  held  held is 3, the open holds sum to 0\n"
	ledger := "bob  ledger  the entries make held 0, the account says 3\n"
	for _, c := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"verify"}, held + ledger + "checked 2 accounts: 2 drift\n", 7},
		{[]string{"verify", "--account", "bob"}, held + ledger + "checked 1 account: 2 drift\n", 7},
		{[]string{"verify", "--account", "alice"}, "checked 1 account: 0 drift\n", 0},
	} {
		out, errOut, code := cli(t, g, c.args...)
		if code != c.code || out != c.out {
			t.Errorf("%q after a stray write: %q %q exit %d; want %q, exit %d", c.args, out, errOut, code, c.out, c.code)
		}
		if c.code == 7 && (!strings.Contains(errOut, "drift found: 2") || strings.Count(strings.TrimSpace(errOut), "\n") != 0) {
			t.Errorf("%q after a stray write: stderr %q, want one line saying drift was found", c.args, errOut)
		}
	}
	out, _, code := cli(t, g, "verify", "--json")
	var found struct {
		Checked int           `json:"checked"`
		Drift   []meter.Drift `json:"drift"`
	}
	if err := json.Unmarshal([]byte(out), &found); err != nil || code != 7 || found.Checked != 2 || len(found.Drift) != 2 || found.Drift[0].Check != meter.CheckHeld {
		t.Errorf("verify --json after a stray write: %q exit %d, %v", out, code, err)
	}

	cmd := exec.Command(tollgateBinary(t), "verify", "--address", "127.0.0.1:1")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("verify against an unreachable admin API: %v, want exit 1", err)
	}
}

// TestCLIAccounts lists 250 accounts across pages with tollgate accounts.
func TestCLIAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	want := map[string]bool{}
	for i := range 250 {
		id := fmt.Sprintf("acct-%03d", i)
		g.credit(t, id, 1)
		want[id] = true
	}
	out, errOut, code := cli(t, g, "accounts", "--limit", "7")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	got := map[string]int{}
	for _, l := range lines {
		got[l]++
	}
	if code != 0 || errOut != "" || len(lines) != 250 || len(got) != 250 {
		t.Fatalf("accounts: %d lines, %d distinct, stderr %q, exit %d; want 250 accounts", len(lines), len(got), errOut, code)
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("account %s listed %d times, want once", id, got[id])
		}
	}

	out, _, code = cli(t, g, "accounts", "--json")
	var list struct {
		Accounts []string `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Accounts) != 250 {
		t.Errorf("accounts --json: %d accounts, exit %d, %v; want 250", len(list.Accounts), code, err)
	}
	for _, limit := range []string{"0", "1001"} {
		_, errOut, code := cli(t, g, "accounts", "--limit", limit)
		if code != 2 || !strings.Contains(errOut, "bad --limit") {
			t.Errorf("accounts --limit %s: stderr %q exit %d, want exit 2", limit, errOut, code)
		}
	}
}

// TestCLILedgerBefore pages an account's ledger with tollgate ledger
// --before: every entry once, newest first.
func TestCLILedgerBefore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, "tollgate 1\nreverse_proxy "+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)
	tok := token(t, "alice")
	for range 11 {
		resp, body := g.do(t, "GET", "/x", tok)
		expectStatus(t, "paid request", resp, body, http.StatusOK)
	}
	var ids []string
	args := []string{"ledger", "--account", "alice", "--limit", "5"}
	for range 10 {
		out, errOut, code := cli(t, g, args...)
		if code != 0 {
			t.Fatalf("%q: %q exit %d", args, errOut, code)
		}
		if out == "" {
			break
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) > 5 {
			t.Fatalf("%q: %d entries, want at most 5", args, len(lines))
		}
		for _, l := range lines {
			ids = append(ids, strings.Fields(l)[1])
		}
		args = []string{"ledger", "--account", "alice", "--limit", "5", "--before", ids[len(ids)-1]}
	}
	page, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meterRead("alice"), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(page.Entries) || len(ids) != 12 {
		t.Fatalf("the walk read %d entries, the ledger has %d; want 12", len(ids), len(page.Entries))
	}
	for i, e := range page.Entries {
		if ids[i] != e.ID {
			t.Errorf("entry %d of the walk is %s, want %s", i, ids[i], e.ID)
		}
	}

	out, _, code := cli(t, g, "ledger", "--account", "alice", "--limit", "5", "--before", ids[4], "--json")
	if !strings.Contains(out, `"next":"`+ids[9]+`"`) || code != 0 {
		t.Errorf("ledger --before --json: %q exit %d, want the page after %s, next %s", out, code, ids[4], ids[9])
	}
	_, errOut, code := cli(t, g, "ledger", "--account", "alice", "--before", "nope")
	if code != 2 || !strings.Contains(errOut, "refused") {
		t.Errorf("ledger --before nope: stderr %q exit %d, want exit 2", errOut, code)
	}
}
