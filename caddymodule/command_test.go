package caddymodule

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/auth"
)

// runToken runs the token command with args and returns its output.
func runToken(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := tokenCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestTokenCommand(t *testing.T) {
	secret := "command-test-secret-0123456789-abcd"
	out, err := runToken(t, "--account", "alice", "--secret", secret, "--ttl", "10m", "--issuer", "https://i/", "--audience", "https://a/")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	if strings.Count(out, "\n") != 1 || strings.Count(token, ".") != 2 {
		t.Fatalf("output %q, want the token alone on a line", out)
	}
	v, err := auth.New(auth.Config{HMACSecret: []byte(secret), Issuer: "https://i/", Audience: "https://a/"})
	if err != nil {
		t.Fatal(err)
	}
	if account, err := v.Verify(token); err != nil || account != "alice" {
		t.Errorf("the minted token verifies as %q, %v", account, err)
	}

	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runToken(t, "--account", "bob", "--secret-file", file); err != nil {
		t.Errorf("--secret-file: %v", err)
	}
	t.Setenv("TOLLGATE_JWT_SECRET", secret)
	if _, err := runToken(t, "--account", "carol"); err != nil {
		t.Errorf("TOLLGATE_JWT_SECRET: %v", err)
	}

	t.Setenv("TOLLGATE_JWT_SECRET", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--secret", secret}, "--account"},
		{[]string{"--account", "a b", "--secret", secret}, "--account"},
		{[]string{"--account", "alice"}, "at least 32 bytes"},
		{[]string{"--account", "alice", "--secret", "short"}, "at least 32 bytes"},
		{[]string{"--account", "alice", "--secret", secret, "--secret-file", file}, "not both"},
		{[]string{"--account", "alice", "--secret-file", "/nonexistent"}, "reading the secret"},
	} {
		if _, err := runToken(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}
