package meter

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the embedded store: balances kept in this process for its life,
// for one instance only. Nothing is persisted. It has the same semantics as
// the Redis store and keeps time by Config.Now.
type Memory struct {
	cfg       Config
	retention atomic.Int64

	mu       sync.RWMutex
	accounts map[string]*memAccount
	order    []string // ids of existing accounts, in order of creation
}

// NewMemory returns an empty memory store.
func NewMemory(cfg Config) *Memory {
	m := &Memory{cfg: cfg.withDefaults(), accounts: make(map[string]*memAccount)}
	m.retention.Store(int64(m.cfg.Retention))
	return m
}

// SetRetention changes how many ledger entries are kept per account, from
// the next change on; 0 restores the default. The memory store outlives
// configurations, so a new one sets its retention this way.
func (m *Memory) SetRetention(n int) {
	if n <= 0 {
		n = DefaultRetention
	}
	m.retention.Store(int64(n))
}

// config returns the configuration with the current retention.
func (m *Memory) config() Config {
	cfg := m.cfg
	cfg.Retention = int(m.retention.Load())
	return cfg
}

// memAccount is one account's state. All of it is guarded by mu.
type memAccount struct {
	mu sync.Mutex
	id string

	exists  bool // false while the account only holds cancel tombstones
	arrived bool
	created time.Time

	credited, charged, debited, refunded, held int64

	// drained is when a request was last refused for the balance while
	// tokens were held, in ms; 0 for never.
	drained int64

	// depleted is when a refusal last reported the account depleted, in
	// ms; 0 for never.
	depleted int64

	ledger         []Entry // a ring of at most Retention entries
	ledgerStart    int     // index of the oldest entry in ledger
	lastMs, lastSq int64   // the last entry id
	added          int64   // entries ever appended to the ledger

	holds     map[string]*memHold
	ops       map[string]*memOp
	nextSweep int64 // when forgotten ops are next removed, in ms
	credits   map[string]*memTransfer
	debits    map[string]*memTransfer

	purchases map[string]*memPurchase // by session

	// usage is what the account spent, by period (Hourly and Daily): each
	// period's cells in the order of their bucket.
	usage [Daily + 1][]usageCell
}

// memHold is an open hold.
type memHold struct {
	amount  int64
	expires int64 // ms
}

// memOp is what is remembered of a request op. Most ops are charges that
// never change again, so what later steps record is kept apart.
type memOp struct {
	kind      byte // 'c' charge, 'h' hold, 'l' lease, 'x' tombstone of a cancel before apply
	state     byte // 'o' open hold, 's' settled, 'r' released; 'c' for a charge
	cancelled bool
	forgetAt  int64   // ms; 0 while the hold is open
	first     Receipt // the charge or hold
	line      string  // the price line usage counts it under
	steps     *memSteps
	lease     *memLease
}

// memSteps is what the steps after a charge or hold record.
type memSteps struct {
	method  string
	route   string
	seq     int64 // the last extension applied
	seqRcpt Receipt
	settle  Settle
	settled Receipt
	release Receipt
	refund  *Refund
	refunds Receipt
	cancel  Receipt
}

// more returns the op's later steps, making them on first use.
func (op *memOp) more() *memSteps {
	if op.steps == nil {
		op.steps = &memSteps{}
	}
	return op.steps
}

// memTransfer is what is remembered of a credit or debit id.
type memTransfer struct {
	amount  int64
	reason  string
	receipt TransferReceipt
}

// Charge takes a request's price from the balance; see Store.
func (m *Memory) Charge(ctx context.Context, c Charge) (Receipt, error) {
	if err := c.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, c.Account, true, false, func(a *memAccount, now int64) error {
		a.arrive(m.config(), c.Bonus, now)
		if op := a.ops[c.Op]; op != nil {
			if op.kind == 'x' || op.cancelled {
				return ErrCancelled
			}
			if op.kind != 'c' {
				return fmt.Errorf("%w: op was used for a hold", ErrConflict)
			}
			r = op.first
			r.Replayed = true
			return nil
		}
		if bal := a.balance(); bal < c.Amount {
			return a.short(now, bal, c.Amount)
		}
		a.charged += c.Amount
		a.add(m.config(), now, Entry{Kind: KindCharge, Amount: c.Amount, Op: c.Op, Detail: Detail{Method: c.Method, Route: c.Route}})
		a.use(now, c.Line, c.Amount, 1)
		r = Receipt{Amount: c.Amount, Balance: a.balance()}
		a.ops[c.Op] = &memOp{kind: 'c', state: 'c', first: r, line: c.Line, forgetAt: now + m.cfg.OpRetention.Milliseconds()}
		return nil
	})
	return r, err
}

