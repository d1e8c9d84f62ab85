package meter_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// slotOf returns the hash slot of an account's keys under prefix.
func slotOf(t *testing.T, c *redis.Client, prefix, account string) int {
	t.Helper()
	key := prefix + ":{" + base64.RawURLEncoding.EncodeToString([]byte(account)) + "}:acct"
	n, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// TestClusterMigration moves the slot of an account to another master, one
// key at a time, while the account is charged and the accounts are listed
// page by page: every charge reported done lands exactly once, and every
// other is cancelled, through TRYAGAIN, ASK and MOVED, with and without
// replicas, and every account appears in the walk.
func TestClusterMigration(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	admin := c.Servers[0].Client(t)
	ctx := context.Background()
	for _, replicas := range []int{0, 1} {
		prefix := fmt.Sprintf("m%d", replicas)
		s := newRedis(t, meter.RedisOptions{Cluster: c.Addrs(), Prefix: prefix, Replicas: replicas, Timeout: 2 * time.Second})
		const accounts = 300
		for i := range accounts {
			if _, err := s.Credit(ctx, meter.Transfer{Account: fmt.Sprintf("a%d", i), ID: "t", Amount: 1000}); err != nil {
				t.Fatal(err)
			}
		}
		// a0's slot gets 400 op records, so that moving it takes a while.
		const before = 400
		for i := range before {
			if _, err := s.Charge(ctx, meter.Charge{Account: "a0", Op: fmt.Sprintf("pre%d", i), Amount: 1}); err != nil {
				t.Fatal(err)
			}
		}
		// Charges during the migration give up quickly.
		quick := newRedis(t, meter.RedisOptions{Cluster: c.Addrs(), Prefix: prefix, Replicas: replicas, Timeout: 100 * time.Millisecond})
		slot := slotOf(t, admin, prefix, "a0")
		from, _ := c.MasterOf(t, slot)
		var to *redistest.Server
		for _, srv := range c.Masters(t) {
			if srv != from {
				to = srv
			}
		}
		m := c.BeginMigration(t, slot, from, to)
		moved := make(chan error, 1)
		go func() {
			for {
				left, err := m.Step(1)
				if err == nil && left == 0 {
					err = m.End()
				}
				if err != nil || left == 0 {
					moved <- err
					return
				}
			}
		}()
		seen := map[string]int{}
		paid := map[string]int64{"a0": before}
		cursor, charges, tries := "", 0, 0
	walk:
		for {
			select {
			case err := <-moved:
				if err != nil {
					t.Fatal(err)
				}
				break walk
			default:
			}
			page, err := s.Accounts(ctx, cursor, 50)
			if err != nil {
				t.Fatalf("walk: %v", err)
			}
			for _, a := range page.Accounts {
				seen[a]++
			}
			// Every other charge is a0's. While some of its keys have moved
			// and others not, the cluster answers TRYAGAIN, which the store
			// retries until its timeout; then the charge is cancelled.
			for i := range 10 {
				account := fmt.Sprintf("a%d", (tries+i)%accounts*(i%2))
				_, err = quick.Charge(ctx, meter.Charge{Account: account, Op: fmt.Sprintf("op%d-%d", tries, i), Amount: 1})
				switch {
				case err == nil:
					charges++
					paid[account]++
				case !errors.Is(err, meter.ErrUnavailable):
					t.Fatalf("charge during the migration: %v", err)
				}
			}
			tries += 10
			cursor = ""
			if page.Next != nil {
				cursor = *page.Next
			}
		}
		t.Logf("replicas %d: %d of %d charges during the migration landed", replicas, charges, tries)
		c.WaitHealthy(t)
		if err := quick.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		for cursor != "" {
			page, err := s.Accounts(ctx, cursor, 50)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page.Accounts {
				seen[a]++
			}
			cursor = ""
			if page.Next != nil {
				cursor = *page.Next
			}
		}
		for i := range accounts {
			if seen[fmt.Sprintf("a%d", i)] == 0 {
				t.Errorf("replicas %d: account a%d missing from the walk", replicas, i)
			}
		}
		for account, want := range paid {
			a, err := s.Account(ctx, meter.Read{Account: account, Mode: meter.Operator})
			if err != nil || a.Charged != want || a.Balance != 1000-want || a.Held != 0 {
				t.Fatalf("replicas %d: %s %+v, %v; want %d charged", replicas, account, a, err, want)
			}
		}
		if moved, _ := c.MasterOf(t, slot); moved != to {
			t.Fatalf("slot %d is on %s, want %s", slot, moved.Addr, to.Addr)
		}
	}
}

// TestClusterFailover promotes a replica with CLUSTER FAILOVER while an
// account on that shard is charged: no charge is lost or doubled, and the
// new master's empty script cache never reaches a caller.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	admin := c.Servers[0].Client(t)
	ctx := context.Background()
	s := newRedis(t, meter.RedisOptions{Cluster: c.Addrs(), Timeout: 2 * time.Second})
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "t", Amount: 1000}); err != nil {
		t.Fatal(err)
	}
	master, replica := c.MasterOf(t, slotOf(t, admin, meter.DefaultPrefix, "alice"))
	if err := replica.Client(t).Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatal(err)
	}
	charges := 0
	for ; charges < 2000; charges++ {
		if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: fmt.Sprintf("op%d", charges), Amount: 1}); err != nil {
			t.Fatalf("charge %d during the failover: %v", charges, err)
		}
		if now, _ := c.MasterOf(t, slotOf(t, admin, meter.DefaultPrefix, "alice")); now == replica && charges >= 10 {
			charges++
			break
		}
	}
	if now, _ := c.MasterOf(t, slotOf(t, admin, meter.DefaultPrefix, "alice")); now != replica {
		t.Fatalf("the failover from %s did not happen", master.Addr)
	}
	for i := range 10 {
		if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: fmt.Sprintf("after%d", i), Amount: 1}); err != nil {
			t.Fatalf("charge after the failover: %v", err)
		}
	}
	a, err := s.Account(ctx, meter.Read{Account: "alice", Mode: meter.Operator})
	if err != nil || a.Charged != int64(charges+10) {
		t.Fatalf("alice %+v, %v; want %d charged", a, err, charges+10)
	}
}
