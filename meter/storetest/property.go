package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// model is an independent, plain account model the store is checked against.
type model struct {
	exists, arrived    bool
	cr, ch, de, rf, hd int64
	holds              map[string]int64 // open holds
	ops                map[string]*modelOp
	ids                map[string]modelTransfer // "credit/id" or "debit/id"
}

type modelOp struct {
	kind      byte // 'c', 'h', 'x'
	state     byte // 'o', 's', 'r' for holds
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
}

type modelTransfer struct {
	amount  int64
	reason  string
	balance int64
}

func (m *model) balance() int64 { return m.cr - m.ch - m.de + m.rf - m.hd }

func (m *model) arrive(bonus int64) {
	m.exists = true
	if !m.arrived {
		m.arrived = true
		m.cr += bonus
	}
}

// outcome is a result class and the receipt fields the model predicts.
type outcome struct {
	class string // ok, replay, insufficient, invalid, conflict, gone, cancelled, notfound
	r     meter.Receipt
}

func classOf(err error, r meter.Receipt) string {
	switch {
	case err == nil && r.Replayed:
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

func replay(r meter.Receipt) outcome {
	r.Replayed = true
	return outcome{"replay", r}
}

func testProperty(t *testing.T, f Factory) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 42))
	s, _ := fresh(t, f)
	c := ctx(t)
	const bonus = 20
	accounts := []string{"p0", "p1", "p2", "p3"}
	models := map[string]*model{}
	for _, a := range accounts {
		models[a] = &model{holds: map[string]int64{}, ops: map[string]*modelOp{}, ids: map[string]modelTransfer{}}
	}
	steps := 3000
	for step := range steps {
		a := accounts[rng.IntN(len(accounts))]
		m := models[a]
		op := fmt.Sprint("o", rng.IntN(12))
		n := func(k int) int64 { return int64(rng.IntN(k)) }
		var (
			want, got outcome
			what      string
			err       error
		)
		switch rng.IntN(10) {
		case 0, 1:
			amount := n(7)
			what = fmt.Sprintf("charge %s %d", op, amount)
			got.r, err = s.Charge(c, meter.Charge{Account: a, Op: op, Amount: amount, Bonus: bonus})
			want = m.charge(op, amount, bonus)
		case 2:
			hi := n(7)
			lo := n(int(hi) + 2)
			what = fmt.Sprintf("hold %s up to %d at least %d", op, hi, lo)
			got.r, err = s.Hold(c, meter.Hold{Account: a, Op: op, Max: hi, Min: lo, TTL: time.Hour, Bonus: bonus})
			want = m.hold(op, hi, lo, bonus)
		case 3:
			seq, hi := n(4), n(5)
			lo := n(int(hi) + 1)
			what = fmt.Sprintf("extend %s seq %d up to %d at least %d", op, seq, hi, lo)
			got.r, err = s.Extend(c, meter.Extend{Account: a, Op: op, Seq: seq, Max: hi, Min: lo, TTL: time.Hour})
			want = m.extend(op, seq, hi, lo)
		case 4:
			st := meter.Settle{Account: a, Op: op, Amount: n(9), CutOff: rng.IntN(2) == 0}
			what = fmt.Sprintf("settle %s %d", op, st.Amount)
			got.r, err = s.Settle(c, st)
			want = m.settleOp(st)
		case 5:
			reason := []string{meter.ReasonRefundOn, meter.ReasonNotForwarded, "bad"}[rng.IntN(3)]
			what = fmt.Sprintf("release %s %s", op, reason)
			got.r, err = s.Release(c, meter.Release{Account: a, Op: op, Reason: reason})
			want = m.release(op, reason)
		case 6:
			rf := meter.Refund{Account: a, Op: op, Amount: n(7), Reason: []string{meter.ReasonRefundOn, meter.ReasonNotForwarded}[rng.IntN(2)]}
			what = fmt.Sprintf("refund %s %d", op, rf.Amount)
			got.r, err = s.Refund(c, rf)
			want = m.refundOp(rf)
		case 7:
			what = "cancel " + op
			got.r, err = s.Cancel(c, meter.Cancel{Account: a, Op: op})
			want = m.cancelOp(op)
		default:
			kind := []string{meter.KindCredit, meter.KindDebit}[rng.IntN(2)]
			tr := meter.Transfer{Account: a, ID: fmt.Sprint("id", rng.IntN(6)), Amount: n(25), Reason: []string{"", "x"}[rng.IntN(2)]}
			what = fmt.Sprintf("%s %s %d %q", kind, tr.ID, tr.Amount, tr.Reason)
			var tr2 meter.TransferReceipt
			if kind == meter.KindCredit {
				tr2, err = s.Credit(c, tr)
			} else {
				tr2, err = s.Debit(c, tr)
			}
			got.r = meter.Receipt{Balance: tr2.Balance, Replayed: tr2.Replayed}
			want = m.transfer(kind, tr)
		}
		got.class = classOf(err, got.r)
		if got.class != want.class {
			t.Fatalf("step %d on %s, %s: %s (%v), model says %s", step, a, what, got.class, err, want.class)
		}
		got.r.Expires = time.Time{}
		if (got.class == "ok" || got.class == "replay") && got.r != want.r {
			t.Fatalf("step %d on %s, %s: receipt %+v, model says %+v", step, a, what, got.r, want.r)
		}
		if m.exists {
			got := account(t, s, a)
			if got.Credited != m.cr || got.Charged != m.ch || got.Debited != m.de || got.Refunded != m.rf || got.Held != m.hd || got.Balance != m.balance() {
				t.Fatalf("step %d on %s, %s: totals %+v, model says cr %d ch %d de %d rf %d hd %d", step, a, what, got, m.cr, m.ch, m.de, m.rf, m.hd)
			}
		}
		if step%500 == 499 {
			for _, id := range accounts {
				if models[id].exists {
					checkInvariant(t, s, id, false)
				}
			}
		}
	}
}

