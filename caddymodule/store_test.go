package caddymodule

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestStoreProvisionErrors checks that every bad store configuration is
// refused at provision with an error that names it, before any connection.
func TestStoreProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOLLGATE_EMPTY", "")
	for _, c := range []struct {
		store StoreConfig
		want  string
	}{
		{StoreConfig{Kind: "memory", Replicas: 1}, "store memory takes no options"},
		{StoreConfig{Kind: "memory", Cluster: []string{"a:1"}}, "store memory takes no options"},
		{StoreConfig{Kind: "redis"}, "exactly one of a url, sentinel and cluster"},
		{StoreConfig{Kind: "redis", URL: "redis://h:1", Cluster: []string{"a:1"}}, "exactly one of a url, sentinel and cluster"},
		{StoreConfig{Kind: "redis", URL: "redis://h:1", Password: "p"}, "a redis url carries its own username, password and tls"},
		{StoreConfig{Kind: "redis", URL: "{env.TOLLGATE_EMPTY}"}, "the url is empty after placeholders are resolved"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, Password: "{env.TOLLGATE_EMPTY}"}, "password is empty after placeholders are resolved"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a"}}, `bad address "a": want host:port`},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, SentinelPassword: "s"}, "sentinel_password needs sentinel"},
		{StoreConfig{Kind: "redis", Sentinel: &SentinelConfig{Master: "m"}}, "at least one sentinel address"},
		{StoreConfig{Kind: "redis", Sentinel: &SentinelConfig{Addrs: []string{"a:1"}}}, "needs a master name"},
		{StoreConfig{Kind: "redis", Sentinel: &SentinelConfig{Master: "m", Addrs: []string{"a:1"}}, SentinelPassword: "{env.TOLLGATE_EMPTY}"}, "sentinel_password is empty"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, Replicas: -1}, "replicas must not be negative"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, TLS: &StoreTLS{CA: notPEM}}, "ca holds no PEM certificate"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, TLS: &StoreTLS{CA: filepath.Join(dir, "missing.pem")}}, "reading ca"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, TLS: &StoreTLS{ClientCert: notPEM}}, "client_cert needs both a certificate and a key"},
		{StoreConfig{Kind: "redis", Cluster: []string{"a:1"}, TLS: &StoreTLS{ClientCert: notPEM, ClientKey: notPEM}}, "reading client_cert"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		store := c.store
		a := &App{Store: &store, Account: "{http.auth.user.id}"}
		err := a.Provision(ctx)
		_ = a.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.store, err, c.want)
		}
	}
}

// TestStoreShared checks that configurations resolving to the same store
// share one, and that the pool key keeps no password.
func TestStoreShared(t *testing.T) {
	t.Setenv("TOLLGATE_REDIS_PASSWORD", "s3cret-password")
	var stores []*App
	for range 2 {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		a := &App{Store: &StoreConfig{Kind: "redis", Cluster: []string{"127.0.0.1:1"}, Password: "{env.TOLLGATE_REDIS_PASSWORD}"}, Account: "{http.auth.user.id}"}
		if err := a.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Cleanup() })
		stores = append(stores, a)
	}
	if stores[0].store != stores[1].store {
		t.Error("two provisions of one configuration made two stores")
	}
	if strings.Contains(stores[0].storeKey, "s3cret") {
		t.Error("the pool key holds the password")
	}
}