// Hold sets tokens aside for a request; see Store.
func (m *Memory) Hold(ctx context.Context, h Hold) (Receipt, error) {
	if err := h.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, h.Account, true, false, func(a *memAccount, now int64) error {
		a.arrive(m.config(), h.Bonus, now)
		if op := a.ops[h.Op]; op != nil {
			if op.kind == 'x' || op.cancelled {
				return ErrCancelled
			}
			if op.kind != 'h' {
				return fmt.Errorf("%w: op was used for a charge", ErrConflict)
			}
			r = op.first
			r.Replayed = true
			return nil
		}
		bal := a.balance()
		add := min(h.Max, bal)
		if add < h.Min {
			return a.short(now, bal, h.Min)
		}
		expires := now + h.TTL.Milliseconds()
		a.held += add
		a.holds[h.Op] = &memHold{amount: add, expires: expires}
		a.add(m.config(), now, Entry{Kind: KindHold, Amount: add, Op: h.Op, Detail: Detail{Method: h.Method, Route: h.Route}})
		r = Receipt{Amount: add, Held: add, Balance: a.balance(), Expires: time.UnixMilli(expires).UTC()}
		a.ops[h.Op] = &memOp{kind: 'h', state: 'o', first: r, line: h.Line, steps: &memSteps{method: h.Method, route: h.Route}}
		return nil
	})
	return r, err
}

// Extend adds to an open hold and renews it; see Store.
func (m *Memory) Extend(ctx context.Context, e Extend) (Receipt, error) {
	if err := e.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, e.Account, false, false, func(a *memAccount, now int64) error {
		op, hold, err := a.openHold(e.Op)
		if err != nil {
			return err
		}
		st := op.more()
		if e.Seq <= st.seq {
			r = st.seqRcpt
			if e.Seq < st.seq {
				r = Receipt{Held: hold.amount, Balance: a.balance(), Expires: time.UnixMilli(hold.expires).UTC()}
			}
			r.Replayed = true
			return nil
		}
		bal := a.balance()
		add := min(e.Max, bal)
		if add < e.Min {
			return &InsufficientError{Balance: bal, Price: e.Min, Held: a.held}
		}
		hold.amount += add
		hold.expires = now + e.TTL.Milliseconds()
		a.held += add
		if add > 0 {
			a.add(m.config(), now, Entry{Kind: KindHold, Amount: add, Op: e.Op, Detail: Detail{Method: st.method, Route: st.route}})
		}
		r = Receipt{Amount: add, Held: hold.amount, Balance: a.balance(), Expires: time.UnixMilli(hold.expires).UTC()}
		st.seq, st.seqRcpt = e.Seq, r
		return nil
	})
	return r, err
}

// Settle charges what a hold delivered and releases the rest; see Store.
func (m *Memory) Settle(ctx context.Context, s Settle) (Receipt, error) {
	if err := s.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, s.Account, false, false, func(a *memAccount, now int64) error {
		if op := a.ops[s.Op]; op != nil && op.kind == 'h' && op.state == 's' && !op.cancelled {
			if op.steps.settle != s {
				return fmt.Errorf("%w: the hold was settled with other values", ErrConflict)
			}
			r = op.steps.settled
			r.Replayed = true
			return nil
		}
		op, hold, err := a.openHold(s.Op)
		if err != nil {
			return err
		}
		if s.Amount > hold.amount {
			return invalid("settle amount %d exceeds the hold of %d", s.Amount, hold.amount)
		}
		released := hold.amount - s.Amount
		a.closeHold(s.Op)
		a.held -= hold.amount
		a.charged += s.Amount
		a.add(m.config(), now, Entry{Kind: KindSettle, Amount: s.Amount, Op: s.Op, Detail: Detail{Released: released, CutOff: s.CutOff}})
		a.use(now, op.line, s.Amount, 1)
		r = Receipt{Amount: s.Amount, Released: released, Balance: a.balance()}
		st := op.more()
		op.state, st.settle, st.settled = 's', s, r
		op.forgetAt = now + m.cfg.OpRetention.Milliseconds()
		return nil
	})
	return r, err
}

