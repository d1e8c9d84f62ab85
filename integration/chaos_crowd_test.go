package integration

import (
	"net/http"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestChaosCrowd sends 1,000 concurrent clients, one request each, through
// four gateway processes against one account's balance of k tokens: exactly
// k are paid, forwarded and charged, every other one is a 402, and verify
// finds no drift.
func TestChaosCrowd(t *testing.T) {
	logDuration(t)
	srv := redistest.Start(t)
	up := newUpstream(t)
	gateways := startChaosGateways(t, 4, "url "+srv.URL()+"\n\t\t\ttimeout 2s", "chaos-crowd", up)
	clients, k := chaosSize(1000, 300), int64(chaosSize(137, 37))
	gateways[0].mustCredit(t, "alice", k)
	tok := token(t, "alice")

	ta := &tally{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			ta.add(fire(gateways[i%len(gateways)].URL, "alice", tok))
		})
	}
	close(start)
	wg.Wait()

	as := gateways[0].settled(t, "alice")
	ta.expectOnly(t, http.StatusOK, http.StatusPaymentRequired)
	if paid, refused := ta.count(http.StatusOK), ta.count(http.StatusPaymentRequired); paid != k || refused != int64(clients)-k {
		t.Errorf("%d paid and %d refused, want %d and %d", paid, refused, k, int64(clients)-k)
	}
	expectExact(t, ta, up, as)
	verifyClean(t, gateways[0])
	t.Logf("%d clients: %s", clients, ta)
}
