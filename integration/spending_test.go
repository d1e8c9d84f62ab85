package integration

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// spendingSite prices by four lines: two named per-request lines, one of
// which the upstream fails (and refund_on refunds), a compound line that is
// held and settled, and the short form's "*" for the rest.
func spendingSite(up *upstream) string {
	return `tollgate_account /account/*
	tollgate {
		price /a/* 2
		price /fail 3
		price /b/* {
			request 5
			response_bytes 1 per 1KiB
		}
		price * 1
	}
	reverse_proxy ` + up.Listener.Addr().String()
}

// spendingLine maps a ledger route to the price line usage counts it
// under: the named lines are their own routes, and any other path is "*".
func spendingLine(route string) string {
	switch route {
	case "/a/*", "/fail", "/b/*":
		return route
	}
	return meter.DefaultLine
}

// TestUsageMatchesLedger sends mixed traffic (per-request charges, leased
// or not, refunds by refund_on, holds settled) through a gateway on each
// store, then checks that the caller's hourly usage and the operator's
// daily usage, line by line, are exactly what the ledger says, and that
// each bucket starts on the hour or day of a ledger entry.
func TestUsageMatchesLedger(t *testing.T) {
	srv := redistest.Start(t)
	for _, c := range []struct{ name, store string }{
		{"memory", "memory"},
		{"redis leased", ""},
		{"redis lease off", "lease off"},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := newUpstream(t)
			var g *gateway
			if c.store == "memory" {
				g = startMemoryGateway(t, spendingSite(up))
			} else {
				g = startGateway(t, srv, spendingSite(up), c.store)
			}
			account := fmt.Sprint("spender-", time.Now().UnixNano())
			r, b := g.admin(t, "POST", "/accounts/"+account+"/credit", `{"amount":100000,"id":"fund"}`)
			expectStatus(t, "credit", r, b, http.StatusOK)
			tok := token(t, account)
			for i := range 60 {
				for _, path := range []string{"/a/x", "/a/y", "/fail", "/b/z", fmt.Sprintf("/other/%d", i%3)} {
					g.do(t, "GET", path, tok)
				}
			}
			// A lease gives itself back once quiet: then every token it
			// paid is in the ledger and in the usage.
			waitFor(t, "the leases to close", func() bool { return accountOf(t, g, account).Held == 0 })

			leased := slices.ContainsFunc(ledgerEntries(t, g, account), func(e meter.Entry) bool { return e.Detail.Lease != "" })
			if leased != (c.name == "redis leased") {
				t.Errorf("paid from a lease: %v", leased)
			}
			want := usageFromLedger(t, g, account)
			if want["/fail"] != (meter.UsageCount{}) || want["/a/*"] != (meter.UsageCount{Charged: 240, Requests: 120}) {
				t.Errorf("the ledger says %v: /a/* 120 requests for 240, and /fail refunded in full", want)
			}
			starts := ledgerTimes(t, g, account)
			for _, q := range []struct {
				by       meter.Period
				operator bool
			}{{meter.Hourly, false}, {meter.Daily, true}, {meter.Hourly, true}} {
				var resp *http.Response
				var body string
				if q.operator {
					resp, body = g.admin(t, "GET", "/accounts/"+account+"/usage?by="+q.by.String(), "")
				} else {
					resp, body = g.do(t, "GET", "/account/usage?by="+q.by.String(), tok)
				}
				expectStatus(t, "usage by "+q.by.String(), resp, body, http.StatusOK)
				var rep meter.UsageReport
				if err := json.Unmarshal([]byte(body), &rep); err != nil {
					t.Fatal(err)
				}
				got := map[string]meter.UsageCount{}
				for _, bucket := range rep.Buckets {
					if !starts[bucket.Start.Truncate(q.by.Duration())] || !bucket.Start.Equal(bucket.Start.Truncate(q.by.Duration())) {
						t.Errorf("usage by %s: bucket %s, where no ledger entry falls", q.by, bucket.Start)
					}
					for line, n := range bucket.Routes {
						s := got[line]
						s.Charged += n.Charged
						s.Requests += n.Requests
						got[line] = s
					}
				}
				if rep.Account != account || !maps.Equal(got, want) {
					t.Errorf("usage by %s (operator %v) of %s: %v; the ledger says %v", q.by, q.operator, rep.Account, got, want)
				}
			}

			// A range that ends before any spending shows none; bad ranges
			// and periods are refused.
			resp, body := g.do(t, "GET", "/account/usage?to=2000-01-01T00:00:00Z", tok)
			expectStatus(t, "usage to 2000", resp, body, http.StatusOK)
			if body != fmt.Sprintf(`{"account":%q,"by":"hour","buckets":[]}`, account) {
				t.Errorf("usage to 2000: %s", body)
			}
			for _, query := range []string{"by=week", "from=yesterday", "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"} {
				resp, body := g.do(t, "GET", "/account/usage?"+query, tok)
				expectStatus(t, "usage?"+query, resp, body, http.StatusBadRequest)
			}
			resp, body = g.admin(t, "GET", "/accounts/never-seen/usage", "")
			expectStatus(t, "usage of an unseen account", resp, body, http.StatusNotFound)
		})
	}
}