// Release releases an open hold in full; see Store.
func (m *Memory) Release(ctx context.Context, rl Release) (Receipt, error) {
	if err := rl.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, rl.Account, false, false, func(a *memAccount, now int64) error {
		if op := a.ops[rl.Op]; op != nil && op.kind == 'h' && op.state == 'r' && !op.cancelled {
			r = op.steps.release
			r.Replayed = true
			return nil
		}
		op, hold, err := a.openHold(rl.Op)
		if err != nil {
			return err
		}
		a.closeHold(rl.Op)
		a.held -= hold.amount
		a.add(m.config(), now, Entry{Kind: KindRelease, Amount: hold.amount, Op: rl.Op, Detail: Detail{Reason: rl.Reason}})
		r = Receipt{Amount: hold.amount, Balance: a.balance()}
		op.state, op.more().release = 'r', r
		op.forgetAt = now + m.cfg.OpRetention.Milliseconds()
		return nil
	})
	return r, err
}

// Refund gives back what an op charged; see Store.
func (m *Memory) Refund(ctx context.Context, rf Refund) (Receipt, error) {
	if err := rf.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, rf.Account, false, false, func(a *memAccount, now int64) error {
		op := a.ops[rf.Op]
		if op == nil {
			return fmt.Errorf("%w: no such op", ErrNotFound)
		}
		if op.kind == 'x' || op.cancelled {
			return ErrCancelled
		}
		st := op.more()
		if st.refund != nil {
			if *st.refund != rf {
				return fmt.Errorf("%w: the op was refunded with other values", ErrConflict)
			}
			r = st.refunds
			r.Replayed = true
			return nil
		}
		charged, err := op.charged()
		if err != nil {
			return err
		}
		if rf.Amount > charged {
			return invalid("refund amount %d exceeds the %d charged", rf.Amount, charged)
		}
		if a.refunded+rf.Amount > MaxAmount {
			return invalid("refunded total would exceed 2^53-1")
		}
		a.refunded += rf.Amount
		a.add(m.config(), now, Entry{Kind: KindRefund, Amount: rf.Amount, Op: rf.Op, Detail: Detail{Reason: rf.Reason}})
		a.use(now, op.line, -rf.Amount, whole(rf.Amount, charged))
		r = Receipt{Amount: rf.Amount, Balance: a.balance()}
		st.refund, st.refunds = &rf, r
		return nil
	})
	return r, err
}

// Cancel makes an op as if it never happened; see Store.
func (m *Memory) Cancel(ctx context.Context, c Cancel) (Receipt, error) {
	if err := c.validate(); err != nil {
		return Receipt{}, err
	}
	var r Receipt
	err := m.with(ctx, c.Account, false, true, func(a *memAccount, now int64) error {
		op := a.ops[c.Op]
		switch {
		case op == nil:
			r = Receipt{Balance: a.balance()}
			a.ops[c.Op] = &memOp{kind: 'x', steps: &memSteps{cancel: r}, forgetAt: now + m.cfg.OpRetention.Milliseconds()}
			return nil
		case op.kind == 'x' || op.cancelled:
			r = op.steps.cancel
			r.Replayed = true
			return nil
		}
		if hold := a.holds[c.Op]; op.kind == 'h' && hold != nil {
			a.closeHold(c.Op)
			a.held -= hold.amount
			a.add(m.config(), now, Entry{Kind: KindRelease, Amount: hold.amount, Op: c.Op, Detail: Detail{Reason: ReasonNotForwarded}})
			r.Amount = hold.amount
		} else if charged, err := op.charged(); err == nil {
			if back := charged - op.refunded(); back > 0 {
				a.refunded += back
				a.add(m.config(), now, Entry{Kind: KindRefund, Amount: back, Op: c.Op, Detail: Detail{Reason: ReasonNotForwarded}})
				a.use(now, op.line, -back, -1)
				r.Amount = back
			}
		}
		r.Balance = a.balance()
		op.cancelled, op.more().cancel = true, r
		op.forgetAt = now + m.cfg.OpRetention.Milliseconds()
		return nil
	})
	return r, err
}

