package notify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/notify"
)

const secret = "notify-secret"

// receiver records each delivery and answers with the next of its
// statuses (200 once they run out).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []notify.Event
	bodies   [][]byte
	sigs     []string
	arrived  chan struct{}
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, arrived: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var e notify.Event
		_ = json.Unmarshal(body, &e)
		r.mu.Lock()
		r.got = append(r.got, e)
		r.bodies = append(r.bodies, body)
		r.sigs = append(r.sigs, req.Header.Get("Tollgate-Signature"))
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

// await waits for n deliveries.
func (r *receiver) await(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("a delivery did not arrive")
		}
	}
}

// verify checks a Tollgate-Signature as a receiver would.
func verify(sig string, body []byte) bool {
	parts := map[string]string{}
	for _, p := range strings.Split(sig, ",") {
		k, v, _ := strings.Cut(p, "=")
		parts[k] = v
	}
	ts, err := strconv.ParseInt(parts["t"], 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)) > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(parts["t"] + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(parts["v1"]))
}

// counts records Config.Count, and tells of each outcome on seen.
type counts struct {
	mu   sync.Mutex
	m    map[string]int
	seen chan string
}

func newCounts() *counts { return &counts{m: map[string]int{}, seen: make(chan string, 100)} }

func (c *counts) add(typ, outcome string) {
	c.mu.Lock()
	c.m[typ+" "+outcome]++
	c.mu.Unlock()
	c.seen <- typ + " " + outcome
}

// await waits until Count is told of k.
func (c *counts) await(t *testing.T, k string) {
	t.Helper()
	for {
		select {
		case got := <-c.seen:
			if got == k {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("never counted %s: %v", k, c.m)
		}
	}
}

func (c *counts) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

// TestRetriedUnderOneID delivers to a receiver that answers 500 twice: it
// gets the same id and body three times, each validly signed.
func TestRetriedUnderOneID(t *testing.T) {
	r := newReceiver(t, 500, 500)
	c := newCounts()
	n, err := notify.New(notify.Config{URL: r.URL, Secret: secret, FirstBackoff: 10 * time.Millisecond, Count: c.add})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	threshold := int64(100)
	n.Send(notify.Event{Type: notify.LowBalance, Account: "alice", Balance: 99, Threshold: &threshold})
	r.await(t, 3)
	c.await(t, "low_balance delivered")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 3 || r.got[0].ID == "" || r.got[1].ID != r.got[0].ID || r.got[2].ID != r.got[0].ID {
		t.Fatalf("deliveries %+v, want one id three times", r.got)
	}
	for i := range r.got {
		if string(r.bodies[i]) != string(r.bodies[0]) || !verify(r.sigs[i], r.bodies[i]) {
			t.Errorf("delivery %d: body %s, signature %s", i+1, r.bodies[i], r.sigs[i])
		}
		if verify(r.sigs[i], append([]byte(" "), r.bodies[i]...)) {
			t.Errorf("delivery %d: the signature verifies another body", i+1)
		}
	}
	if e := r.got[0]; e.Type != notify.LowBalance || e.Account != "alice" || e.Balance != 99 || e.Threshold == nil || *e.Threshold != 100 || e.Amount != nil {
		t.Errorf("event %+v", e)
	}
	if c.get("low_balance retried") != 2 || c.get("low_balance delivered") != 1 {
		t.Errorf("counts %v", c.m)
	}
}

// TestNoRedirectsAndGivingUp does not follow a redirect, which is not a
// delivery, and gives a notification up once its time to retry is over.
func TestNoRedirectsAndGivingUp(t *testing.T) {
	var followed sync.Once
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { followed.Do(func() { t.Error("the redirect was followed") }) }))
	defer target.Close()
	r := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, target.URL, http.StatusTemporaryRedirect)
	}))
	defer r.Close()
	c := newCounts()
	n, err := notify.New(notify.Config{URL: r.URL, Secret: secret, FirstBackoff: 5 * time.Millisecond, Retry: 100 * time.Millisecond, Count: c.add})
	if err != nil {
		t.Fatal(err)
	}
	n.Send(notify.Event{Type: notify.Depleted, Account: "bob"})
	c.await(t, "depleted expired")
	n.Close()
	if c.get("depleted delivered") != 0 || c.get("depleted retried") < 1 {
		t.Errorf("counts %v", c.m)
	}
}

// TestQueueBound drops what does not fit, and counts it.
func TestQueueBound(t *testing.T) {
	block := make(chan struct{})
	r := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer r.Close()
	defer close(block)
	c := newCounts()
	n, err := notify.New(notify.Config{URL: r.URL, Secret: secret, Queue: 3, Count: c.add})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for range 5 {
		n.Send(notify.Event{Type: notify.Credited, Account: "carol"})
	}
	if got := c.get("credited dropped"); got != 2 {
		t.Errorf("%d dropped, want 2 of 5 with room for 3", got)
	}
}

// TestConfig refuses a notifier without a url or a secret.
func TestConfig(t *testing.T) {
	for _, cfg := range []notify.Config{{URL: "http://127.0.0.1:1/"}, {Secret: "s"}} {
		if _, err := notify.New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
