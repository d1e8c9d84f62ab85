package integration

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// scrape reads the gateway's metrics whose names start with tollgate_.
func scrape(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	resp, body := g.do(t, "GET", "/metrics", "")
	expectStatus(t, "metrics", resp, body, http.StatusOK)
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tollgate_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

func TestMetrics(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `handle /metrics {
		metrics
	}
	@api not path /metrics
	tollgate @api {
		price /paid 3
		price /fail 2
	}
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 7)
	tok := token(t, "alice")
	before := scrape(t, g)

	g.do(t, "GET", "/paid", tok)
	g.do(t, "GET", "/paid", tok)
	g.do(t, "GET", "/paid", tok) // 402: the balance is 1
	g.do(t, "GET", "/free", tok)
	g.do(t, "GET", "/paid", "")
	g.do(t, "GET", "/paid", "bad.token.here")
	g.credit(t, "alice", 2)
	g.do(t, "GET", "/fail", tok) // charged, then refunded

	after := scrape(t, g)
	for name, want := range map[string]float64{
		`tollgate_requests_total{outcome="paid"}`:            3,
		`tollgate_requests_total{outcome="insufficient"}`:    1,
		`tollgate_requests_total{outcome="free"}`:            1,
		`tollgate_requests_total{outcome="unauthenticated"}`: 2,
		`tollgate_tokens_total{kind="charged"}`:              8,
		`tollgate_tokens_total{kind="refunded"}`:             2,
		`tollgate_store_duration_seconds_count{op="charge"}`: 4,
		`tollgate_store_duration_seconds_count{op="refund"}`: 1,
	} {
		if got := after[name] - before[name]; got != want {
			t.Errorf("%s went up by %v, want %v", name, got, want)
		}
	}
	for name := range after {
		if strings.Contains(name, "alice") {
			t.Errorf("metric %s names an account", name)
		}
	}
}
