package meter

import (
	"context"
	"fmt"
	"strings"
)

// CheckConfig reports what in Redis's configuration puts balances at risk:
// a maxmemory-policy other than noeviction lets Redis evict balances, and
// with the append-only file off a restart loses every change since the last
// snapshot. It returns one sentence per risk, none when the configuration is
// safe, and an error when the configuration cannot be read (CONFIG may be
// disabled on managed services).
func (s *Redis) CheckConfig(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.timeout, defaultCheckTimeout))
	defer cancel()
	var risks []string
	policy, err := s.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return nil, fmt.Errorf("reading redis config: %w", err)
	}
	if p := policy["maxmemory-policy"]; p != "noeviction" {
		risks = append(risks, fmt.Sprintf("redis maxmemory-policy is %q, not \"noeviction\": Redis may evict balances and ledgers when memory runs short", p))
	}
	aof, err := s.client.ConfigGet(ctx, "appendonly").Result()
	if err != nil {
		return nil, fmt.Errorf("reading redis config: %w", err)
	}
	if a := aof["appendonly"]; !strings.EqualFold(a, "yes") {
		risks = append(risks, "redis appendonly is off: a restart loses every balance change since the last snapshot")
	}
	return risks, nil
}
