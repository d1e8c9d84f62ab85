package meter

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is how many hash slots a Redis Cluster has.
const clusterSlots = 16384

// slotBatch is how many slots one step of a cluster walk reads from each
// master in one pipeline.
const slotBatch = 1024

// masters returns the cluster's masters, in the order of their addresses.
func (s *Redis) masters(ctx context.Context) ([]*redis.Client, error) {
	var mu sync.Mutex
	var all []*redis.Client
	err := s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		all = append(all, c)
		mu.Unlock()
		return nil
	})
	slices.SortFunc(all, func(a, b *redis.Client) int { return strings.Compare(a.Options().Addr, b.Options().Addr) })
	return all, err
}

// clusterAccounts lists the accounts of a cluster slot by slot, from the
// slot the cursor names. Each step reads a batch of slots from every master
// twice, in the same order: a key that a migration moves during the step is
// on its old node when that node is read, or already on its new one when
// that node is read next, on either pass, so no account that exists for the
// whole walk is missed. The cursor is the next slot.
func (s *Redis) clusterAccounts(ctx context.Context, cursor string, limit int) (AccountPage, error) {
	slot := 0
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil || n < 0 || n >= clusterSlots {
			return AccountPage{}, invalid("bad cursor")
		}
		slot = n
	}
	start := time.Now()
	masters, err := s.masters(ctx)
	if err != nil {
		return AccountPage{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	page := AccountPage{Accounts: []string{}}
	seen := map[string]bool{}
	for slot < clusterSlots && len(page.Accounts) < limit {
		end := min(slot+slotBatch, clusterSlots)
		for range 2 {
			for _, m := range masters {
				keys, err := keysInSlots(ctx, m, slot, end)
				if err != nil {
					return AccountPage{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
				}
				for _, k := range keys {
					if id, ok := s.accountOf(k); ok && !seen[id] {
						seen[id] = true
						page.Accounts = append(page.Accounts, id)
					}
				}
			}
		}
		slot = end
		if time.Since(start) > s.timeout/2 {
			break
		}
	}
	if slot < clusterSlots {
		n := strconv.Itoa(slot)
		page.Next = &n
	}
	return page, nil
}

// keysInSlots returns the keys that node holds in the slots [from, to). It
// counts each slot's keys first and reads the slots that have any; a slot
// that gained keys in between is read again with room for more, so no key
// present throughout is left out.
func keysInSlots(ctx context.Context, node *redis.Client, from, to int) ([]string, error) {
	counts := make([]*redis.IntCmd, to-from)
	if _, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range counts {
			counts[i] = p.ClusterCountKeysInSlot(ctx, from+i)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	want := map[int]int64{}
	for i, c := range counts {
		if n := c.Val(); n > 0 {
			want[from+i] = n + n/4 + 8
		}
	}
	var keys []string
	for len(want) > 0 {
		got := map[int]*redis.StringSliceCmd{}
		if _, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			for slot, n := range want {
				got[slot] = p.ClusterGetKeysInSlot(ctx, slot, int(n))
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for slot, cmd := range got {
			if int64(len(cmd.Val())) < want[slot] {
				keys = append(keys, cmd.Val()...)
				delete(want, slot)
			} else {
				want[slot] *= 2
			}
		}
	}
	return keys, nil
}

// accountOf returns the account whose totals key k is, if it is one of this
// store's.
func (s *Redis) accountOf(k string) (string, bool) {
	enc, ok := strings.CutPrefix(k, s.prefix+":{")
	if !ok {
		return "", false
	}
	if enc, ok = strings.CutSuffix(enc, "}:acct"); !ok {
		return "", false
	}
	id, err := decodeAccount(enc)
	if err != nil || !ValidAccount(id) {
		return "", false
	}
	return id, true
}
