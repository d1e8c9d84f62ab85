// Package notify tells an operator's endpoint about accounts: a balance
// that fell below a threshold, a request refused for the balance, a credit.
// Each notification is POSTed as JSON, signed as Stripe signs its webhooks,
// and retried with backoff under a stable id until it is answered 2xx or a
// day has passed. It knows nothing of Caddy.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The kinds of notification.
const (
	LowBalance = "low_balance"
	Depleted   = "depleted"
	Credited   = "credited"
)

// Event is one notification, as its receiver gets it.
type Event struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	Account   string    `json:"account"`
	Balance   int64     `json:"balance"`
	Threshold *int64    `json:"threshold,omitempty"`
	Amount    *int64    `json:"amount,omitempty"`
}

// Outcomes of a delivery attempt, the values Config.Count gets.
const (
	Delivered = "delivered" // answered 2xx
	Retried   = "retried"   // not answered 2xx: tried again later
	Expired   = "expired"   // not delivered within Retry: given up
	Dropped   = "dropped"   // the queue was full
)

// Config is where and how to deliver.
type Config struct {
	URL    string
	Secret string // signs each delivery; required

	// Retry is how long a notification is tried. Default: 24h.
	Retry time.Duration

	// FirstBackoff is the wait before the first retry; each retry waits
	// twice as long as the one before, at most MaxBackoff. Defaults: 1s and
	// 10m.
	FirstBackoff, MaxBackoff time.Duration

	// Queue bounds the notifications waiting. Default: 10000.
	Queue int

	// Count, when set, is told the outcome of each attempt, by event type.
	Count func(typ, outcome string)
}

// Notifier delivers to one endpoint, one notification at a time, in the
// background.
type Notifier struct {
	cfg    Config
	client *http.Client

	mu      sync.Mutex
	pending []*delivery // in the order they are due
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// delivery is a notification on its way.
type delivery struct {
	typ     string
	body    []byte
	due     time.Time
	giveUp  time.Time
	backoff time.Duration
}

// New starts a Notifier. Close stops it.
func New(cfg Config) (*Notifier, error) {
	if cfg.URL == "" || cfg.Secret == "" {
		return nil, errors.New("notify needs a url and a secret")
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 24 * time.Hour
	}
	if cfg.FirstBackoff <= 0 {
		cfg.FirstBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Minute
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 10_000
	}
	n := &Notifier{
		cfg: cfg,
		client: &http.Client{
			Timeout: 10 * time.Second,
			// A receiver answers itself; a redirect is not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go n.loop()
	return n, nil
}

// Send queues an event, giving it its id and time. It never blocks: when
// the queue is full the event is dropped and counted.
func (n *Notifier) Send(e Event) {
	e.ID, e.Time = "ntf_"+newID(), time.Now().UTC()
	body, _ := json.Marshal(e)
	now := time.Now()
	d := &delivery{typ: e.Type, body: body, due: now, giveUp: now.Add(n.cfg.Retry), backoff: n.cfg.FirstBackoff}
	n.mu.Lock()
	if len(n.pending) >= n.cfg.Queue {
		n.mu.Unlock()
		n.count(e.Type, Dropped)
		return
	}
	n.pending = append(n.pending, d)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Close stops delivering, waiting for an attempt in flight.
func (n *Notifier) Close() {
	close(n.stop)
	<-n.done
}

// loop delivers what is due, and sleeps until the next is.
func (n *Notifier) loop() {
	defer close(n.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stop
		cancel()
	}()
	for ctx.Err() == nil {
		n.mu.Lock()
		var next *delivery
		wait := time.Hour
		for _, d := range n.pending {
			if w := time.Until(d.due); next == nil || w < wait {
				next, wait = d, w
			}
		}
		n.mu.Unlock()
		if next != nil && wait <= 0 {
			n.attempt(ctx, next)
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-n.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// attempt delivers d once, and schedules it again unless that succeeded or
// its day is over.
func (n *Notifier) attempt(ctx context.Context, d *delivery) {
	ok := n.post(ctx, d.body)
	if ctx.Err() != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	switch {
	case ok:
		n.remove(d)
		n.count(d.typ, Delivered)
	case now.Add(d.backoff).After(d.giveUp):
		n.remove(d)
		n.count(d.typ, Expired)
	default:
		d.due = now.Add(d.backoff)
		d.backoff = min(2*d.backoff, n.cfg.MaxBackoff)
		n.count(d.typ, Retried)
	}
}

// remove takes d out of the pending list. Called with mu held.
func (n *Notifier) remove(d *delivery) {
	for i, p := range n.pending {
		if p == d {
			n.pending = append(n.pending[:i], n.pending[i+1:]...)
			return
		}
	}
}

// post sends body, signed now, and reports a 2xx answer.
func (n *Notifier) post(ctx context.Context, body []byte) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Tollgate-Signature", Sign(n.cfg.Secret, time.Now(), body))
	resp, err := n.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

func (n *Notifier) count(typ, outcome string) {
	if n.cfg.Count != nil {
		n.cfg.Count(typ, outcome)
	}
}

// Sign returns the Tollgate-Signature of body sent at t:
// t=<unix>,v1=<hex HMAC-SHA256 of "<unix>.<body>">.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
