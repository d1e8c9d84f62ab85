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
// cluster's MOVED, ASK or TRYAGAIN within one call.
const maxRedirects = 5

// evalWait runs a script that changes money and then WAIT for the store's
// replicas, on one connection to the master of the script's keys, so that
// WAIT covers the script's writes. It returns the script's reply and how
// many replicas acknowledged it. On a cluster it follows MOVED and ASK
// itself, because the connection must be the one to the node that runs the
// script. A script that meets NOSCRIPT did not run, and is sent again whole.
func (s *Redis) evalWait(ctx context.Context, script *redis.Script, keys []string, argv []any) ([]any, int64, error) {
	var node redis.Cmdable = s.client
	asking := false
	for range maxRedirects {
		if s.cluster != nil && !asking {
			n, err := s.cluster.MasterForKey(ctx, keys[0])
			if err != nil {
				return nil, 0, err
			}
			node = n
		}
		reply, acked, err := s.pipeWait(ctx, node, script, keys, argv, asking)
		if s.cluster == nil || err == nil {
			return reply, acked, err
		}
		asking = false
		if addr, ok := redis.IsAskError(err); ok {
			if node, err = s.master(ctx, addr); err != nil {
				return nil, 0, err
			}
			asking = true
			continue
		}
		if _, ok := redis.IsMovedError(err); ok {
			s.cluster.ReloadState(ctx)
			continue
		}
		if redis.IsTryAgainError(err) || redis.HasErrorPrefix(err, "CLUSTERDOWN") {
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, 0, ctx.Err()
			}
			continue
		}
		return nil, 0, err
	}
	return nil, 0, errors.New("too many cluster redirects")
}

// pipeWait sends the script, then WAIT, in one pipeline on node, preceded
// by ASKING when a migrating slot sent the script there.
func (s *Redis) pipeWait(ctx context.Context, node redis.Cmdable, script *redis.Script, keys []string, argv []any, asking bool) ([]any, int64, error) {
	waitMs := int64(1)
	if end, ok := ctx.Deadline(); ok {
		// WAIT answers before the call's deadline, with what it has.
		waitMs = max(1, time.Until(end).Milliseconds()*3/4)
	}
	whole := false
	for {
		var eval *redis.Cmd
		var wait *redis.IntCmd
		_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
			if asking {
				p.Do(ctx, "ASKING")
			}
			if whole {
				eval = script.Eval(ctx, p, keys, argv...)
			} else {
				eval = script.EvalSha(ctx, p, keys, argv...)
			}
			wait = redis.NewIntCmd(ctx, "WAIT", s.replicas, waitMs)
			return p.Process(ctx, wait)
		})
		if err := eval.Err(); err != nil {
			if !whole && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				whole = true
				continue
			}
			return nil, 0, err
		}
		// A WAIT that failed after the script ran acknowledges nothing.
		reply, err := eval.Slice()
		return reply, wait.Val(), err
	}
}

// master returns the cluster's master client at addr, which an ASK named.
func (s *Redis) master(ctx context.Context, addr string) (redis.Cmdable, error) {
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