// startMemoryGateway loads a gateway on the memory store with the test's
// HMAC identity; site is its metered site's body.
func startMemoryGateway(t *testing.T, site string) *gateway {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		%s
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, adminPort, hmacJWT, port, site)
	if err := load(t, cfg); err != nil {
		t.Fatal(err)
	}
	return &gateway{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: &http.Client{Timeout: 10 * time.Second},
	}
}

// accountOf reads an account through the admin API, on either store.
func accountOf(t *testing.T, g *gateway, account string) meter.Account {
	t.Helper()
	resp, body := g.admin(t, "GET", "/accounts/"+url.PathEscape(account), "")
	expectStatus(t, "account", resp, body, http.StatusOK)
	var a meter.Account
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// ledgerEntries reads an account's whole ledger through the admin API,
// newest first.
func ledgerEntries(t *testing.T, g *gateway, account string) []meter.Entry {
	t.Helper()
	var all []meter.Entry
	before := ""
	for {
		resp, body := g.admin(t, "GET", "/accounts/"+url.PathEscape(account)+"/ledger?limit=1000&before="+url.QueryEscape(before), "")
		expectStatus(t, "ledger", resp, body, http.StatusOK)
		var page meter.LedgerPage
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Entries...)
		if page.Next == nil {
			return all
		}
		before = *page.Next
	}
}

// ledgerTimes returns the hours and days on which an account's ledger
// entries fall.
func ledgerTimes(t *testing.T, g *gateway, account string) map[time.Time]bool {
	starts := map[time.Time]bool{}
	for _, e := range ledgerEntries(t, g, account) {
		starts[e.Time.Truncate(time.Hour)] = true
		starts[e.Time.Truncate(24*time.Hour)] = true
	}
	return starts
}

// usageFromLedger adds an account's ledger up by price line, as usage
// counts it: charges and settles add their tokens and requests (a lease's
// charge its count), and refunds take theirs back, under the line of the
// charge they refund.
func usageFromLedger(t *testing.T, g *gateway, account string) map[string]meter.UsageCount {
	t.Helper()
	entries := ledgerEntries(t, g, account)
	routes := map[string][]string{} // op -> the routes of its charges and holds
	for _, e := range entries {
		if e.Kind == meter.KindCharge || (e.Kind == meter.KindHold && e.Detail.Reason == "") {
			routes[e.Op] = append(routes[e.Op], e.Detail.Route)
		}
	}
	sum := map[string]meter.UsageCount{}
	add := func(line string, charged, requests int64) {
		s := sum[line]
		s.Charged += charged
		s.Requests += requests
		sum[line] = s
	}
	count := func(e meter.Entry) int64 {
		if e.Detail.Count > 0 {
			return e.Detail.Count
		}
		return 1
	}
	for _, e := range entries {
		switch e.Kind {
		case meter.KindCharge:
			add(spendingLine(e.Detail.Route), e.Amount, count(e))
		case meter.KindSettle:
			add(spendingLine(routes[e.Op][0]), e.Amount, 1)
		case meter.KindRefund:
			// Only /fail answers 500: a lease's call may have charged other
			// lines too, but what it refunds is /fail's.
			if !slices.Contains(routes[e.Op], "/fail") {
				t.Fatalf("refund %+v of an op that charged %v", e, routes[e.Op])
			}
			add("/fail", -e.Amount, -count(e))
		}
	}
	return sum
}
