package integration

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// chaosSlot returns the hash slot of account's keys under prefix, as the
// gateway names them.
func chaosSlot(t *testing.T, c *redistest.Cluster, prefix, account string) int {
	t.Helper()
	key := prefix + ":{" + base64.RawURLEncoding.EncodeToString([]byte(account)) + "}:acct"
	n, err := c.Servers[0].Client(t).ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// clusterChaos starts a cluster of 3 masters with a replica each and two
// gateway processes on it, spends several accounts' balances through them
// from leases, and runs disrupt on the shard of the first account once a third is
// spent. Clients see only 200, 402 and 503, never NOSCRIPT; the 2xx
// answers, the upstream's hits and the requests charged are the same
// number; and verify finds no drift.
func clusterChaos(t *testing.T, disrupt func(c *redistest.Cluster, slot int)) {
	t.Helper()
	logDuration(t)
	c := redistest.StartCluster(t, 3, 1)
	up := newUpstream(t)
	const prefix = "chaos-cluster"
	store := "cluster " + strings.Join(c.Addrs(), " ")
	gateways := []*chaosGateway{
		startChaosGatewayWith(t, store, prefix, leasedBelowMinimum, up),
		startChaosGatewayWith(t, store, prefix, leasedBelowMinimum, up),
	}
	accounts := []string{"alice", "bob", "carol"}
	balance := int64(chaosSize(200, 60))
	for _, a := range accounts {
		gateways[0].mustCredit(t, a, balance)
	}
	load := loadSpec{
		gateways: gateways,
		accounts: accounts,
		workers:  16,
		max:      3 * balance * int64(len(accounts)) / 2,
		deadline: 90 * time.Second,
	}.start(t)
	waitFor(t, "a third of the balances to be spent", func() bool {
		return up.hits.Load() >= balance*int64(len(accounts))/3
	})
	disrupt(c, chaosSlot(t, c, prefix, accounts[0]))
	ta := <-load

	as := gateways[0].settled(t, accounts...)
	ta.expectOnly(t, http.StatusOK, http.StatusPaymentRequired, http.StatusServiceUnavailable)
	expectExact(t, ta, up, as)
	verifyClean(t, gateways[0])
	leased := gateways[0].leased(t, accounts...)
	if leased == 0 {
		t.Error("no request was paid from a lease")
	}
	t.Logf("%s; %d upstream hits, %d requests charged, %d of them from leases", ta, up.hits.Load(), netCharged(as), leased)
}

// TestChaosClusterFailover promotes, with CLUSTER FAILOVER, the replica of
// a loaded account's master under load from two gateway processes, and
// checks the outcomes of clusterChaos.
func TestChaosClusterFailover(t *testing.T) {
	clusterChaos(t, func(c *redistest.Cluster, slot int) {
		master, replica := c.MasterOf(t, slot)
		if err := replica.Client(t).Do(context.Background(), "CLUSTER", "FAILOVER").Err(); err != nil {
			t.Fatalf("CLUSTER FAILOVER: %v", err)
		}
		start := time.Now()
		waitFor(t, "the replica to take the slot over", func() bool {
			now, _ := c.MasterOf(t, slot)
			return now == replica
		})
		t.Logf("the slot moved from %s to %s in %v", master.Addr, replica.Addr, time.Since(start).Round(time.Millisecond))
	})
}

// TestChaosClusterMigration migrates a loaded account's slot to another
// master, a key at a time, under load from two gateway processes, and
// checks the outcomes of clusterChaos.
func TestChaosClusterMigration(t *testing.T) {
	clusterChaos(t, func(c *redistest.Cluster, slot int) {
		from, _ := c.MasterOf(t, slot)
		var to *redistest.Server
		for _, m := range c.Masters(t) {
			if m != from {
				to = m
				break
			}
		}
		start := time.Now()
		m := c.BeginMigration(t, slot, from, to)
		steps := 0
		for deadline := time.Now().Add(30 * time.Second); ; steps++ {
			left, err := m.Step(1)
			if err != nil {
				t.Fatalf("migration step %d: %v", steps, err)
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the migration still had %d keys to move after %d steps", left, steps)
			}
		}
		if err := m.End(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the slot to be served by its new master", func() bool {
			now, _ := c.MasterOf(t, slot)
			return now == to
		})
		t.Logf("the slot moved from %s to %s in %d steps, %v", from.Addr, to.Addr, steps, time.Since(start).Round(time.Millisecond))
	})
}
