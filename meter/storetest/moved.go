package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// moves records what Config.Moved reports.
type moves struct {
	mu   sync.Mutex
	list []string
}

func (m *moves) add(account string, before, after int64) {
	m.mu.Lock()
	m.list = append(m.list, fmt.Sprintf("%s %d>%d", account, before, after))
	m.mu.Unlock()
}

// take returns what was reported since the last take.
func (m *moves) take() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.list
	m.list = nil
	return l
}

// testMoved checks that every operation that changes balance + held
// reports the change once, with the sums before and after, and that no
// other operation, and no replay, reports anything.
func testMoved(t *testing.T, f Factory) {
	var m moves
	h := f(t, meter.Config{Moved: m.add})
	s, c := h.Store, ctx(t)
	expect := func(what string, want ...string) {
		t.Helper()
		if got := m.take(); !slices.Equal(got, want) {
			t.Errorf("%s: moves %q, want %q", what, got, want)
		}
	}
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "c1", Amount: 100}))(t)
	expect("a credit", "alice 0>100")
	must(s.Credit(c, meter.Transfer{Account: "alice", ID: "c1", Amount: 100}))(t)
	expect("a replayed credit")
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "o1", Amount: 30}))(t)
	expect("a charge", "alice 100>70")
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "o1", Amount: 30}))(t)
	expect("a replayed charge")
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 20, Min: 1, TTL: time.Minute}))(t)
	expect("a hold")
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h1", Amount: 5}))(t)
	expect("a settle", "alice 70>65")
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "o1", Amount: 30, Reason: meter.ReasonRefundOn}))(t)
	expect("a refund", "alice 65>95")
	must(s.Account(c, meter.Read{Account: "alice"}))(t)
	expect("a read")
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 1, TTL: time.Minute, Grow: 50}))(t)
	expect("a lease taken")
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 2, TTL: time.Minute, Close: true,
		Charges: []meter.LeaseCharge{{Method: "GET", Route: "/", Amount: 9, Count: 3}}}))(t)
	expect("a lease's charges", "alice 95>86")
	must(s.Debit(c, meter.Transfer{Account: "alice", ID: "d1", Amount: 6}))(t)
	expect("a debit", "alice 86>80")
	must(s.Account(c, meter.Read{Account: "bob", Mode: meter.Caller, Bonus: 7}))(t)
	expect("a caller's arrival with a bonus", "bob 0>7")

	// A refusal reports the account depleted once an hour, and moves
	// nothing.
	for i, want := range []bool{true, false, false} {
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: fmt.Sprint("big", i), Amount: 1000})
		var short *meter.InsufficientError
		if !errors.As(err, &short) || short.Depleted != want {
			t.Errorf("refusal %d: %v (depleted %v), want depleted %v", i+1, err, short != nil && short.Depleted, want)
		}
	}
	_, err := s.Hold(c, meter.Hold{Account: "bob", Op: "big", Max: 1000, Min: 1000, TTL: time.Minute})
	var short *meter.InsufficientError
	if !errors.As(err, &short) || !short.Depleted {
		t.Errorf("bob's first refusal: %v, want depleted", err)
	}
	expect("refusals")
	if !h.Slow {
		h.Advance(t, time.Hour)
		_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "big-later", Amount: 1000})
		if !errors.As(err, &short) || !short.Depleted {
			t.Errorf("a refusal an hour later: %v, want depleted", err)
		}
	}
}
