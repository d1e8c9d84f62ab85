package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate-dev/tollgate/meter"
)

// StoreConfig selects the store.
type StoreConfig struct {
	// Kind is "memory" or "redis". Default: memory.
	Kind string `json:"kind,omitempty"`

	// URL is the Redis server, as redis://[user:pass@]host:port/db or
	// rediss:// for TLS. Required for redis.
	URL string `json:"url,omitempty"`

	// Timeout bounds one logical store operation, retries included.
	// Default: 200ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Prefix starts every Redis key; no braces or spaces. Default: tollgate.
	Prefix string `json:"prefix,omitempty"`
}

// memoryStore is the process's memory store: balances live as long as the
// process, across config reloads.
var memoryStore = sync.OnceValue(func() *meter.Memory { return meter.NewMemory(meter.Config{}) })

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
		if cfg.URL != "" || cfg.Prefix != "" || cfg.Timeout != 0 {
			return errors.New("store memory takes no url, prefix or timeout")
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
	opts := meter.RedisOptions{
		URL:     repl.ReplaceKnown(cfg.URL, ""),
		Prefix:  cfg.Prefix,
		Timeout: time.Duration(cfg.Timeout),
		Config:  meter.Config{Retention: a.LedgerRetention},
	}
	if opts.URL == "" {
		return errors.New("store redis: the url is empty")
	}
	key := fmt.Sprintf("%s|%s|%s|%d", opts.URL, opts.Prefix, opts.Timeout, opts.Retention)
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