func (m *model) charge(op string, amount, bonus int64) outcome {
	if amount < 1 {
		return outcome{class: "invalid"}
	}
	m.arrive(bonus)
	if o := m.ops[op]; o != nil {
		if o.kind == 'x' || o.cancelled {
			return outcome{class: "cancelled"}
		}
		if o.kind != 'c' {
			return outcome{class: "conflict"}
		}
		return replay(o.first)
	}
	if m.balance() < amount {
		return outcome{class: "insufficient"}
	}
	m.ch += amount
	r := meter.Receipt{Amount: amount, Balance: m.balance()}
	m.ops[op] = &modelOp{kind: 'c', first: r}
	return outcome{"ok", r}
}

func (m *model) hold(op string, hi, lo, bonus int64) outcome {
	if hi < 1 || lo < 1 || lo > hi {
		return outcome{class: "invalid"}
	}
	m.arrive(bonus)
	if o := m.ops[op]; o != nil {
		if o.kind == 'x' || o.cancelled {
			return outcome{class: "cancelled"}
		}
		if o.kind != 'h' {
			return outcome{class: "conflict"}
		}
		return replay(o.first)
	}
	add := min(hi, m.balance())
	if add < lo {
		return outcome{class: "insufficient"}
	}
	m.hd += add
	m.holds[op] = add
	r := meter.Receipt{Amount: add, Held: add, Balance: m.balance()}
	m.ops[op] = &modelOp{kind: 'h', state: 'o', first: r}
	return outcome{"ok", r}
}

// open returns the op's open hold, or the outcome that says why there is
// none.
func (m *model) open(op string) (*modelOp, *outcome) {
	o := m.ops[op]
	switch {
	case o == nil:
		return nil, &outcome{class: "notfound"}
	case o.kind == 'x' || o.cancelled:
		return nil, &outcome{class: "cancelled"}
	case o.kind != 'h':
		return nil, &outcome{class: "conflict"}
	case o.state != 'o':
		return nil, &outcome{class: "gone"}
	}
	return o, nil
}

func (m *model) extend(op string, seq, hi, lo int64) outcome {
	if seq < 1 || lo > hi || (hi > 0 && lo < 1) {
		return outcome{class: "invalid"}
	}
	o, why := m.open(op)
	if why != nil {
		return *why
	}
	if seq == o.seq {
		return replay(o.seqRcpt)
	}
	if seq < o.seq {
		return replay(meter.Receipt{Held: m.holds[op], Balance: m.balance()})
	}
	add := min(hi, m.balance())
	if add < lo {
		return outcome{class: "insufficient"}
	}
	m.hd += add
	m.holds[op] += add
	r := meter.Receipt{Amount: add, Held: m.holds[op], Balance: m.balance()}
	o.seq, o.seqRcpt = seq, r
	return outcome{"ok", r}
}

