package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/faultproxy"
	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestChaosLostReplies drops 10% of Redis's replies to two gateway processes
// under load: no request is charged twice and none is forwarded unpaid, so
// the 2xx answers, the upstream's hits and the requests charged are the
// same number once the background cancels have landed, and verify finds no
// drift.
func TestChaosLostReplies(t *testing.T) {
	logDuration(t)
	srv := redistest.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	up := newUpstream(t)
	const prefix = "chaos-replies"
	gateways := startChaosGateways(t, 2, "url redis://"+proxy.Addr(), prefix, up)
	observer := startChaosGateway(t, "url "+srv.URL(), prefix, up)
	accounts := []string{"alice", "bob"}
	balance := int64(chaosSize(300, 60))
	for _, a := range accounts {
		observer.mustCredit(t, a, balance)
	}

	proxy.DropReplies(0.1, 1)
	ta := loadSpec{
		gateways: gateways,
		accounts: accounts,
		workers:  16,
		max:      3 * balance * int64(len(accounts)) / 2,
		deadline: 90 * time.Second,
	}.run(t)
	proxy.DropReplies(0, 1)

	as := observer.settled(t, accounts...)
	ta.expectOnly(t, http.StatusOK, http.StatusPaymentRequired, http.StatusServiceUnavailable)
	expectExact(t, ta, up, as)
	verifyClean(t, observer)
	var refunded int64
	for _, a := range as {
		refunded += a.Refunded
	}
	t.Logf("%d replies dropped; %s; %d upstream hits; %d charges cancelled by a refund", proxy.Dropped(), ta, up.hits.Load(), refunded)
}
