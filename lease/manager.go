// Package lease pays per-request prices from leases: holds that one gateway
// takes on an account in the store and spends locally, request by request,
// so that a hot account costs a few store calls a second instead of one a
// request.
//
// A lease is tokens already set aside in the store, so spending it locally
// can never overspend. At least every Config.Flush, what each lease spent is
// charged in the store and the lease renewed, grown or shrunk, in one call
// per account (meter.Store.Lease). Below Config.MinBalance, or when a lease
// cannot be had, the caller charges each request on its own, as without
// leases. When a gateway dies, what its leases spent since their last call is
// never charged, and the rest returns to the balance when the lease expires.
//
// Package lease knows nothing of HTTP or Caddy.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate-dev/tollgate/meter"
)

// Defaults of Config.
const (
	// DefaultFlush is how often spent tokens reach the store.
	DefaultFlush = 100 * time.Millisecond

	// DefaultMinBalance is the available balance below which requests are
	// charged one by one.
	DefaultMinBalance = 1000
)

// idleFlushes is how many flushes with nothing asked of a lease close it,
// so that an account gone quiet strands nothing.
const idleFlushes = 10

// leaseAfter is how many requests an account must ask for within a flush
// before it is leased, and a lease that serves fewer than leaseAfter/4 in a
// flush is given back.
const leaseAfter = 8

// maxSeen bounds the accounts whose requests a Manager counts towards a
// lease; beyond it, the counts start again.
const maxSeen = 10_000

// parallelCalls bounds the store calls a Manager makes at once.
const parallelCalls = 16

// Config says how a Manager leases.
type Config struct {
	// Size is the tokens a lease holds; 0 sizes each lease from the
	// account's recent rate on this gateway.
	Size int64

	// Flush is how often what leases spent is charged in the store.
	// Default: DefaultFlush.
	Flush time.Duration

	// MinBalance is the available balance below which no lease is taken,
	// and open ones are given back. Default: 0 (the caller sets it).
	MinBalance int64

	// TTL is how long a lease lives in the store after its last call. A
	// lease is not spent past TTL/2 after its last acknowledged call.
	// Required.
	TTL time.Duration

	// Logger receives what goes wrong. Default: none.
	Logger *zap.Logger

	// Called is called after each store call, with what it charged and its
	// error. Default: none.
	Called func(charged int64, err error)

	// Lost is called with the tokens that requests spent from a lease that
	// the store no longer had when they were to be charged: served, never
	// charged, in the caller's favour. Default: none.
	Lost func(tokens int64)
}

// Manager holds one gateway's leases, one per account at most.
type Manager struct {
	store meter.Store
	cfg   Config

	leases  sync.Map // account -> *lease
	closing atomic.Bool
	sem     chan struct{}
	started sync.Once
	calls   sync.WaitGroup

	mu   sync.Mutex
	seen map[string]window // accounts charged on their own, towards a lease
	done chan struct{}
	once sync.Once
}