func (m *model) settleOp(st meter.Settle) outcome {
	if o := m.ops[st.Op]; o != nil && o.kind == 'h' && o.state == 's' && !o.cancelled {
		if o.settle != st {
			return outcome{class: "conflict"}
		}
		return replay(o.settled)
	}
	o, why := m.open(st.Op)
	if why != nil {
		return *why
	}
	held := m.holds[st.Op]
	if st.Amount > held {
		return outcome{class: "invalid"}
	}
	delete(m.holds, st.Op)
	m.hd -= held
	m.ch += st.Amount
	r := meter.Receipt{Amount: st.Amount, Released: held - st.Amount, Balance: m.balance()}
	o.state, o.settle, o.settled = 's', st, r
	return outcome{"ok", r}
}

func (m *model) release(op, reason string) outcome {
	if reason != meter.ReasonRefundOn && reason != meter.ReasonNotForwarded {
		return outcome{class: "invalid"}
	}
	if o := m.ops[op]; o != nil && o.kind == 'h' && o.state == 'r' && !o.cancelled {
		return replay(o.released)
	}
	o, why := m.open(op)
	if why != nil {
		return *why
	}
	held := m.holds[op]
	delete(m.holds, op)
	m.hd -= held
	r := meter.Receipt{Amount: held, Balance: m.balance()}
	o.state, o.released = 'r', r
	return outcome{"ok", r}
}

func (m *model) refundOp(rf meter.Refund) outcome {
	if rf.Amount < 1 {
		return outcome{class: "invalid"}
	}
	o := m.ops[rf.Op]
	switch {
	case o == nil:
		return outcome{class: "notfound"}
	case o.kind == 'x' || o.cancelled:
		return outcome{class: "cancelled"}
	case o.refund != nil:
		if *o.refund != rf {
			return outcome{class: "conflict"}
		}
		return replay(o.refunded)
	}
	charged := o.charged()
	if charged < 0 || rf.Amount > charged {
		return outcome{class: "invalid"}
	}
	m.rf += rf.Amount
	r := meter.Receipt{Amount: rf.Amount, Balance: m.balance()}
	o.refund, o.refunded = &rf, r
	return outcome{"ok", r}
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

func (m *model) cancelOp(op string) outcome {
	o := m.ops[op]
	if o == nil {
		r := meter.Receipt{Balance: m.balance()}
		m.ops[op] = &modelOp{kind: 'x', cancel: r}
		return outcome{"ok", r}
	}
	if o.kind == 'x' || o.cancelled {
		return replay(o.cancel)
	}
	var back int64
	if held, open := m.holds[op]; o.kind == 'h' && open {
		delete(m.holds, op)
		m.hd -= held
		back = held
	} else if charged := o.charged(); charged > 0 {
		if o.refund != nil {
			charged -= o.refund.Amount
		}
		back = max(charged, 0)
		m.rf += back
	}
	r := meter.Receipt{Amount: back, Balance: m.balance()}
	o.cancelled, o.cancel = true, r
	return outcome{"ok", r}
}

func (m *model) transfer(kind string, tr meter.Transfer) outcome {
	if tr.Amount < 1 {
		return outcome{class: "invalid"}
	}
	m.exists = true
	key := kind + "/" + tr.ID
	if prev, ok := m.ids[key]; ok {
		if prev.amount != tr.Amount || prev.reason != tr.Reason {
			return outcome{class: "conflict"}
		}
		return replay(meter.Receipt{Balance: prev.balance})
	}
	if kind == meter.KindDebit {
		if m.balance() < tr.Amount {
			return outcome{class: "insufficient"}
		}
		m.de += tr.Amount
	} else {
		m.cr += tr.Amount
	}
	m.ids[key] = modelTransfer{tr.Amount, tr.Reason, m.balance()}
	return outcome{"ok", meter.Receipt{Balance: m.balance()}}
}
