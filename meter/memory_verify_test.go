package meter

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// tamper changes an account's stored state under its lock, as a stray write
// would.
func (m *Memory) tamper(t *testing.T, id string, fn func(*memAccount)) {
	t.Helper()
	m.mu.RLock()
	a := m.accounts[id]
	m.mu.RUnlock()
	if a == nil {
		t.Fatalf("no account %q to tamper with", id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(a)
}

// memState is a copy of everything the memory store keeps of an account.
type memState struct {
	totals      totals
	holds       map[string]memHold
	ledger      []Entry
	ledgerStart int
	added       int64
	ops         []string
}

// state copies what the store keeps of an account.
func (m *Memory) state(t *testing.T, id string) memState {
	t.Helper()
	var s memState
	m.tamper(t, id, func(a *memAccount) {
		s = memState{
			totals:      totals{a.credited, a.charged, a.debited, a.refunded, a.held},
			holds:       map[string]memHold{},
			ledger:      slices.Clone(a.ledger),
			ledgerStart: a.ledgerStart,
			added:       a.added,
			ops:         slices.Sorted(maps.Keys(a.ops)),
		}
		for op, h := range a.holds {
			s.holds[op] = *h
		}
	})
	return s
}

// verifyUnchanged verifies an account and checks that doing so changed
// nothing the store keeps. It returns what verify found.
func verifyUnchanged(t *testing.T, m *Memory, id string) Check {
	t.Helper()
	before := m.state(t, id)
	c, err := m.Verify(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if after := m.state(t, id); !reflect.DeepEqual(after, before) {
		t.Errorf("verify changed %s from %+v to %+v", id, before, after)
	}
	return c
}

// memHistory gives alice a credit, a charge, a settled hold and an open one.
func memHistory(t *testing.T, m *Memory) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Credit(ctx, Transfer{Account: "alice", ID: "order-1", Amount: 100}))
	must(m.Charge(ctx, Charge{Account: "alice", Op: "c", Amount: 5}))
	must(m.Hold(ctx, Hold{Account: "alice", Op: "s", Max: 6, Min: 1, TTL: time.Hour}))
	must(m.Settle(ctx, Settle{Account: "alice", Op: "s", Amount: 4}))
	must(m.Hold(ctx, Hold{Account: "alice", Op: "h", Max: 10, Min: 1, TTL: time.Hour}))
}

func TestMemoryVerifyFindsDrift(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*Memory, *memAccount)
		want []string
	}{
		{"credited raised", func(_ *Memory, a *memAccount) { a.credited += 5 }, []string{CheckLedger}},
		{"held raised", func(_ *Memory, a *memAccount) { a.held += 3 }, []string{CheckHeld, CheckLedger}},
		{"an open hold changed", func(_ *Memory, a *memAccount) { a.holds["h"].amount = 11 }, []string{CheckHeld, CheckLedger}},
		{"a stray entry", func(m *Memory, a *memAccount) {
			a.add(m.config(), m.cfg.Now().UnixMilli(), Entry{Kind: KindCredit, Amount: 5, Op: "stray"})
		}, []string{CheckEntryBalance, CheckLedger}},
		{"overspent", func(_ *Memory, a *memAccount) { a.charged += 200 }, []string{CheckNegative, CheckLedger}},
		{"a total out of range", func(_ *Memory, a *memAccount) { a.refunded = MaxAmount + 1 }, []string{CheckTotals, CheckLedger}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := NewMemory(Config{})
			memHistory(t, m)
			if got := verifyUnchanged(t, m, "alice"); len(got.Drift) != 0 || !got.WholeLedger {
				t.Fatalf("verify before tampering: %+v, want no drift", got)
			}
			m.tamper(t, "alice", func(a *memAccount) { c.edit(m, a) })
			got := verifyUnchanged(t, m, "alice")
			if names := checks(got.Drift); !slices.Equal(names, c.want) {
				t.Errorf("drift %+v, want checks %q", got.Drift, c.want)
			}
		})
	}
}

func TestMemoryVerifyLeavesExpiredHolds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemory(Config{Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := m.Hold(ctx, Hold{Account: "alice", Op: "h", Max: 5, Min: 1, TTL: time.Second, Bonus: 10}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if got := verifyUnchanged(t, m, "alice"); len(got.Drift) != 0 {
		t.Errorf("verify with an expired hold: %+v, want no drift", got)
	}
	if s := m.state(t, "alice"); len(s.holds) != 1 || s.totals.held != 5 || s.added != 2 {
		t.Fatalf("after verify: %+v, want the expired hold still open and no release entry", s)
	}
	if a, err := m.Account(ctx, Read{Account: "alice"}); err != nil || a.Held != 0 || a.Balance != 10 {
		t.Fatalf("the next read: %+v, %v; want the hold released", a, err)
	}
	if s := m.state(t, "alice"); len(s.holds) != 0 || s.added != 3 {
		t.Errorf("after the next read: %+v, want the hold released with an entry", s)
	}
}

func TestMemoryVerifyTrimmed(t *testing.T) {
	m := NewMemory(Config{Retention: 5})
	ctx := context.Background()
	if _, err := m.Credit(ctx, Transfer{Account: "alice", ID: "order-1", Amount: 100}); err != nil {
		t.Fatal(err)
	}
	for i := range 19 {
		if _, err := m.Charge(ctx, Charge{Account: "alice", Op: fmt.Sprint("op", i), Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if got := verifyUnchanged(t, m, "alice"); len(got.Drift) != 0 || got.WholeLedger {
		t.Fatalf("verify of a trimmed ledger: %+v, want no drift and no whole ledger", got)
	}
	m.tamper(t, "alice", func(a *memAccount) { a.held += 2 })
	got := verifyUnchanged(t, m, "alice")
	if names := checks(got.Drift); !slices.Equal(names, []string{CheckHeld}) {
		t.Errorf("drift %+v of a trimmed ledger with held raised, want held alone", got.Drift)
	}
}
