package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/faultproxy"
	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// TestChaosLostReplies drops 10% of Redis's replies to two gateway processes
// under load: no request is charged twice and none is forwarded unpaid, so
// the 2xx answers, the upstream's hits and the requests charged are the
// same number once the background cancels have landed, and verify finds no
// drift.
func TestChaosLostReplies(t *testing.T) {
	balance := int64(chaosSize(300, 60))
	ta, as, _ := lostReplies(t, "chaos-replies", balance, 16, 3*balance*2/2)
	var refunded int64
	for _, a := range as {
		refunded += a.Refunded
	}
	t.Logf("%s; %d charges cancelled by a refund", ta, refunded)
}

// lostReplies spends the balances of two accounts through two gateway
// processes whose Redis drops 10% of its replies, with workers clients
// sending max requests in all, and checks that the 2xx answers, the
// upstream's hits and the requests charged are the same number, and that
// verify finds no drift. It returns the load's tally, the accounts and a
// gateway on the same store whose replies are not dropped.
func lostReplies(t *testing.T, prefix string, balance int64, workers int, max int64) (*tally, []meter.Account, *chaosGateway) {
	t.Helper()
	logDuration(t)
	srv := redistest.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	up := newUpstream(t)
	gateways := startChaosGateways(t, 2, "url redis://"+proxy.Addr(), prefix, up)
	observer := startChaosGateway(t, "url "+srv.URL(), prefix, up)
	accounts := []string{"alice", "bob"}
	for _, a := range accounts {
		observer.mustCredit(t, a, balance)
	}

	proxy.DropReplies(0.1, 1)
	ta := loadSpec{
		gateways: gateways,
		accounts: accounts,
		workers:  workers,
		max:      max,
		deadline: 90 * time.Second,
	}.run(t)
	proxy.DropReplies(0, 1)

	as := observer.settled(t, accounts...)
	ta.expectOnly(t, http.StatusOK, http.StatusPaymentRequired, http.StatusServiceUnavailable)
	expectExact(t, ta, up, as)
	verifyClean(t, observer)
	t.Logf("%d replies dropped; %d upstream hits", proxy.Dropped(), up.hits.Load())
	return ta, as, observer
}
