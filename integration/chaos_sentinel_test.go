package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestChaosSentinelFailover kills a Sentinel-watched master with SIGKILL
// while two gateway processes spend several accounts' balances, with
// replicas 0 and replicas 1, each request charged on its own and paid from
// leases. Clients only ever see 200, 402 and 503, never
// NOSCRIPT; every 2xx was forwarded once; no account goes below 0 (verify
// finds no drift); the load runs until every balance is spent. It logs the
// failover time and the loss: the forwards whose charges the failover lost.
func TestChaosSentinelFailover(t *testing.T) {
	for _, tc := range []struct {
		replicas     int
		name, leases string
	}{{0, "per_request", "lease off"}, {1, "per_request", "lease off"}, {0, "leased", leasedBelowMinimum}, {1, "leased", leasedBelowMinimum}} {
		t.Run(fmt.Sprintf("replicas_%d/%s", tc.replicas, tc.name), func(t *testing.T) {
			logDuration(t)
			replicas := tc.replicas
			topo := redistest.StartSentinel(t, 1)
			up := newUpstream(t)
			store := fmt.Sprintf("sentinel %s %s\n\t\t\treplicas %d", redistest.MasterName, strings.Join(topo.Addrs(), " "), replicas)
			gateways := []*chaosGateway{
				startChaosGatewayWith(t, store, "chaos-sentinel", tc.leases, up),
				startChaosGatewayWith(t, store, "chaos-sentinel", tc.leases, up),
			}
			accounts := []string{"alice", "bob", "carol", "dave"}
			balance := int64(chaosSize(150, 50))
			for _, a := range accounts {
				gateways[0].mustCredit(t, a, balance)
			}

			var failedOver atomic.Bool
			var mu sync.Mutex
			spent := map[string]bool{}
			load := loadSpec{
				gateways: gateways,
				accounts: accounts,
				workers:  16,
				max:      20 * balance * int64(len(accounts)),
				deadline: 90 * time.Second,
				stop: func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(spent) == len(accounts)
				},
				each: func(s shot) {
					if s.status == http.StatusPaymentRequired && failedOver.Load() {
						mu.Lock()
						spent[s.account] = true
						mu.Unlock()
					}
				},
			}.start(t)
			waitFor(t, "a third of the balances to be spent", func() bool {
				return up.hits.Load() >= balance*int64(len(accounts))/3
			})
			old := topo.Master(t)
			killed := time.Now()
			old.Stop()
			topo.WaitFailover(t, old)
			failover := time.Since(killed)
			failedOver.Store(true)
			result := <-load

			as := gateways[0].settled(t, accounts...)
			result.expectOnly(t, http.StatusOK, http.StatusPaymentRequired, http.StatusServiceUnavailable)
			if got, hits := result.count(http.StatusOK), up.hits.Load(); got != hits {
				t.Errorf("%d 2xx answers and %d upstream hits, want them equal", got, hits)
			}
			for _, a := range as {
				if a.Balance < 0 || a.Held < 0 {
					t.Errorf("account %+v below 0", a)
				}
			}
			verifyClean(t, gateways[0])
			if leased := gateways[0].leased(t, accounts...); (leased > 0) != (tc.name == "leased") {
				t.Errorf("%d requests paid from leases", leased)
			}
			t.Logf("replicas %d: failover took %v; %s; %d upstream hits, %d requests charged: %d forwards lost their charge",
				replicas, failover.Round(time.Millisecond), result, up.hits.Load(), netCharged(as), up.hits.Load()-netCharged(as))
		})
	}
}
