package storetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// The property test runs a random sequence of operations against the store
// and against model, a plain account model written apart from every store,
// and compares each result, the totals after each step, and every few steps
// each account's whole ledger.

// propertySteps is how many operations the property test runs.
const propertySteps = 4000

// SeedEnv names the environment variable that fixes the property test's
// seed, to replay a failure.
const SeedEnv = "STORETEST_SEED"

// model is one account.
type model struct {
	exists, arrived bool
	cr, ch, de, rf  int64
	holds           map[string]*modelHold // the open holds
	ops             map[string]*modelOp
	ids             map[string]*modelTransfer // "credit/id" or "debit/id"
	entries         int                       // ledger entries written
	drained         bool                      // a charge or hold was refused while tokens were held
	now             time.Duration             // how far the clock has moved
	depleted        *time.Duration            // when a refusal last reported the account depleted
}

type modelHold struct {
	amount int64
	short  bool // expires at the next advance of the clock
}

type modelOp struct {
	kind      byte // 'c' charge, 'h' hold, 'l' lease, 'x' tombstone of a cancel before apply
	state     byte // for holds and leases: 'o' open, 's' settled, 'r' released, 'e' expired, 'c' closed
	cancelled bool
	first     meter.Receipt
	seq       int64
	seqRcpt   meter.Receipt
	settle    meter.Settle
	settled   meter.Receipt
	released  meter.Receipt
	refund    *meter.Refund
	refunded  meter.Receipt
	cancel    meter.Receipt
	lease     *modelLease
}

// modelLease is what the model keeps of a lease.
type modelLease struct {
	seq               int64              // the last call applied
	last              meter.LeaseReceipt // its result
	charged, refunded int64              // in all
	dormant           bool               // open, holding nothing
}

type modelTransfer struct {
	amount int64
	reason string
	first  meter.TransferReceipt // the store's first receipt
}

func newModel() *model {
	return &model{holds: map[string]*modelHold{}, ops: map[string]*modelOp{}, ids: map[string]*modelTransfer{}}
}

func (m *model) held() int64 {
	var n int64
	for _, h := range m.holds {
		n += h.amount
	}
	return n
}

func (m *model) balance() int64 { return m.cr - m.ch - m.de + m.rf - m.held() }

// arrive records a caller's operation: the account exists, and the first
// one credits the bonus.
func (m *model) arrive(bonus int64) {
	m.exists = true
	if !m.arrived {
		m.arrived = true
		if bonus > 0 {
			m.cr += bonus
			m.entries++
		}
	}
}

// advance moves the clock by d and releases the holds that expire.
func (m *model) advance(d time.Duration) {
	m.now += d
	for op, h := range m.holds {
		if h.short {
			delete(m.holds, op)
			m.ops[op].state = 'e'
			m.entries++
		}
	}
}

// outcome is a result class and what the model predicts with it.
type outcome struct {
	class string // ok, replay, insufficient, invalid, conflict, gone, cancelled, notfound
	r     meter.Receipt
	ins   meter.InsufficientError // for insufficient
	loose bool                    // compare the class only
	lease meter.LeaseReceipt      // for a lease call, instead of r
}

func classOf(err error, replayed bool) string {
	switch {
	case err == nil && replayed:
		return "replay"
	case err == nil:
		return "ok"
	case errors.Is(err, meter.ErrInsufficient):
		return "insufficient"
	case errors.Is(err, meter.ErrInvalid):
		return "invalid"
	case errors.Is(err, meter.ErrConflict):
		return "conflict"
	case errors.Is(err, meter.ErrGone):
		return "gone"
	case errors.Is(err, meter.ErrCancelled):
		return "cancelled"
	case errors.Is(err, meter.ErrNotFound):
		return "notfound"
	}
	return "error: " + err.Error()
}

func ok(r meter.Receipt) outcome     { return outcome{class: "ok", r: r} }
func replay(r meter.Receipt) outcome { return outcome{class: "replay", r: replayed(r)} }
func fail(class string) outcome      { return outcome{class: class} }
func short(balance, price, held int64) outcome {
	return outcome{class: "insufficient", ins: meter.InsufficientError{Balance: balance, Price: price, Held: held}}
}

