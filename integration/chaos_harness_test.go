package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// chaosGateway is a gateway process of a chaos test: its metered site
// charges 1 token a request and forwards to an upstream.
type chaosGateway struct {
	*process
	Admin string // http://127.0.0.1:port of its admin endpoint
}

// startChaosGateway runs a gateway process whose store block holds the
// lines of store (url, sentinel or cluster, and options such as timeout),
// with keys under prefix, forwarding paid requests to up.
func startChaosGateway(t *testing.T, store, prefix string, up *upstream) *chaosGateway {
	t.Helper()
	return startChaosGatewayWith(t, store, prefix, "", up)
}

// startChaosGatewayWith is startChaosGateway with globals added to the
// tollgate global option, such as a lease block.
func startChaosGatewayWith(t *testing.T, store, prefix, globals string, up *upstream) *chaosGateway {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		store redis {
			%s
			prefix %s
		}
		%s
		%s
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	tollgate 1
	reverse_proxy %s
}
`, adminPort, store, prefix, hmacJWT, globals, port, up.Listener.Addr().String())
	return &chaosGateway{process: runProcess(t, port, cfg), Admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
}

// startChaosGateways runs n gateway processes on the same store and keys.
func startChaosGateways(t *testing.T, n int, store, prefix string, up *upstream) []*chaosGateway {
	t.Helper()
	gs := make([]*chaosGateway, n)
	for i := range gs {
		gs[i] = startChaosGateway(t, store, prefix, up)
	}
	return gs
}

// chaosClient is the HTTP client of the chaos tests' load and admin calls.
var chaosClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 2000, MaxIdleConnsPerHost: 1000, IdleConnTimeout: 30 * time.Second},
}

// adminCall sends an admin API request to the gateway and returns the
// status and body, or an error if the request got no answer.
func (g *chaosGateway) adminCall(method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, g.Admin+"/tollgate"+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := chaosClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// credit credits amount to account under id through the admin API, and
// reports whether the gateway acknowledged it with a 200.
func (g *chaosGateway) credit(account, id string, amount int64) bool {
	status, _, err := g.adminCall("POST", "/accounts/"+url.PathEscape(account)+"/credit",
		fmt.Sprintf(`{"amount":%d,"id":%q,"reason":"chaos"}`, amount, id))
	return err == nil && status == http.StatusOK
}

// mustCredit credits amount to account through the admin API, retrying the
// same id, bounded, until the gateway acknowledges it.
func (g *chaosGateway) mustCredit(t *testing.T, account string, amount int64) {
	t.Helper()
	id := fmt.Sprintf("chaos-%s-%d", account, time.Now().UnixNano())
	waitFor(t, "a credit to "+account+" to be acknowledged", func() bool { return g.credit(account, id, amount) })
}

// account reads an account's totals through the admin API, retrying,
// bounded, until the gateway answers 200.
func (g *chaosGateway) account(t *testing.T, id string) meter.Account {
	t.Helper()
	var a meter.Account
	waitFor(t, "a read of "+id, func() bool {
		status, body, err := g.adminCall("GET", "/accounts/"+url.PathEscape(id), "")
		return err == nil && status == http.StatusOK && json.Unmarshal([]byte(body), &a) == nil
	})
	return a
}

// settled reads the accounts until none holds anything and their totals
// stay the same for a second, so that the background cancels have landed,
// and returns the last reading. It fails the test if that takes more than
// 30 seconds.
func (g *chaosGateway) settled(t *testing.T, ids ...string) []meter.Account {
	t.Helper()
	read := func() []meter.Account {
		as := make([]meter.Account, len(ids))
		for i, id := range ids {
			as[i] = g.account(t, id)
		}
		return as
	}
	last, since := read(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		now := read()
		same := true
		for i := range now {
			if now[i] != last[i] || now[i].Held != 0 {
				same = false
			}
		}
		if !same {
			last, since = now, time.Now()
			continue
		}
		if time.Since(since) >= time.Second {
			return now
		}
	}
	t.Fatalf("the accounts %v did not settle: %+v", ids, last)
	return nil
}

// leased returns how many requests of the accounts their leases charged,
// from their whole ledgers, read page by page through the admin API.
func (g *chaosGateway) leased(t *testing.T, ids ...string) int64 {
	t.Helper()
	var n int64
	for _, id := range ids {
		before := ""
		for {
			status, body, err := g.adminCall("GET", "/accounts/"+url.PathEscape(id)+"/ledger?limit=1000&before="+url.QueryEscape(before), "")
			var page struct {
				Entries []struct {
					ID     string `json:"id"`
					Kind   string `json:"kind"`
					Detail struct {
						Count int64  `json:"count"`
						Lease string `json:"lease"`
					} `json:"detail"`
				} `json:"entries"`
				Next *string `json:"next"`
			}
			if err != nil || status != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
				t.Fatalf("reading the ledger of %s: %d %v %s", id, status, err, body)
			}
			for _, e := range page.Entries {
				if e.Kind == meter.KindCharge && e.Detail.Lease != "" {
					n += e.Detail.Count
				}
			}
			if page.Next == nil {
				break
			}
			before = *page.Next
		}
	}
	return n
}

// netCharged returns how many 1-token requests the accounts paid for:
// charged less refunded.
func netCharged(as []meter.Account) int64 {
	var n int64
	for _, a := range as {
		n += a.Charged - a.Refunded
	}
	return n
}

// verifyClean runs `tollgate verify` against the gateway's admin endpoint
// and fails the test unless it exits 0, no account drifting.
func verifyClean(t *testing.T, g *chaosGateway) {
	t.Helper()
	cmd := exec.Command(tollgateBinary(t), "verify", "--address", strings.TrimPrefix(g.Admin, "http://"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("tollgate verify: %v\n%s", err, out)
	}
}

// shot is the outcome of one request of a load.
type shot struct {
	account    string
	status     int
	body       string
	retryAfter string
	took       time.Duration
	err        error
}

// tally counts a load's outcomes.
type tally struct {
	mu       sync.Mutex
	status   map[int]int64
	errs     []error
	noscript int64
	sent     atomic.Int64
}

// add records one outcome.
func (ta *tally) add(s shot) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if ta.status == nil {
		ta.status = map[int]int64{}
	}
	if s.err != nil {
		ta.errs = append(ta.errs, s.err)
		return
	}
	ta.status[s.status]++
	if strings.Contains(strings.ToUpper(s.body), "NOSCRIPT") {
		ta.noscript++
	}
}

// count returns how many answers had status.
func (ta *tally) count(status int) int64 {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.status[status]
}

// String lists the counts of each status.
func (ta *tally) String() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return fmt.Sprintf("statuses %v, %d transport errors, %d NOSCRIPT bodies", ta.status, len(ta.errs), ta.noscript)
}

// expectOnly fails the test if any request got no answer, an answer with a
// status outside allowed, or a body naming NOSCRIPT.
func (ta *tally) expectOnly(t *testing.T, allowed ...int) {
	t.Helper()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for _, err := range ta.errs {
		t.Errorf("a request got no answer: %v", err)
	}
	for status, n := range ta.status {
		ok := false
		for _, a := range allowed {
			ok = ok || status == a
		}
		if !ok {
			t.Errorf("%d answers with status %d, want only %v", n, status, allowed)
		}
	}
	if ta.noscript != 0 {
		t.Errorf("%d answers named NOSCRIPT", ta.noscript)
	}
}

// fire sends one request for the account with token tok to the gateway at
// base and returns its outcome.
func fire(base, account, tok string) shot {
	s := shot{account: account}
	req, err := http.NewRequest("GET", base+"/x", nil)
	if err != nil {
		s.err = err
		return s
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := chaosClient.Do(req)
	if err != nil {
		s.err = err
		return s
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	s.took, s.status, s.body, s.err = time.Since(start), resp.StatusCode, string(b), err
	s.retryAfter = resp.Header.Get("Retry-After")
	return s
}

// loadSpec describes a load: workers goroutines sending requests round
// robin over the gateways and the accounts, until max requests are sent,
// stop reports true, or the deadline passes.
type loadSpec struct {
	gateways []*chaosGateway
	accounts []string
	workers  int
	max      int64
	stop     func() bool
	deadline time.Duration
	each     func(shot)
}

// start runs the load in the background and sends its tally on the
// channel returned when it ends. If the test ends first, the load stops and
// the test's end waits for it.
func (l loadSpec) start(t *testing.T) <-chan *tally {
	t.Helper()
	var ended atomic.Bool
	stop := l.stop
	l.stop = func() bool { return ended.Load() || stop != nil && stop() }
	c, done := make(chan *tally, 1), make(chan struct{})
	go func() {
		defer close(done)
		c <- l.run(t)
	}()
	t.Cleanup(func() {
		ended.Store(true)
		<-done
	})
	return c
}

// run runs the load, records every outcome in a tally and returns it. It
// marks the test failed if the deadline passed before max or stop ended the
// load.
func (l loadSpec) run(t *testing.T) *tally {
	t.Helper()
	toks := make([]string, len(l.accounts))
	for i, a := range l.accounts {
		toks[i] = token(t, a)
	}
	ta := &tally{}
	deadline := time.Now().Add(l.deadline)
	var late atomic.Bool
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			for {
				if l.stop != nil && l.stop() {
					return
				}
				if time.Now().After(deadline) {
					late.Store(true)
					return
				}
				n := ta.sent.Add(1)
				if n > l.max {
					return
				}
				g := l.gateways[int(n)%len(l.gateways)]
				i := int(n/int64(len(l.gateways))) % len(l.accounts)
				s := fire(g.URL, l.accounts[i], toks[i])
				ta.add(s)
				if l.each != nil {
					l.each(s)
				}
			}
		})
	}
	wg.Wait()
	if late.Load() {
		t.Errorf("the load did not end within %v: %s", l.deadline, ta)
	}
	return ta
}

// expectExact fails the test unless the 2xx answers, the upstream's hits
// and the requests the accounts paid for are the same number.
func expectExact(t *testing.T, ta *tally, up *upstream, as []meter.Account) {
	t.Helper()
	paid, hits, charged := ta.count(http.StatusOK), up.hits.Load(), netCharged(as)
	if paid != hits || hits != charged {
		t.Errorf("%d 2xx answers, %d upstream hits, %d requests charged; want all equal (%s; accounts %+v)", paid, hits, charged, ta, as)
	}
}

// chaosSize returns full, or small under -short.
func chaosSize(full, small int) int {
	if testing.Short() {
		return small
	}
	return full
}

// logDuration logs how long the test took, at its end.
func logDuration(t *testing.T) {
	start := time.Now()
	t.Cleanup(func() { t.Logf("%s took %v", t.Name(), time.Since(start).Round(time.Millisecond)) })
}