// Credit adds tokens under the operator's id; see Store.
func (m *Memory) Credit(ctx context.Context, t Transfer) (TransferReceipt, error) {
	return m.transfer(ctx, t, KindCredit)
}

// Debit takes tokens under the operator's id; see Store.
func (m *Memory) Debit(ctx context.Context, t Transfer) (TransferReceipt, error) {
	return m.transfer(ctx, t, KindDebit)
}

func (m *Memory) transfer(ctx context.Context, t Transfer, kind string) (TransferReceipt, error) {
	if err := t.validate(); err != nil {
		return TransferReceipt{}, err
	}
	var r TransferReceipt
	err := m.with(ctx, t.Account, true, false, func(a *memAccount, now int64) error {
		ids := a.credits
		if kind == KindDebit {
			ids = a.debits
		}
		if prev := ids[t.ID]; prev != nil {
			if prev.amount != t.Amount || prev.reason != t.Reason {
				return fmt.Errorf("%w: the id was used with another amount or reason", ErrConflict)
			}
			r = prev.receipt
			r.Replayed = true
			return nil
		}
		bal := a.balance()
		if kind == KindDebit {
			if bal < t.Amount {
				return &InsufficientError{Balance: bal, Price: t.Amount, Held: a.held}
			}
			if a.debited+t.Amount > MaxAmount {
				return invalid("debited total would exceed 2^53-1")
			}
			a.debited += t.Amount
		} else {
			if a.credited+t.Amount > MaxAmount || bal+a.held+t.Amount > MaxAmount {
				return invalid("credited total or balance would exceed 2^53-1")
			}
			a.credited += t.Amount
		}
		e := a.add(m.config(), now, Entry{Kind: kind, Amount: t.Amount, Op: t.ID, Detail: Detail{Reason: t.Reason, By: t.By}})
		r = TransferReceipt{Account: t.Account, Balance: e.Balance, Entry: e}
		ids[t.ID] = &memTransfer{amount: t.Amount, reason: t.Reason, receipt: r}
		return nil
	})
	return r, err
}

// Account reads an account's totals; see Store.
func (m *Memory) Account(ctx context.Context, rd Read) (Account, error) {
	if err := rd.validate(); err != nil {
		return Account{}, err
	}
	var acct Account
	err := m.read(ctx, rd, func(a *memAccount, _ int64) {
		acct = Account{
			Account: a.id, Balance: a.balance(), Held: a.held,
			Credited: a.credited, Charged: a.charged, Debited: a.debited, Refunded: a.refunded,
			Created: a.created,
		}
	})
	return acct, err
}

// Ledger reads a page of an account's ledger; see Store.
func (m *Memory) Ledger(ctx context.Context, q LedgerQuery) (LedgerPage, error) {
	if err := q.validate(); err != nil {
		return LedgerPage{}, err
	}
	page := LedgerPage{Account: q.Account, Entries: []Entry{}}
	err := m.read(ctx, q.Read, func(a *memAccount, _ int64) {
		n := len(a.ledger)
		i := n - 1 // walk newest to oldest, as offsets from ledgerStart
		if q.Before != "" {
			bms, bsq, _ := parseEntryID(q.Before)
			// Entry ids increase along the ring, so find the first older one.
			lo, hi := 0, n // the count of entries older than Before
			for lo < hi {
				mid := (lo + hi) / 2
				ms, sq, _ := parseEntryID(a.ledger[(a.ledgerStart+mid)%n].ID)
				if ms < bms || (ms == bms && sq < bsq) {
					lo = mid + 1
				} else {
					hi = mid
				}
			}
			i = lo - 1
		}
		for ; i >= 0 && len(page.Entries) < q.Limit; i-- {
			page.Entries = append(page.Entries, a.ledger[(a.ledgerStart+i)%n])
		}
		if i >= 0 {
			next := page.Entries[len(page.Entries)-1].ID
			page.Next = &next
		}
	})
	return page, err
}

