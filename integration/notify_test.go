package integration

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/notify"
)

const notifySecret = "integration-notify-secret"

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// recordedEvents are what the eventRecorder handler got, by event name.
var recordedEvents = make(chan string, 100)

// eventRecorder is a Caddy event handler that records the events it
// handles, with their data.
type eventRecorder struct{}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.tollgate_test_record", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents <- fmt.Sprintf("%s %v %v %v", e.Name(), e.Data["account"], e.Data["balance"], e.Data["threshold"])
	return nil
}

// notifyReceiver is an endpoint that checks each delivery's signature and
// records it.
type notifyReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []notify.Event
	bad     int
	arrived chan notify.Event
}

func newNotifyReceiver(t *testing.T) *notifyReceiver {
	r := &notifyReceiver{arrived: make(chan notify.Event, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e notify.Event
		_ = json.Unmarshal(body, &e)
		r.mu.Lock()
		if !validSignature(req.Header.Get("Tollgate-Signature"), body) {
			r.bad++
		}
		r.got = append(r.got, e)
		r.mu.Unlock()
		r.arrived <- e
	}))
	t.Cleanup(r.Close)
	return r
}

// validSignature checks a Tollgate-Signature as a receiver would.
func validSignature(sig string, body []byte) bool {
	t, v1, ok := strings.Cut(sig, ",v1=")
	t, ok2 := strings.CutPrefix(t, "t=")
	if !ok || !ok2 {
		return false
	}
	mac := hmac.New(sha256.New, []byte(notifySecret))
	mac.Write([]byte(t + "." + string(body)))
	return hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(v1))
}

// next waits for the next delivery.
func (r *notifyReceiver) next(t *testing.T) notify.Event {
	t.Helper()
	select {
	case e := <-r.arrived:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
	return notify.Event{}
}

// await waits for deliveries until one of type typ for account arrives,
// and returns it.
func (r *notifyReceiver) await(t *testing.T, typ, account string) notify.Event {
	t.Helper()
	for {
		select {
		case e := <-r.arrived:
			if e.Type == typ && e.Account == account {
				return e
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s notification for %s", typ, account)
		}
	}
}

// of returns the deliveries for an account, as "type threshold".
func (r *notifyReceiver) of(account string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.got {
		if e.Account != account {
			continue
		}
		s := e.Type
		if e.Threshold != nil {
			s += fmt.Sprint(" ", *e.Threshold)
		}
		out = append(out, s)
	}
	return out
}

// TestNotifyAcrossGateways drains one account through two gateway
// processes across two thresholds: the receiver gets exactly one signed
// low_balance delivery per threshold, and one depleted.
func TestNotifyAcrossGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	rcv := newNotifyReceiver(t)
	site := "tollgate 3\nreverse_proxy " + up.Listener.Addr().String()
	globals := fmt.Sprintf(`notify {
			url %s
			secret %s
			low_balance 1000 100
		}`, rcv.URL, notifySecret)
	g := startGateway(t, srv, site, globals)
	other := startProcess(t, srv, g, site, globals)
	g.credit(t, "drained", 1501)
	paid, _ := burst(t, token(t, "drained"), 1000, g.URL, other.URL)
	if paid != 500 {
		t.Fatalf("%d paid, want 500", paid)
	}
	for range 3 {
		rcv.next(t) // two thresholds and depleted
	}
	// A credit through each gateway's admin API comes after what each sent
	// before: once both are in, nothing else is on its way.
	for i, admin := range []string{g.Admin, other.Admin} {
		body := fmt.Sprintf(`{"amount":1,"id":"barrier-%d"}`, i)
		resp, err := http.Post(admin+"/tollgate/accounts/drained/credit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	rcv.await(t, notify.Credited, "drained")
	rcv.await(t, notify.Credited, "drained")
	got := rcv.of("drained")
	slices.Sort(got)
	if want := []string{"credited", "credited", "depleted", "low_balance 100", "low_balance 1000"}; !slices.Equal(got, want) {
		t.Errorf("deliveries %q, want %q", got, want)
	}
	if rcv.bad != 0 {
		t.Errorf("%d deliveries with a bad signature", rcv.bad)
	}
}

// TestNotifyRearmAndEvents crosses a threshold, is credited above it, and
// crosses it again: each crossing is told once, to the notify endpoint and
// to a Caddy event handler subscribed to tollgate.low_balance.
func TestNotifyRearmAndEvents(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	rcv := newNotifyReceiver(t)
	port, adminPort := freePort(t), freePort(t)
	cfg := gatewayConfig(srv, fmt.Sprintf("it%d", prefixes.Add(1)), adminPort, port, "tollgate 100\nreverse_proxy "+up.Listener.Addr().String(),
		fmt.Sprintf("notify {\n\t\t\turl %s\n\t\t\tsecret %s\n\t\t\tlow_balance 1000\n\t\t}", rcv.URL, notifySecret))
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatal(err)
	}
	var full map[string]any
	if err := json.Unmarshal(js, &full); err != nil {
		t.Fatal(err)
	}
	full["apps"].(map[string]any)["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events":   []string{"tollgate.low_balance"},
		"handlers": []any{map[string]any{"handler": "tollgate_test_record"}},
	}}}
	js, _ = json.Marshal(full)
	if err := caddy.Load(js, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	g := &gateway{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: &http.Client{Timeout: 10 * time.Second},
	}
	tok := token(t, "rearmed")
	credit := func(id string, amount int) {
		t.Helper()
		resp, body := g.admin(t, "POST", "/accounts/rearmed/credit", fmt.Sprintf(`{"amount":%d,"id":%q}`, amount, id))
		expectStatus(t, "credit", resp, body, http.StatusOK)
		rcv.await(t, notify.Credited, "rearmed")
	}
	spend := func(n int) {
		t.Helper()
		for range n {
			resp, body := g.do(t, "GET", "/x", tok)
			expectStatus(t, "a request", resp, body, http.StatusOK)
		}
	}
	credit("c1", 1100)
	spend(2) // 1100 -> 900: below 1000
	if e := rcv.await(t, notify.LowBalance, "rearmed"); e.Balance != 900 || *e.Threshold != 1000 {
		t.Errorf("first crossing: %+v", e)
	}
	expectEvent(t, "tollgate.low_balance rearmed 900 1000")
	spend(1)          // 800: still below, nothing more
	credit("c2", 500) // 1300: re-armed
	spend(4)          // 900: below again
	if e := rcv.await(t, notify.LowBalance, "rearmed"); e.Balance != 900 {
		t.Errorf("second crossing: %+v", e)
	}
	expectEvent(t, "tollgate.low_balance rearmed 900 1000")
	if got, want := rcv.of("rearmed"), []string{"credited", "low_balance 1000", "credited", "low_balance 1000"}; !slices.Equal(got, want) {
		t.Errorf("deliveries %q, want %q", got, want)
	}
}

// expectEvent waits for the event handler to record want.
func expectEvent(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-recordedEvents:
		if got != want {
			t.Errorf("event %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event %q", want)
	}
}

// TestNotifySurvivesReload keeps a notification that waits for its retry
// across a config reload: the receiver, which refused it once, gets it
// again under the same id from the new config.
func TestNotifySurvivesReload(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	var mu sync.Mutex
	var ids []string
	arrived := make(chan struct{}, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notify.Event
		_ = json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		ids = append(ids, e.ID)
		first := len(ids) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusInternalServerError)
		}
		arrived <- struct{}{}
	}))
	t.Cleanup(rcv.Close)
	site := "tollgate 1\nreverse_proxy " + up.Listener.Addr().String()
	config := func(threshold int) string {
		return fmt.Sprintf("notify {\n\t\t\turl %s\n\t\t\tsecret %s\n\t\t\tlow_balance %d\n\t\t}", rcv.URL, notifySecret, threshold)
	}
	g := startGateway(t, srv, site, config(100))
	resp, body := g.admin(t, "POST", "/accounts/reloaded/credit", `{"amount":5,"id":"c1"}`)
	expectStatus(t, "credit", resp, body, http.StatusOK)
	<-arrived // refused: it waits a second for its retry
	port := strings.TrimPrefix(g.URL, "http://127.0.0.1:")
	adminPort := strings.TrimPrefix(g.Admin, "http://127.0.0.1:")
	var p, a int
	fmt.Sscan(port, &p)
	fmt.Sscan(adminPort, &a)
	if err := load(t, gatewayConfig(srv, g.prefix, a, p, site, config(200))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the notification was lost in the reload")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] || ids[0] == "" {
		t.Errorf("deliveries %q, want one id twice", ids)
	}
}

