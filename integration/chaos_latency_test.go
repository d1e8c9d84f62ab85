package integration

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/faultproxy"
	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// TestChaosSlowRedis delays every Redis reply past the store's timeout:
// each request is a 503 with Retry-After: 1 within a few timeouts, nothing
// is forwarded, and once the delay is gone and the background cancels have
// landed nobody has paid for anything and nothing is held.
func TestChaosSlowRedis(t *testing.T) {
	logDuration(t)
	const timeout = 100 * time.Millisecond
	srv := redistest.Start(t)
	proxy := faultproxy.Start(t, srv.Addr)
	up := newUpstream(t)
	const prefix = "chaos-slow"
	gateways := startChaosGateways(t, 2, "url redis://"+proxy.Addr()+"\n\t\t\ttimeout 100ms", prefix, up)
	observer := startChaosGateway(t, "url "+srv.URL(), prefix, up)
	accounts := []string{"alice", "bob"}
	for _, a := range accounts {
		observer.mustCredit(t, a, 1000)
	}

	proxy.Delay(500 * time.Millisecond)
	limit := 5*timeout + 250*time.Millisecond
	var mu sync.Mutex
	var slow, noRetry []shot
	var slowest time.Duration
	ta := loadSpec{
		gateways: gateways,
		accounts: accounts,
		workers:  4,
		max:      int64(chaosSize(40, 12)),
		deadline: 60 * time.Second,
		each: func(s shot) {
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, s.took)
			if s.status == http.StatusServiceUnavailable && s.took >= limit {
				slow = append(slow, s)
			}
			if s.status == http.StatusServiceUnavailable && s.retryAfter != "1" {
				noRetry = append(noRetry, s)
			}
		},
	}.run(t)
	proxy.Delay(0)

	as := observer.settled(t, accounts...)
	ta.expectOnly(t, http.StatusServiceUnavailable)
	for _, s := range slow {
		t.Errorf("a 503 took %v, want under %v", s.took, limit)
	}
	for _, s := range noRetry {
		t.Errorf("a 503 came with Retry-After %q, want 1", s.retryAfter)
	}
	if hits := up.hits.Load(); hits != 0 {
		t.Errorf("%d requests forwarded, want none", hits)
	}
	for _, a := range as {
		if a.Charged-a.Refunded != 0 || a.Held != 0 || a.Balance != a.Credited {
			t.Errorf("account %+v after the cancels, want nothing charged or held", a)
		}
	}
	verifyClean(t, observer)
	var charged, refunded int64
	for _, a := range as {
		charged, refunded = charged+a.Charged, refunded+a.Refunded
	}
	t.Logf("%s; slowest answer %v; %d charges applied late, %d refunded", ta, slowest.Round(time.Millisecond), charged, refunded)
}
