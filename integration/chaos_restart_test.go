package integration

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestChaosKillRestart kills Redis with SIGKILL while a gateway process
// takes operator credits and charges requests, and restarts it. With
// appendfsync always, every acknowledged credit and charge survives, and
// repeating the unacknowledged credits' ids brings the credits to exactly
// what was sent. With appendfsync everysec, it logs what was acknowledged
// and what survived.
func TestChaosKillRestart(t *testing.T) {
	for _, fsync := range []string{"always", "everysec"} {
		t.Run(fsync, func(t *testing.T) {
			logDuration(t)
			srv := redistest.Start(t, redistest.Options{Args: []string{"--appendfsync", fsync}})
			up := newUpstream(t)
			g := startChaosGateway(t, "url "+srv.URL(), "chaos-restart", up)
			g.mustCredit(t, "alice", 1_000_000)

			var killed atomic.Bool
			type attempt struct {
				id    string
				acked bool
			}
			credits := make(chan []attempt, 1)
			go func() {
				var sent []attempt
				for i := 0; !killed.Load() && i < 100_000; i++ {
					id := fmt.Sprintf("bob-%d", i)
					sent = append(sent, attempt{id: id, acked: g.credit("bob", id, 1)})
				}
				credits <- sent
			}()
			load := loadSpec{
				gateways: []*chaosGateway{g},
				accounts: []string{"alice"},
				workers:  8,
				max:      1_000_000,
				deadline: 60 * time.Second,
				stop:     killed.Load,
			}.start(t)
			waitFor(t, "charges and credits to be acknowledged", func() bool {
				return up.hits.Load() >= int64(chaosSize(300, 100))
			})
			srv.Stop()
			killed.Store(true)
			ta := <-load
			sent := <-credits
			srv.Restart(t)

			var acked int64
			for _, a := range sent {
				if a.acked {
					acked++
				}
			}
			paid := ta.count(http.StatusOK)
			as := g.settled(t, "alice", "bob")
			alice, bob := as[0], as[1]
			survived := alice.Charged - alice.Refunded
			t.Logf("appendfsync %s: %d credits acknowledged of %d sent, %d survived; %d charges acknowledged, %d survived, %d forwarded",
				fsync, acked, len(sent), bob.Credited, paid, survived, up.hits.Load())
			if fsync != "always" {
				return
			}
			if bob.Credited < acked || bob.Credited > int64(len(sent)) {
				t.Errorf("%d credited after the restart, want between the %d acknowledged and the %d sent", bob.Credited, acked, len(sent))
			}
			if survived < paid {
				t.Errorf("%d charges after the restart, want at least the %d acknowledged", survived, paid)
			}
			for _, a := range sent {
				if !a.acked {
					waitFor(t, "the credit "+a.id+" to be acknowledged", func() bool { return g.credit("bob", a.id, 1) })
				}
			}
			if bob = g.account(t, "bob"); bob.Credited != int64(len(sent)) {
				t.Errorf("%d credited once every id was acknowledged, want the %d sent", bob.Credited, len(sent))
			}
			verifyClean(t, g)
		})
	}
}