// TestNotifyCrash measures what a crash of the gateway that queued
// notifications loses: the queue is in its memory, so every notification
// it had not delivered yet.
func TestNotifyCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	srv := redistest.Start(t)
	up := newUpstream(t)
	var mu sync.Mutex
	refuse := true
	delivered := map[string]bool{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e notify.Event
		_ = json.NewDecoder(r.Body).Decode(&e)
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered[e.ID] = true
	}))
	t.Cleanup(rcv.Close)
	site := "tollgate 1\nreverse_proxy " + up.Listener.Addr().String()
	globals := fmt.Sprintf("notify {\n\t\t\turl %s\n\t\t\tsecret %s\n\t\t}", rcv.URL, notifySecret)
	g := startGateway(t, srv, site, "")
	victim := startProcess(t, srv, g, site, globals)
	const queued = 20
	for i := range queued {
		resp, err := http.Post(victim.Admin+"/tollgate/accounts/crash/credit", "application/json",
			strings.NewReader(fmt.Sprintf(`{"amount":1,"id":"c%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	victim.kill()
	mu.Lock()
	refuse = false
	mu.Unlock()
	// A gateway started on the same config has its own, empty queue; the
	// barrier is its own credit, delivered at once.
	next := startProcess(t, srv, g, site, globals)
	resp, err := http.Post(next.Admin+"/tollgate/accounts/crash/credit", "application/json", strings.NewReader(`{"amount":1,"id":"after"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the new gateway's notification", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) > 0
	})
	mu.Lock()
	lost := queued + 1 - len(delivered)
	mu.Unlock()
	t.Logf("a crash lost %d of %d notifications the gateway had queued", lost, queued)
	if lost != queued {
		t.Errorf("%d lost, want all %d that were queued", lost, queued)
	}
}