// propertySeed is the seed from SeedEnv, or a new one.
func propertySeed(t *testing.T) uint64 {
	if v := os.Getenv(SeedEnv); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
		return seed
	}
	return rand.Uint64()
}

func testProperty(t *testing.T, f Factory) {
	seed := propertySeed(t)
	t.Logf("seed %d (set %s=%d to replay)", seed, SeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := f(t, meter.Config{})
	s := h.Store
	accounts := []string{"p0", "p1", "p2", "p3"}
	models := map[string]*model{}
	for _, a := range accounts {
		models[a] = newModel()
	}

	const (
		shortTTL = time.Minute      // expires at the next advance
		longTTL  = 12 * time.Hour   // never expires: the advances add up to less
		advance  = 2 * time.Minute  // how far each advance moves the clock
		advances = 60               // at most this many advances: 2h in all
		badID    = "bad account id" // refused with ErrInvalid
	)
	advanced := 0
	classes := map[string]int{}
	n := func(k int) int64 { return int64(rng.IntN(k)) }
	// amount is usually in [0, k), now and then out of range.
	amount := func(k int) int64 {
		switch rng.IntN(60) {
		case 0:
			return -1 - n(3)
		case 1:
			return meter.MaxAmount + 1 + n(3)
		}
		return n(k)
	}
	// positive is usually in [1, k], now and then out of range.
	positive := func(k int) int64 {
		if v := amount(k + 1); v != 0 {
			return v
		}
		if rng.IntN(2) == 0 {
			return 0
		}
		return 1 + n(k)
	}
	ttl := func() (time.Duration, bool) {
		if !h.Slow && rng.IntN(3) == 0 {
			return shortTTL, true
		}
		return longTTL, false
	}
	bonus := func() int64 { return []int64{0, 0, 15, 40}[rng.IntN(4)] }
	reason := func() string {
		if rng.IntN(15) == 0 {
			return []string{"", "bad", meter.ReasonExpired}[rng.IntN(3)]
		}
		return []string{meter.ReasonRefundOn, meter.ReasonNotForwarded}[rng.IntN(2)]
	}

	for step := range propertySteps {
		c := ctx(t)
		a := accounts[rng.IntN(len(accounts))]
		m := models[a]
		target := a
		bad := rng.IntN(100) == 0
		if bad {
			target = badID
		}
		// Ops come from a window that moves on, so that new ops keep coming
		// and old ones are revisited. Charges and holds mostly keep to ops
		// of their own; now and then one takes the other's.
		opOf := func(prefix string) string {
			if rng.IntN(10) == 0 {
				prefix = map[string]string{"c": "h", "h": "c"}[prefix]
			}
			return fmt.Sprint(prefix, step/40+rng.IntN(8))
		}
		op := opOf([]string{"c", "h"}[rng.IntN(2)])
		// Steps after a hold or charge mostly pick one the model knows of.
		known := func(ops []string) string {
			if len(ops) == 0 || rng.IntN(4) == 0 {
				return op
			}
			return ops[rng.IntN(len(ops))]
		}
		var (
			what       string
			err        error
			got        meter.Receipt
			want       outcome
			tr         *meter.TransferReceipt
			gotLease   *meter.LeaseReceipt
			transferID string
			xfer       meter.Transfer
			xkind      string
		)
		model := func(fn func() outcome) {
			if bad {
				want = fail("invalid")
			} else {
				want = fn()
			}
		}
		switch k := rng.IntN(112); {
		case k < 18:
			ch := meter.Charge{Account: target, Op: opOf("c"), Amount: positive(8), Bonus: bonus(), Method: "GET", Route: "/p"}
			what = fmt.Sprintf("charge %+v", ch)
			got, err = s.Charge(c, ch)
			model(func() outcome { return m.charge(ch) })
		case k < 31:
			hi := positive(9)
			lo := 1 + n(int(max(min(hi, 9), 1)))
			if rng.IntN(20) == 0 {
				lo = []int64{0, hi + 1}[rng.IntN(2)]
			}
			d, isShort := ttl()
			hd := meter.Hold{Account: target, Op: opOf("h"), Max: hi, Min: lo, TTL: d, Bonus: bonus()}
			what = fmt.Sprintf("hold %+v", hd)
			got, err = s.Hold(c, hd)
			model(func() outcome { return m.hold(hd, isShort) })
		case k < 41:
			op = known(m.open())
			hi := amount(6)
			lo := min(1+n(3), hi)
			if rng.IntN(20) == 0 {
				lo = []int64{0, hi + 1}[rng.IntN(2)]
			}
			d, isShort := ttl()
			seq := int64(1)
			if o := m.ops[op]; o != nil {
				switch rng.IntN(6) {
				case 0:
					seq = o.seq - 1 // older, or invalid
				case 1:
					seq = o.seq // a replay, or invalid
				default:
					seq = o.seq + 1 + n(2) // new: seqs may skip
				}
			}
			ex := meter.Extend{Account: target, Op: op, Seq: seq, Max: hi, Min: lo, TTL: d}
			what = fmt.Sprintf("extend %+v", ex)
			got, err = s.Extend(c, ex)
			model(func() outcome { return m.extend(ex, isShort) })
		case k < 51:
			op = known(m.open())
			st := meter.Settle{Account: target, Op: op, Amount: amount(10), CutOff: rng.IntN(2) == 0}
			if h := m.holds[op]; h != nil && rng.IntN(5) != 0 {
				st.Amount = n(int(h.amount) + 2) // the hold, or one more
			} else if o := m.ops[op]; o != nil && o.state == 's' && rng.IntN(2) == 0 {
				st = o.settle // a replay
				st.Account = target
			}
			what = fmt.Sprintf("settle %+v", st)
			got, err = s.Settle(c, st)
			model(func() outcome { return m.settleOp(st) })
		case k < 58:
			rl := meter.Release{Account: target, Op: known(m.open()), Reason: reason()}
			what = fmt.Sprintf("release %+v", rl)
			got, err = s.Release(c, rl)
			model(func() outcome { return m.release(rl) })
		case k < 66:
			op = known(m.charged())
			rf := meter.Refund{Account: target, Op: op, Amount: amount(8), Reason: reason()}
			if o := m.ops[op]; o != nil && o.refund != nil && rng.IntN(3) == 0 {
				rf = *o.refund // a replay
				rf.Account = target
			} else if o != nil && o.charged() > 0 && rng.IntN(5) != 0 {
				rf.Amount = 1 + n(int(o.charged())+1) // what it charged, or one more
			}
			what = fmt.Sprintf("refund %+v", rf)
			got, err = s.Refund(c, rf)
			model(func() outcome { return m.refundOp(rf) })
		case k < 74:
			cn := meter.Cancel{Account: target, Op: op}
			if rng.IntN(25) == 0 {
				cn.Op = fmt.Sprint("l", step/200+rng.IntN(3)) // a lease's: its hold waits for its expiry
			}
			what = fmt.Sprintf("cancel %+v", cn)
			got, err = s.Cancel(c, cn)
			model(func() outcome { return m.cancelOp(cn.Op) })
		case k < 94:
			kind := meter.KindCredit
			if k >= 85 {
				kind = meter.KindDebit
			}
			// A new id, or one of a few recent ones with one of a few
			// amounts and reasons: mostly replays, now and then conflicts.
			x := meter.Transfer{Account: target, ID: fmt.Sprint("t", step), Amount: positive(20), Reason: "top up", By: "prop"}
			if rng.IntN(2) == 0 {
				x.ID = fmt.Sprint("r", step/50+rng.IntN(4))
				x.Amount = []int64{10, 10, 10, 15}[rng.IntN(4)]
				x.Reason = []string{"", "", "", "fix"}[rng.IntN(4)]
			}
			what = fmt.Sprintf("%s %+v", kind, x)
			var r meter.TransferReceipt
			if kind == meter.KindCredit {
				r, err = s.Credit(c, x)
			} else {
				r, err = s.Debit(c, x)
			}
			got = meter.Receipt{Balance: r.Balance, Replayed: r.Replayed}
			tr, transferID, xfer, xkind = &r, kind+"/"+x.ID, x, kind
			model(func() outcome { return m.transfer(kind, x) })
		case k < 98:
			rd := meter.Read{Account: target, Mode: meter.Caller, Bonus: bonus()}
			what = fmt.Sprintf("read %+v", rd)
			var acct meter.Account
			acct, err = s.Account(c, rd)
			got = meter.Receipt{Balance: acct.Balance, Held: acct.Held}
			model(func() outcome {
				m.arrive(rd.Bonus)
				return ok(meter.Receipt{Balance: m.balance(), Held: m.held()})
			})
		case k >= 100:
			d, isShort := ttl()
			l := meter.Lease{Account: target, Op: fmt.Sprint("l", step/200+rng.IntN(3)), Seq: 1, TTL: d, Drain: 24 * time.Hour}
			if rng.IntN(10) == 0 {
				l.Op = opOf("c") // a charge's or a hold's op
			}
			o := m.ops[l.Op]
			switch {
			case o != nil && o.lease != nil:
				switch rng.IntN(8) {
				case 0:
					l.Seq = o.lease.seq - 1 // older, or invalid
				case 1:
					l.Seq = o.lease.seq // a replay
				default:
					l.Seq = o.lease.seq + 1 + n(2) // new: seqs may skip
				}
				var held int64
				if hd := m.holds[l.Op]; hd != nil {
					held = hd.amount
				}
				for range rng.IntN(3) {
					l.Charges = append(l.Charges, meter.LeaseCharge{Method: "GET", Route: fmt.Sprint("/r", n(2)), Amount: 1 + n(int(held/3)+1), Count: 1 + n(3)})
				}
				if l.Seq > 2 && rng.IntN(3) == 0 {
					rseq := 2 + n(int(l.Seq-2))
					if rng.IntN(20) == 0 {
						rseq = []int64{1, l.Seq}[rng.IntN(2)]
					}
					l.Refunds = append(l.Refunds, meter.LeaseRefund{Seq: rseq, Amount: 1 + n(3), Count: 1 + n(2)})
				}
				switch rng.IntN(6) {
				case 0:
					l.Grow = 1 + n(8)
				case 1:
					l.Shrink = n(int(held) + 2)
				case 2:
					l.Close = true
				case 3:
					if rng.IntN(10) == 0 {
						l.Grow, l.Shrink = 1, 1 // invalid
					}
				}
			case o != nil && rng.IntN(2) == 0:
				l.Seq = 2 // of a charge's or a hold's op
			case o == nil && rng.IntN(8) == 0:
				l.Seq = 2 + n(3) // never taken
			default:
				l.Grow = n(10) // 0 is invalid
			}
			what = fmt.Sprintf("lease %+v", l)
			var r meter.LeaseReceipt
			r, err = s.Lease(c, l)
			got, gotLease = meter.Receipt{Replayed: r.Replayed}, &r
			model(func() outcome { return m.leaseCall(l, isShort) })
		default:
			if h.Slow || advanced == advances || bad {
				continue
			}
			advanced++
			what = "advance"
			h.Advance(t, advance)
			for _, id := range accounts {
				models[id].advance(advance)
			}
			want = ok(meter.Receipt{})
		}

		class := classOf(err, got.Replayed)
		if class != want.class {
			t.Fatalf("step %d on %s, %s: %s (%v), the model says %s", step, a, what, class, err, want.class)
		}
		switch {
		case want.loose:
		case gotLease != nil && (class == "ok" || class == "replay"):
			r := *gotLease
			if r.Expires.IsZero() != (r.Held == 0) {
				t.Fatalf("step %d on %s, %s: receipt %+v: an expiry with nothing held, or none with tokens held", step, a, what, r)
			}
			if r.Expires = (time.Time{}); r != want.lease {
				t.Fatalf("step %d on %s, %s: receipt %+v, the model says %+v", step, a, what, r, want.lease)
			}
		case class == "ok" || class == "replay":
			if !sameReceipt(withoutExpiry(got), want.r) {
				t.Fatalf("step %d on %s, %s: receipt %+v, the model says %+v", step, a, what, got, want.r)
			}
		case class == "insufficient":
			var ie *meter.InsufficientError
			if !errors.As(err, &ie) || *ie != want.ins {
				t.Fatalf("step %d on %s, %s: %v, the model says %+v", step, a, what, err, want.ins)
			}
		}
		if tr != nil && err == nil {
			checkTransfer(t, step, what, xkind, xfer, *tr, m.ids[transferID])
		}
		classes[strings.Fields(what)[0]+" "+class]++

		// The totals after every step; the whole ledger every 200.
		if m.exists {
			got := account(t, s, a)
			invariantHolds(t, got)
			want := meter.Account{Balance: m.balance(), Held: m.held(), Credited: m.cr, Charged: m.ch, Debited: m.de, Refunded: m.rf}
			if totals(got) != want {
				t.Fatalf("step %d on %s, %s: totals %+v, the model says %+v", step, a, what, totals(got), want)
			}
		} else {
			_, err := s.Account(c, meter.Read{Account: a})
			if !errors.Is(err, meter.ErrNotFound) {
				t.Fatalf("step %d on %s, %s: operator read of an account the model has not seen: %v, want not found", step, a, what, err)
			}
		}
		if step%200 == 199 || step == propertySteps-1 {
			for _, id := range accounts {
				if !models[id].exists {
					continue
				}
				if e := checkInvariant(t, s, id, false); len(e) != models[id].entries {
					t.Fatalf("step %d: %s has %d ledger entries, the model says %d", step, id, len(e), models[id].entries)
				}
			}
		}
	}

	seen := walkAccounts(t, s, 3)
	for _, id := range accounts {
		if seen[id] != models[id].exists {
			t.Errorf("account %s listed %v, the model says it exists: %v", id, seen[id], models[id].exists)
		}
	}
	if len(seen) > len(accounts) {
		t.Errorf("listed %v, more than the %d accounts", seen, len(accounts))
	}
	verifiesClean(t, s, len(seen))
	keys := slices.Sorted(maps.Keys(classes))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s:%d", k, classes[k])
	}
	for _, id := range accounts {
		fmt.Fprintf(&b, "; %s balance %d", id, models[id].balance())
	}
	t.Logf("%d steps, %d advances; results%s", propertySteps, advanced, b.String())
}