// Accounts lists accounts; see Store.
func (m *Memory) Accounts(ctx context.Context, cursor string, limit int) (AccountPage, error) {
	if err := ctx.Err(); err != nil {
		return AccountPage{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	start := 0
	if cursor != "" {
		n, err := strconv.Atoi(cursor)
		if err != nil || n < 0 {
			return AccountPage{}, invalid("bad cursor")
		}
		start = n
	}
	if limit < 1 || limit > MaxAccountsLimit {
		limit = DefaultAccountsLimit
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	start = min(start, len(m.order))
	end := min(start+limit, len(m.order))
	page := AccountPage{Accounts: slices.Clone(m.order[start:end])}
	if page.Accounts == nil {
		page.Accounts = []string{}
	}
	if end < len(m.order) {
		next := strconv.Itoa(end)
		page.Next = &next
	}
	return page, nil
}

// Retry runs fn once, now: the memory store is never unavailable.
func (m *Memory) Retry(fn func(context.Context) error) { _ = fn(context.Background()) }

// Use does nothing: the memory store is never closed.
func (m *Memory) Use() (done func()) { return func() {} }

// Drain returns at once: the memory store has no background work.
func (m *Memory) Drain(context.Context) error { return nil }

// Close does nothing: the memory store lives for the life of the process.
func (m *Memory) Close() error { return nil }

// read runs fn on an account after releasing its expired holds, creating it
// and recording the caller's arrival in Caller mode. fn gets the time in ms.
func (m *Memory) read(ctx context.Context, rd Read, fn func(*memAccount, int64)) error {
	return m.with(ctx, rd.Account, rd.Mode == Caller, false, func(a *memAccount, now int64) error {
		if rd.Mode == Caller {
			a.arrive(m.config(), rd.Bonus, now)
		} else if !a.exists {
			return fmt.Errorf("%w: account was never seen", ErrNotFound)
		}
		fn(a, now)
		return nil
	})
}

// with runs fn on an account under its lock, after releasing its expired
// holds. create makes the account exist. Otherwise fn may see an account that
// does not exist, which is stored, without existing, only when keep is set,
// to hold a cancel's tombstone.
func (m *Memory) with(ctx context.Context, id string, create, keep bool, fn func(*memAccount, int64) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.mu.RLock()
	a := m.accounts[id]
	m.mu.RUnlock()
	if a == nil && !create && !keep {
		// Nothing is kept of an account that does not exist.
		a = newMemAccount(id)
	}
	if a == nil {
		m.mu.Lock()
		if a = m.accounts[id]; a == nil {
			a = newMemAccount(id)
			m.accounts[id] = a
		}
		m.mu.Unlock()
	}
	a.mu.Lock()
	before := a.worth()
	moved := func() {
		after := a.worth()
		a.mu.Unlock()
		if after != before && m.cfg.Moved != nil {
			m.cfg.Moved(id, before, after)
		}
	}
	defer moved()
	now := m.cfg.Now().UnixMilli()
	if create && !a.exists {
		a.exists = true
		a.created = time.UnixMilli(now).UTC()
		m.mu.Lock()
		m.order = append(m.order, id)
		m.mu.Unlock()
	}
	a.expire(m.config(), now)
	a.forget(now, m.cfg.OpRetention.Milliseconds())
	return fn(a, now)
}

func newMemAccount(id string) *memAccount {
	return &memAccount{
		id:      id,
		holds:   make(map[string]*memHold),
		ops:     make(map[string]*memOp),
		credits: make(map[string]*memTransfer),
		debits:  make(map[string]*memTransfer),
	}
}

func (a *memAccount) balance() int64 {
	return a.credited - a.charged - a.debited + a.refunded - a.held
}

// worth is what the account has, held tokens included: balance + held.
func (a *memAccount) worth() int64 {
	return a.credited - a.charged - a.debited + a.refunded
}

// arrive records the caller's first operation and credits the bonus, once.
func (a *memAccount) arrive(cfg Config, bonus, now int64) {
	if a.arrived {
		return
	}
	a.arrived = true
	if bonus > 0 && a.credited+bonus <= MaxAmount && a.balance()+a.held+bonus <= MaxAmount {
		a.credited += bonus
		a.add(cfg, now, Entry{Kind: KindCredit, Amount: bonus, Op: ReasonSignupBonus, Detail: Detail{Reason: ReasonSignupBonus, By: "tollgate"}})
	}
}

// expire releases the holds whose expiry has passed.
func (a *memAccount) expire(cfg Config, now int64) {
	if !a.exists {
		return
	}
	var expired []string
	for op, h := range a.holds {
		if h.expires <= now {
			expired = append(expired, op)
		}
	}
	slices.Sort(expired) // release in a stable order
	for _, op := range expired {
		h := a.holds[op]
		a.closeHold(op)
		a.held -= h.amount
		a.add(cfg, now, Entry{Kind: KindRelease, Amount: h.amount, Op: op, Detail: Detail{Reason: ReasonExpired}})
		if rec := a.ops[op]; rec != nil {
			rec.forgetAt = now + cfg.OpRetention.Milliseconds()
		}
	}
}

// forget removes the ops whose retention has passed, at most once per
// hundredth of the retention.
func (a *memAccount) forget(now, retention int64) {
	if now < a.nextSweep {
		return
	}
	a.nextSweep = now + max(retention/100, 1)
	for id, op := range a.ops {
		if op.forgetAt != 0 && op.forgetAt <= now {
			delete(a.ops, id)
		}
	}
}

// short refuses a request for the balance. While tokens are held, it marks
// the account as draining, so that lease holders give back what they do not
// need.
func (a *memAccount) short(now, balance, price int64) error {
	if a.held > 0 {
		a.drained = now
	}
	e := &InsufficientError{Balance: balance, Price: price, Held: a.held}
	if now-a.depleted >= time.Hour.Milliseconds() {
		a.depleted, e.Depleted = now, true
	}
	return e
}

// openHold returns the op's record and its open hold, or the error that says
// why there is none.
func (a *memAccount) openHold(op string) (*memOp, *memHold, error) {
	rec := a.ops[op]
	switch {
	case rec == nil:
		return nil, nil, fmt.Errorf("%w: no such hold", ErrNotFound)
	case rec.kind == 'x' || rec.cancelled:
		return nil, nil, ErrCancelled
	case rec.kind != 'h':
		return nil, nil, fmt.Errorf("%w: op is a charge, not a hold", ErrConflict)
	}
	hold := a.holds[op]
	if hold == nil {
		return nil, nil, ErrGone
	}
	return rec, hold, nil
}

func (a *memAccount) closeHold(op string) { delete(a.holds, op) }

// charged returns what the op has charged: a charge's amount or a settled
// hold's.
func (op *memOp) charged() (int64, error) {
	switch {
	case op.kind == 'c':
		return op.first.Amount, nil
	case op.kind == 'h' && op.state == 's':
		return op.steps.settled.Amount, nil
	}
	return 0, invalid("op has charged nothing")
}

func (op *memOp) refunded() int64 {
	if op.steps == nil || op.steps.refund == nil {
		return 0
	}
	return op.steps.refund.Amount
}

// add appends an entry with the next id, the current balance and time, and
// trims the ledger to the retention.
func (a *memAccount) add(cfg Config, now int64, e Entry) Entry {
	if now > a.lastMs {
		a.lastMs, a.lastSq = now, 0
	} else {
		a.lastSq++
	}
	e.ID = strconv.FormatInt(a.lastMs, 10) + "-" + strconv.FormatInt(a.lastSq, 10)
	e.Time = time.UnixMilli(now).UTC()
	e.Balance = a.balance()
	a.added++
	if len(a.ledger) < cfg.Retention && a.ledgerStart == 0 {
		a.ledger = append(a.ledger, e)
	} else {
		a.ledger[a.ledgerStart] = e
		a.ledgerStart = (a.ledgerStart + 1) % len(a.ledger)
	}
	return e
}

// Interface guards
var _ Store = (*Memory)(nil)
