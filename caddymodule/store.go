package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
)

// StoreConfig selects the store. A Redis store takes exactly one of URL,
// Sentinel and Cluster.
type StoreConfig struct {
	// Kind is "memory" or "redis". Default: memory.
	Kind string `json:"kind,omitempty"`

	// URL is one Redis server, as redis://[user:pass@]host:port/db or
	// rediss:// for TLS. Default: none.
	URL string `json:"url,omitempty"`

	// Sentinel follows the master that Redis Sentinels name, through
	// failovers. Default: none.
	Sentinel *SentinelConfig `json:"sentinel,omitempty"`

	// Cluster lists some nodes of a Redis Cluster, as host:port; the store
	// finds the rest and routes each account to its shard. Default: none.
	Cluster []string `json:"cluster,omitempty"`

	// Username authenticates to Redis with sentinel or cluster (a url
	// carries its own). Default: none.
	Username string `json:"username,omitempty"`

	// Password authenticates to Redis with sentinel or cluster.
	// Placeholders such as {env.REDIS_PASSWORD} are resolved at provision.
	// Default: none.
	Password string `json:"password,omitempty"`

	// SentinelPassword authenticates to the Sentinels. Default: none.
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// TLS, with sentinel or cluster, reaches every node, the Sentinels
	// included, over TLS. Default: none (plain TCP).
	TLS *StoreTLS `json:"tls,omitempty"`

	// Replicas is how many replicas must acknowledge every change of money
	// (WAIT, within timeout). An operator credit or debit they do not
	// acknowledge in time answers 503; a request is served, and counted in
	// tollgate_unreplicated_total. Default: 0.
	Replicas int `json:"replicas,omitempty"`

	// Timeout bounds one logical store operation, retries included.
	// Default: 200ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Prefix starts every Redis key; no braces or spaces. Default: tollgate.
	Prefix string `json:"prefix,omitempty"`
}

// SentinelConfig names the master that the Sentinels watch.
type SentinelConfig struct {
	// Master is the name the Sentinels monitor the master by. Required.
	Master string `json:"master"`

	// Addrs are some of the Sentinels, as host:port. Required.
	Addrs []string `json:"addrs"`
}

// StoreTLS is TLS to the Redis nodes.
type StoreTLS struct {
	// CA is a PEM file of the certificates that sign the nodes'.
	// Default: the system's roots.
	CA string `json:"ca,omitempty"`

	// ServerName is the name the nodes' certificates must carry. Default:
	// each node's host.
	ServerName string `json:"server_name,omitempty"`

	// ClientCert and ClientKey are PEM files of a client certificate and
	// its key, for nodes that ask for one. Default: none.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
}

// memoryStore is the process's memory store: balances live as long as the
// process, across config reloads.
var memoryStore = sync.OnceValue(func() *meter.Memory { return meter.NewMemory(meter.Config{Moved: moved}) })

// redisStores shares Redis stores, and their clients, across config reloads.
var redisStores = caddy.NewUsagePool()

// sharedRedis is a Redis store in the usage pool.
type sharedRedis struct{ *meter.Redis }

// Destruct closes the store once its background work is done.
func (s sharedRedis) Destruct() error { return s.Close() }

func (a *App) provisionStore(repl *caddy.Replacer) error {
	cfg := a.Store
	if cfg == nil {
		cfg = &StoreConfig{}
	}
	switch cfg.Kind {
	case "", "memory":
		if cfg.URL != "" || cfg.Prefix != "" || cfg.Timeout != 0 || cfg.Sentinel != nil || len(cfg.Cluster) > 0 ||
			cfg.Username != "" || cfg.Password != "" || cfg.SentinelPassword != "" || cfg.TLS != nil || cfg.Replicas != 0 {
			return errors.New("store memory takes no options")
		}
		m := memoryStore()
		m.SetRetention(a.LedgerRetention)
		a.store = m
		a.logger.Warn("tollgate uses the memory store: balances live in this process only, and nothing is persisted")
		return nil
	case "redis":
	default:
		return fmt.Errorf("unknown store %q: want memory or redis", cfg.Kind)
	}
	opts, err := cfg.redisOptions(repl)
	if err != nil {
		return fmt.Errorf("store redis: %w", err)
	}
	opts.Config = meter.Config{Retention: a.LedgerRetention, Moved: moved}
	opts.Unreplicated = metricUnreplicated.Inc
	key, err := storeKey(cfg, repl, a.LedgerRetention)
	if err != nil {
		return err
	}
	val, _, err := redisStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := meter.NewRedis(opts)
		if err != nil {
			return nil, fmt.Errorf("store redis: %w", err)
		}
		return sharedRedis{s}, nil
	})
	if err != nil {
		return err
	}
	a.store, a.storeKey = val.(sharedRedis).Redis, key
	return nil
}