// withoutExpiry drops a receipt's expiry, which the model does not predict.
func withoutExpiry(r meter.Receipt) meter.Receipt {
	r.Expires = time.Time{}
	return r
}

// checkTransfer checks a transfer receipt: a first one against the transfer,
// a replay against the first, which the model's record of the id keeps.
func checkTransfer(t *testing.T, step int, what, kind string, x meter.Transfer, got meter.TransferReceipt, rec *modelTransfer) {
	t.Helper()
	if rec == nil {
		t.Fatalf("step %d, %s: the model holds no record", step, what)
	}
	if !got.Replayed {
		e := got.Entry
		if got.Account != x.Account || e.Kind != kind || e.Amount != x.Amount || e.Op != x.ID || e.Balance != got.Balance ||
			e.Detail.Reason != x.Reason || e.Detail.By != x.By || e.ID == "" {
			t.Fatalf("step %d, %s: receipt %+v", step, what, got)
		}
		rec.first = got
		return
	}
	want := rec.first
	want.Replayed = true
	if !sameTransfer(got, want) {
		t.Fatalf("step %d, %s: replay %+v, first %+v", step, what, got, rec.first)
	}
}

func (m *model) charge(ch meter.Charge) outcome {
	if ch.Amount < 1 || ch.Amount > meter.MaxAmount {
		return fail("invalid")
	}
	m.arrive(ch.Bonus)
	if o := m.ops[ch.Op]; o != nil {
		if o.kind == 'x' || o.cancelled {
			return fail("cancelled")
		}
		if o.kind != 'c' {
			return fail("conflict")
		}
		return replay(o.first)
	}
	if bal := m.balance(); bal < ch.Amount {
		return m.refuse(bal, ch.Amount)
	}
	m.ch += ch.Amount
	m.entries++
	r := meter.Receipt{Amount: ch.Amount, Balance: m.balance()}
	m.ops[ch.Op] = &modelOp{kind: 'c', first: r}
	return ok(r)
}

