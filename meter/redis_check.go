package meter

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// nodes returns the masters that hold the store's keys: the one server or
// Sentinel's master, or every master of a cluster.
func (s *Redis) nodes(ctx context.Context) ([]redis.Cmdable, error) {
	if s.cluster == nil {
		return []redis.Cmdable{s.client}, nil
	}
	masters, err := s.masters(ctx)
	nodes := make([]redis.Cmdable, len(masters))
	for i, m := range masters {
		nodes[i] = m
	}
	return nodes, err
}

// CheckConfig reports what in Redis's configuration puts balances at risk:
// a maxmemory-policy other than noeviction lets Redis evict balances, and
// with the append-only file off a restart loses every change since the last
// snapshot. It checks every master. It returns one sentence per risk, none
// when the configuration is safe, and an error when the configuration cannot
// be read (CONFIG may be disabled on managed services).
func (s *Redis) CheckConfig(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.timeout, defaultCheckTimeout))
	defer cancel()
	nodes, err := s.nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing redis masters: %w", err)
	}
	var risks []string
	for _, n := range nodes {
		cfg, err := n.ConfigGet(ctx, "*").Result()
		if err != nil {
			return nil, fmt.Errorf("reading redis config: %w", err)
		}
		where := ""
		if len(nodes) > 1 {
			where = " on " + n.(*redis.Client).Options().Addr
		}
		if p := cfg["maxmemory-policy"]; p != "noeviction" {
			risks = append(risks, fmt.Sprintf("redis maxmemory-policy is %q%s, not \"noeviction\": Redis may evict balances and ledgers when memory runs short", p, where))
		}
		if a := cfg["appendonly"]; !strings.EqualFold(a, "yes") {
			risks = append(risks, "redis appendonly is off"+where+": a restart loses every balance change since the last snapshot")
		}
	}
	return risks, nil
}

// MinReplicasToWrite returns the smallest min-replicas-to-write among the
// masters: how many replicas a master needs connected to accept writes at
// all, which bounds what a master cut off from its replicas can take in.
func (s *Redis) MinReplicasToWrite(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.timeout, defaultCheckTimeout))
	defer cancel()
	nodes, err := s.nodes(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing redis masters: %w", err)
	}
	least := -1
	for _, n := range nodes {
		cfg, err := n.ConfigGet(ctx, "min-replicas-to-write").Result()
		if err != nil {
			return 0, fmt.Errorf("reading redis config: %w", err)
		}
		v, err := strconv.Atoi(cfg["min-replicas-to-write"])
		if err != nil {
			return 0, fmt.Errorf("reading redis min-replicas-to-write: %w", err)
		}
		if least < 0 || v < least {
			least = v
		}
	}
	return max(least, 0), nil
}

// LoadScripts loads every script on every master, so that the first calls
// need not send them whole. A script that a restart, a failover or a new
// shard has lost since is sent again whole when a call meets NOSCRIPT.
func (s *Redis) LoadScripts(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(s.timeout, defaultCheckTimeout))
	defer cancel()
	for _, sc := range scripts {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return fmt.Errorf("loading redis scripts: %w", err)
		}
	}
	return nil
}
