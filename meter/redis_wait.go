package meter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxRedirects bounds how often a script that waits for replicas follows a
// cluster's MOVED or ASK within one call.
const maxRedirects = 5

// tryAgainPause is how long a script that a migrating slot answered
// TRYAGAIN waits before it is sent again.
const tryAgainPause = 5 * time.Millisecond

// pause waits for d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitLate is how late Redis may answer a WAIT that timed out.
const waitLate = 110 * time.Millisecond

// evalWait runs a script that changes money and then WAIT for the store's
// replicas, on one connection to the master of the script's keys, so that
// WAIT covers the script's writes, and every write before them. It returns the script's reply and how
// many replicas acknowledged it. On a cluster it follows MOVED and ASK
// itself, because the connection must be the one to the node that runs the
// script. A script that meets NOSCRIPT did not run, and is sent again whole.
func (s *Redis) evalWait(ctx context.Context, script *redis.Script, keys []string, argv []any) ([]any, int64, error) {
	node, _ := s.client.(*redis.Client)
	asking := false
	for redirects := 0; redirects <= maxRedirects; {
		if s.cluster != nil && !asking {
			n, err := s.cluster.MasterForKey(ctx, keys[0])
			if err != nil {
				return nil, 0, err
			}
			node = n
		}
		reply, acked, err := s.connWait(ctx, node, script, keys, argv, asking)
		if s.cluster == nil || err == nil {
			return reply, acked, err
		}
		asking = false
		if addr, ok := redis.IsAskError(err); ok {
			if node, err = s.master(ctx, addr); err != nil {
				return nil, 0, err
			}
			asking = true
			redirects++
			continue
		}
		if _, ok := redis.IsMovedError(err); ok {
			s.cluster.ReloadState(ctx)
			redirects++
			continue
		}
		if redis.IsTryAgainError(err) {
			if err := pause(ctx, tryAgainPause); err != nil {
				return nil, 0, err
			}
			continue
		}
		return nil, 0, err
	}
	return nil, 0, errors.New("too many cluster redirects")
}

// connWait runs the script, then WAIT, on one connection of node, each
// script call preceded by ASKING when a migrating slot sent it there. WAIT
// follows the script, not in a pipeline with it, so that a script that
// meets NOSCRIPT is sent again whole before WAIT takes its time.
func (s *Redis) connWait(ctx context.Context, node *redis.Client, script *redis.Script, keys []string, argv []any, asking bool) ([]any, int64, error) {
	conn := node.Conn()
	defer conn.Close()
	call := func(whole bool) *redis.Cmd {
		if asking {
			if err := conn.Do(ctx, "ASKING").Err(); err != nil {
				return redis.NewCmdResult(nil, err)
			}
		}
		if whole {
			return script.Eval(ctx, conn, keys, argv...)
		}
		return script.EvalSha(ctx, conn, keys, argv...)
	}
	eval := call(false)
	if err := eval.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		eval = call(true)
	}
	reply, err := eval.Slice()
	if err != nil {
		return nil, 0, err
	}
	waitMs := int64(1)
	if end, ok := ctx.Deadline(); ok {
		// WAIT answers before the call's deadline, with what it has.
		// Redis ends a blocked WAIT on its cron, up to 1/hz late (100ms
		// at the default hz of 10).
		left := time.Until(end)
		waitMs = max(1, min(left/2, left-waitLate).Milliseconds())
	}
	// A WAIT that fails after the script ran acknowledges nothing.
	acked, _ := conn.Do(ctx, "WAIT", s.replicas, waitMs).Int64()
	return reply, acked, nil
}

// master returns the cluster's master client at addr, which an ASK named.
func (s *Redis) master(ctx context.Context, addr string) (*redis.Client, error) {
	var mu sync.Mutex
	var found *redis.Client
	err := s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		if c.Options().Addr == addr {
			mu.Lock()
			found = c
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("no cluster master at %s", addr)
	}
	return found, nil
}