// refuse is a charge or hold refused for the balance: it marks the account
// draining while tokens are held, and reports it depleted once an hour.
func (m *model) refuse(bal, price int64) outcome {
	m.drained = m.drained || m.held() > 0
	o := short(bal, price, m.held())
	if m.depleted == nil || m.now-*m.depleted >= time.Hour {
		now := m.now
		m.depleted, o.ins.Depleted = &now, true
	}
	return o
}

func (m *model) hold(h meter.Hold, isShort bool) outcome {
	if h.Max < 1 || h.Max > meter.MaxAmount || h.Min < 1 || h.Min > h.Max {
		return fail("invalid")
	}
	m.arrive(h.Bonus)
	if o := m.ops[h.Op]; o != nil {
		if o.kind == 'x' || o.cancelled {
			return fail("cancelled")
		}
		if o.kind != 'h' {
			return fail("conflict")
		}
		return replay(o.first)
	}
	bal := m.balance()
	add := min(h.Max, bal)
	if add < h.Min {
		return m.refuse(bal, h.Min)
	}
	m.holds[h.Op] = &modelHold{amount: add, short: isShort}
	m.entries++
	r := meter.Receipt{Amount: add, Held: add, Balance: m.balance()}
	m.ops[h.Op] = &modelOp{kind: 'h', state: 'o', first: r}
	return ok(r)
}