// redisOptions resolves the placeholders of the Redis store's options. A
// value that resolves to empty is an error.
func (c *StoreConfig) redisOptions(repl *caddy.Replacer) (meter.RedisOptions, error) {
	var err error
	resolve := func(name, v string) string {
		r := repl.ReplaceKnown(v, "")
		if v != "" && r == "" && err == nil {
			err = fmt.Errorf("%s is empty after placeholders are resolved", name)
		}
		return r
	}
	opts := meter.RedisOptions{
		URL:      resolve("the url", c.URL),
		Cluster:  c.Cluster,
		Username: resolve("username", c.Username),
		Password: resolve("password", c.Password),
		Replicas: c.Replicas,
		Prefix:   c.Prefix,
		Timeout:  time.Duration(c.Timeout),
	}
	if c.Sentinel != nil {
		opts.Sentinel = &meter.SentinelOptions{
			Master:   c.Sentinel.Master,
			Addrs:    c.Sentinel.Addrs,
			Password: resolve("sentinel_password", c.SentinelPassword),
		}
	} else if c.SentinelPassword != "" {
		return opts, errors.New("sentinel_password needs sentinel")
	}
	if err != nil {
		return opts, err
	}
	if c.TLS != nil {
		if opts.TLS, err = c.TLS.config(repl); err != nil {
			return opts, fmt.Errorf("tls: %w", err)
		}
	}
	if c.Replicas < 0 {
		return opts, errors.New("replicas must not be negative")
	}
	return opts, nil
}

// config builds the TLS configuration, reading its files.
func (t *StoreTLS) config(repl *caddy.Replacer) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: repl.ReplaceKnown(t.ServerName, "")}
	if t.CA != "" {
		pem, err := os.ReadFile(repl.ReplaceKnown(t.CA, ""))
		if err != nil {
			return nil, fmt.Errorf("reading ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca holds no PEM certificate")
		}
	}
	if (t.ClientCert == "") != (t.ClientKey == "") {
		return nil, errors.New("client_cert needs both a certificate and a key")
	}
	if t.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(repl.ReplaceKnown(t.ClientCert, ""), repl.ReplaceKnown(t.ClientKey, ""))
		if err != nil {
			return nil, fmt.Errorf("reading client_cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// storeKey names a Redis store in the usage pool: configurations that
// resolve to the same options share one store and its client. It is a hash,
// so no password is kept in it.
func storeKey(c *StoreConfig, repl *caddy.Replacer, retention int) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(repl.ReplaceKnown(string(b), "") + fmt.Sprintf("|%d", retention)))
	return hex.EncodeToString(sum[:]), nil
}

// checkStore logs what in the Redis configuration puts balances at risk,
// and how many replicas a master needs to accept writes, and loads the
// scripts on every master. None of it stops the app: Redis may be down at
// start and come up later.
func (a *App) checkStore() {
	r, ok := a.store.(*meter.Redis)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	risks, err := r.CheckConfig(ctx)
	if err != nil {
		a.logger.Error("cannot check the redis configuration", zap.Error(err))
	}
	for _, risk := range risks {
		a.logger.Error(risk)
	}
	if n, err := r.MinReplicasToWrite(ctx); err == nil {
		a.logger.Info("redis masters accept writes with this many replicas connected",
			zap.Int("min_replicas_to_write", n), zap.Int("replicas_waited_for", a.Store.Replicas))
	}
	if err := r.LoadScripts(ctx); err != nil {
		a.logger.Warn("cannot load the scripts on every redis master; calls send them whole when they meet NOSCRIPT", zap.Error(err))
	}
}
