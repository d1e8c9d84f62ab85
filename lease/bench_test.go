package lease_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/lease"
	"github.com/tollgate-dev/tollgate/meter"
)

// grantingStore is a store whose every lease call succeeds at once and
// grants what it is asked for, so that a benchmark measures the Manager
// alone. It has no other operation.
type grantingStore struct{ meter.Store }

func (grantingStore) Lease(_ context.Context, l meter.Lease) (meter.LeaseReceipt, error) {
	return meter.LeaseReceipt{Added: l.Grow, Held: l.Grow, Balance: meter.MaxAmount / 2}, nil
}

func (grantingStore) Use() func() { return func() {} }

func (grantingStore) Retry(fn func(context.Context) error) { _ = fn(context.Background()) }

// leaseAccount has the Manager lease the account, and waits until the lease
// pays a request.
func leaseAccount(b *testing.B, m *lease.Manager, account string) {
	for range 8 {
		m.Observe(account, meter.MaxAmount/2, 1)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if t, ok := m.Take(account, "GET", "/x", "*", 1); ok {
			t.Done()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("no lease on %s within 5s", account)
		}
		runtime.Gosched()
	}
}

// BenchmarkTake measures a request paid from an open lease: Take, then
// Done.
func BenchmarkTake(b *testing.B) {
	// A lease large enough for the whole run, flushed never during it.
	m := lease.New(grantingStore{}, lease.Config{MinBalance: 1, Size: meter.MaxAmount / 8, TTL: time.Hour, Flush: time.Hour})
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	leaseAccount(b, m, "hot")
	b.ReportAllocs()
	for b.Loop() {
		t, ok := m.Take("hot", "GET", "/x", "*", 1)
		if !ok {
			b.Fatal("the lease did not pay")
		}
		t.Done()
	}
}

// BenchmarkLeaseBytes reports the bytes a leased account costs a gateway:
// its lease, with one route spent since its last call.
func BenchmarkLeaseBytes(b *testing.B) {
	m := lease.New(grantingStore{}, lease.Config{MinBalance: 1, TTL: time.Hour, Flush: time.Hour})
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range b.N {
		leaseAccount(b, m, "account-"+strconv.Itoa(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "bytes/account")
	runtime.KeepAlive(m)
}