// open returns the ops of the open holds, sorted.
func (m *model) open() []string {
	return slices.Sorted(maps.Keys(m.holds))
}

// charged returns the ops that charged something, sorted.
func (m *model) charged() []string {
	var ops []string
	for op, o := range m.ops {
		if o.charged() > 0 {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops)
	return ops
}

// openHold returns the op's record and open hold, or the outcome that says why
// there is none.
func (m *model) openHold(op string) (*modelOp, *modelHold, *outcome) {
	o := m.ops[op]
	var why outcome
	switch {
	case o == nil:
		why = fail("notfound")
	case o.kind == 'x' || o.cancelled:
		why = fail("cancelled")
	case o.kind != 'h':
		why = fail("conflict")
	case o.state != 'o':
		why = fail("gone")
	default:
		return o, m.holds[op], nil
	}
	return nil, nil, &why
}

func (m *model) extend(e meter.Extend, isShort bool) outcome {
	if e.Seq < 1 || e.Max < 0 || e.Max > meter.MaxAmount || e.Min < 0 || e.Min > e.Max || (e.Max > 0 && e.Min < 1) {
		return fail("invalid")
	}
	o, h, why := m.openHold(e.Op)
	if why != nil {
		return *why
	}
	if e.Seq == o.seq {
		return replay(o.seqRcpt)
	}
	if e.Seq < o.seq {
		// An older extension changes nothing; what it replies is left to
		// the store.
		return outcome{class: "replay", loose: true}
	}
	bal := m.balance()
	add := min(e.Max, bal)
	if add < e.Min {
		return short(bal, e.Min, m.held())
	}
	h.amount += add
	h.short = isShort
	if add > 0 {
		m.entries++
	}
	r := meter.Receipt{Amount: add, Held: h.amount, Balance: m.balance()}
	o.seq, o.seqRcpt = e.Seq, r
	return ok(r)
}

func (m *model) settleOp(st meter.Settle) outcome {
	if st.Amount < 0 || st.Amount > meter.MaxAmount {
		return fail("invalid")
	}
	if o := m.ops[st.Op]; o != nil && o.kind == 'h' && o.state == 's' && !o.cancelled {
		if o.settle != st {
			return fail("conflict")
		}
		return replay(o.settled)
	}
	o, h, why := m.openHold(st.Op)
	if why != nil {
		return *why
	}
	if st.Amount > h.amount {
		return fail("invalid")
	}
	delete(m.holds, st.Op)
	m.ch += st.Amount
	m.entries++
	r := meter.Receipt{Amount: st.Amount, Released: h.amount - st.Amount, Balance: m.balance()}
	o.state, o.settle, o.settled = 's', st, r
	return ok(r)
}

func (m *model) release(rl meter.Release) outcome {
	if rl.Reason != meter.ReasonRefundOn && rl.Reason != meter.ReasonNotForwarded {
		return fail("invalid")
	}
	if o := m.ops[rl.Op]; o != nil && o.kind == 'h' && o.state == 'r' && !o.cancelled {
		return replay(o.released)
	}
	o, h, why := m.openHold(rl.Op)
	if why != nil {
		return *why
	}
	delete(m.holds, rl.Op)
	m.entries++
	r := meter.Receipt{Amount: h.amount, Balance: m.balance()}
	o.state, o.released = 'r', r
	return ok(r)
}

// charged returns what the op charged, or -1 when it charged nothing.
func (o *modelOp) charged() int64 {
	switch {
	case o.kind == 'c':
		return o.first.Amount
	case o.kind == 'h' && o.state == 's':
		return o.settled.Amount
	}
	return -1
}

func (m *model) refundOp(rf meter.Refund) outcome {
	if rf.Amount < 1 || rf.Amount > meter.MaxAmount || (rf.Reason != meter.ReasonRefundOn && rf.Reason != meter.ReasonNotForwarded) {
		return fail("invalid")
	}
	o := m.ops[rf.Op]
	switch {
	case o == nil:
		return fail("notfound")
	case o.kind == 'x' || o.cancelled:
		return fail("cancelled")
	case o.refund != nil:
		if *o.refund != rf {
			return fail("conflict")
		}
		return replay(o.refunded)
	}
	if charged := o.charged(); charged < 0 || rf.Amount > charged {
		return fail("invalid")
	}
	m.rf += rf.Amount
	m.entries++
	r := meter.Receipt{Amount: rf.Amount, Balance: m.balance()}
	o.refund, o.refunded = &rf, r
	return ok(r)
}

func (m *model) cancelOp(op string) outcome {
	o := m.ops[op]
	if o == nil {
		r := meter.Receipt{Balance: m.balance()}
		m.ops[op] = &modelOp{kind: 'x', cancel: r}
		return ok(r)
	}
	if o.kind == 'x' || o.cancelled {
		return replay(o.cancel)
	}
	var back int64
	if h := m.holds[op]; o.kind == 'h' && h != nil {
		delete(m.holds, op)
		back = h.amount
		m.entries++
	} else if charged := o.charged(); charged > 0 {
		if o.refund != nil {
			charged -= o.refund.Amount
		}
		if charged > 0 {
			back = charged
			m.rf += back
			m.entries++
		}
	}
	r := meter.Receipt{Amount: back, Balance: m.balance()}
	o.cancelled, o.cancel = true, r
	return ok(r)
}

func (m *model) transfer(kind string, x meter.Transfer) outcome {
	if x.Amount < 1 || x.Amount > meter.MaxAmount {
		return fail("invalid")
	}
	m.exists = true
	key := kind + "/" + x.ID
	if prev := m.ids[key]; prev != nil {
		if prev.amount != x.Amount || prev.reason != x.Reason {
			return fail("conflict")
		}
		return replay(meter.Receipt{Balance: prev.first.Balance})
	}
	bal := m.balance()
	if kind == meter.KindDebit {
		if bal < x.Amount {
			return short(bal, x.Amount, m.held())
		}
		m.de += x.Amount
	} else {
		m.cr += x.Amount
	}
	m.entries++
	m.ids[key] = &modelTransfer{amount: x.Amount, reason: x.Reason}
	return ok(meter.Receipt{Balance: m.balance()})
}

// leaseCall models a call on a lease. Its Drain outlasts the whole test, so
// a lease reports draining once any charge or hold of the account was
// refused while tokens were held.
func (m *model) leaseCall(l meter.Lease, isShort bool) outcome {
	if !validLease(l) {
		return fail("invalid")
	}
	o := m.ops[l.Op]
	if o == nil {
		if l.Seq != 1 {
			return fail("notfound")
		}
		m.exists = true
		bal := m.balance()
		add := min(l.Grow, bal)
		if add < 1 {
			return short(bal, 1, m.held())
		}
		m.holds[l.Op] = &modelHold{amount: add, short: isShort}
		m.entries++
		r := meter.LeaseReceipt{Added: add, Held: add, Balance: m.balance()}
		m.ops[l.Op] = &modelOp{kind: 'l', state: 'o', lease: &modelLease{seq: 1, last: r}}
		return leaseOutcome("ok", r)
	}
	switch {
	case o.kind == 'x' || o.cancelled:
		return fail("cancelled")
	case o.kind != 'l':
		return fail("conflict")
	}
	ml, h := o.lease, m.holds[l.Op]
	switch {
	case l.Seq == ml.seq:
		r := ml.last
		r.Replayed = true
		return leaseOutcome("replay", r)
	case l.Seq < ml.seq:
		r := meter.LeaseReceipt{Balance: m.balance(), Replayed: true}
		if h != nil {
			r.Held = h.amount
		}
		return leaseOutcome("replay", r)
	case o.state != 'o' || (h == nil && !ml.dormant):
		// A closed or expired lease takes refunds alone.
		if len(l.Charges) > 0 || len(l.Refunds) == 0 || l.Grow > 0 || l.Shrink > 0 || l.Close {
			return fail("gone")
		}
		var refund int64
		for _, rf := range l.Refunds {
			refund += rf.Amount
		}
		if refund > ml.charged-ml.refunded {
			return fail("invalid")
		}
		m.rf += refund
		m.entries += len(l.Refunds)
		ml.refunded += refund
		r := meter.LeaseReceipt{Refunded: refund, Balance: m.balance()}
		ml.seq, ml.last = l.Seq, r
		return leaseOutcome("ok", r)
	}
	if h == nil {
		h = &modelHold{}
	}
	var charge, refund int64
	for _, c := range l.Charges {
		charge += c.Amount
	}
	for _, rf := range l.Refunds {
		refund += rf.Amount
	}
	if charge > h.amount || refund > ml.charged+charge-ml.refunded || l.Shrink > h.amount-charge {
		return fail("invalid")
	}
	m.holds[l.Op] = h
	h.amount -= charge
	m.ch += charge
	m.rf += refund
	m.entries += len(l.Charges) + len(l.Refunds)
	ml.charged += charge
	ml.refunded += refund
	r := meter.LeaseReceipt{Charged: charge, Refunded: refund}
	switch {
	case l.Close:
		r.Released = h.amount
	case l.Shrink > 0:
		r.Released = l.Shrink
	case l.Grow > 0:
		r.Added = min(l.Grow, m.balance())
	}
	h.amount += r.Added - r.Released
	if r.Added > 0 {
		m.entries++
	}
	if r.Released > 0 {
		m.entries++
	}
	h.short = isShort
	ml.dormant = !l.Close && h.amount == 0
	if l.Close {
		o.state = 'c'
	}
	if h.amount == 0 {
		delete(m.holds, l.Op)
	}
	r.Held, r.Balance, r.Draining = h.amount, m.balance(), m.drained
	ml.seq, ml.last = l.Seq, r
	return leaseOutcome("ok", r)
}

// validLease reports whether the store takes a lease call's arguments, for
// the calls the property test makes.
func validLease(l meter.Lease) bool {
	if l.Seq < 1 || (l.Grow > 0 && l.Shrink > 0) {
		return false
	}
	if l.Seq == 1 && (l.Grow < 1 || l.Shrink > 0 || l.Close || len(l.Charges) > 0 || len(l.Refunds) > 0) {
		return false
	}
	for _, rf := range l.Refunds {
		if rf.Seq < 2 || rf.Seq >= l.Seq {
			return false
		}
	}
	return true
}

func leaseOutcome(class string, r meter.LeaseReceipt) outcome {
	return outcome{class: class, lease: r}
}