// New returns a Manager that leases from store. It starts its flush loop
// when it takes its first lease; from then on, the store stays in use until
// the Manager is closed and every lease it holds is given back.
func New(store meter.Store, cfg Config) *Manager {
	if cfg.Flush <= 0 {
		cfg.Flush = DefaultFlush
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Manager{
		store: store, cfg: cfg,
		sem:  make(chan struct{}, parallelCalls),
		done: make(chan struct{}),
		seen: map[string]window{},
	}
}

// start starts the flush loop, which keeps the store in use until it ends.
func (m *Manager) start() {
	inUse := m.store.Use()
	go func() {
		defer inUse()
		m.loop()
	}()
}

// Take pays amount from the account's lease, if it has one that can pay it
// now. A Ticket that is not ok pays nothing: the request is charged on its
// own.
func (m *Manager) Take(account, method, route, line string, amount int64) (Ticket, bool) {
	v, ok := m.leases.Load(account)
	if !ok {
		return Ticket{}, false
	}
	l := v.(*lease)
	t, ok, grow := l.take(method, route, line, amount)
	if grow {
		m.kick(l)
	}
	return t, ok
}

// Observe tells the Manager the account's available balance after a request
// was charged on its own for amount. An account whose balance is at least
// MinBalance, and that asks for requests fast enough for a lease to save
// store calls, gets a lease, taken in the background.
func (m *Manager) Observe(account string, balance, amount int64) {
	if m.closing.Load() || balance < m.cfg.MinBalance {
		return
	}
	if v, ok := m.leases.Load(account); ok {
		v.(*lease).observe(balance)
		return
	}
	if !m.busy(account) {
		return
	}
	l := newLease(m, account, balance, amount)
	if _, loaded := m.leases.LoadOrStore(account, l); loaded {
		return
	}
	if m.closing.Load() {
		// Close may have looked at the leases before this one was there.
		m.leases.CompareAndDelete(account, l)
		return
	}
	m.started.Do(m.start)
	m.kick(l)
}

// busy counts a request of the account charged on its own, and reports
// whether the account asks for leaseAfter of them within a flush: below
// that rate, a lease would save too few store calls to pay for its own.
func (m *Manager) busy(account string) bool {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.seen[account]
	if !ok && len(m.seen) >= maxSeen {
		clear(m.seen)
	}
	if !ok || now.Sub(w.start) > m.cfg.Flush {
		w = window{start: now}
	}
	if w.n++; w.n < leaseAfter {
		m.seen[account] = w
		return false
	}
	delete(m.seen, account)
	return true
}

// window counts an account's requests charged on their own since start.
type window struct {
	start time.Time
	n     int
}

// Drain gives back at once what this gateway's lease on the account does
// not need, as every lease holder does when a request is refused for the
// balance while tokens are held, and waits for those tokens: it calls try
// about every Flush/2, for at most about 2.5 × Flush, until it returns an
// error that is not meter.ErrInsufficient, and returns its last error.
func (m *Manager) Drain(ctx context.Context, account string, try func() error) error {
	if v, ok := m.leases.Load(account); ok {
		l := v.(*lease)
		l.mu.Lock()
		l.draining = true
		l.mu.Unlock()
		m.kick(l)
	}
	deadline := time.Now().Add(2*m.cfg.Flush + m.cfg.Flush/2)
	var err error
	for {
		t := time.NewTimer(m.cfg.Flush / 2)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		err = try()
		if !errors.Is(err, meter.ErrInsufficient) || time.Now().After(deadline) {
			return err
		}
	}
}

// Close stops taking leases, charges what every lease spent and gives back
// what it holds, and waits until that is done or ctx ends. A lease that
// requests in flight still spend stays open until they end; the Manager
// keeps flushing it in the background, keeping the store in use.
func (m *Manager) Close(ctx context.Context) error {
	m.once.Do(func() {
		m.closing.Store(true)
		m.leases.Range(func(_, v any) bool {
			l := v.(*lease)
			l.mu.Lock()
			if l.phase != closed {
				l.phase = closing
			}
			l.mu.Unlock()
			m.kick(l)
			return true
		})
	})
	// A lease taken as the Manager closed is given back by the loop.
	m.started.Do(m.start)
	t := time.NewTicker(min(m.cfg.Flush/4, closePoll))
	defer t.Stop()
	for {
		if m.idle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return nil
		case <-t.C:
		}
		// A lease whose call was in flight when it was last kicked is
		// given back now.
		m.leases.Range(func(_, v any) bool {
			m.kick(v.(*lease))
			return true
		})
	}
}

// closePoll bounds how often Close looks at the leases left.
const closePoll = 10 * time.Millisecond

// idle reports that no lease is left that requests do not still spend.
func (m *Manager) idle() bool {
	idle := true
	m.leases.Range(func(_, v any) bool {
		l := v.(*lease)
		l.mu.Lock()
		if l.tickets == 0 {
			idle = false
		}
		l.mu.Unlock()
		return idle
	})
	return idle
}

// loop calls the store for every lease that needs it, every Flush, until
// the Manager is closed and holds no lease.
func (m *Manager) loop() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.Flush)
	defer t.Stop()
	for range t.C {
		empty := true
		m.leases.Range(func(_, v any) bool {
			empty = false
			m.kick(v.(*lease))
			return true
		})
		if empty && m.closing.Load() {
			m.calls.Wait()
			return
		}
	}
}

// kick makes the lease's next store call now, unless one is in flight or
// there is nothing to send.
func (m *Manager) kick(l *lease) {
	c, ok := l.plan()
	if !ok {
		if l.isClosed() {
			m.leases.CompareAndDelete(l.account, l)
		}
		return
	}
	m.calls.Add(1)
	go func() {
		defer m.calls.Done()
		m.sem <- struct{}{}
		defer func() { <-m.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.TTL/4)
		defer cancel()
		r, err := m.store.Lease(ctx, c)
		if m.cfg.Called != nil {
			m.cfg.Called(r.Charged, err)
		}
		switch {
		case l.acked(c, r, err):
			m.leases.CompareAndDelete(l.account, l)
		case r.Draining:
			// A request waits for what this lease gives back.
			m.kick(l)
		}
	}()
}

// newOp returns a new lease op: 128 random bits and the lease suffix.
func newOp() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-l"
}
