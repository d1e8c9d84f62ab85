package meter_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// benchClients is how many clients run at once, in the benchmarks and in
// redis-benchmark's baseline alike.
const benchClients = 50

// benchAccounts is how many accounts the benchmarks spread their operations
// over.
const benchAccounts = 100

// benchOp is one store operation under benchmark; i numbers the call.
type benchOp struct {
	name    string
	prepare func(b *testing.B, s meter.Store, n int) // before the timer
	run     func(s meter.Store, i int64) error
}

func benchAccount(i int64) string { return "acct-" + strconv.FormatInt(i%benchAccounts, 10) }

func benchOps() []benchOp {
	ctx := context.Background()
	holdAll := func(b *testing.B, s meter.Store, n int) {
		for i := range int64(n) {
			if _, err := s.Hold(ctx, meter.Hold{Account: benchAccount(i), Op: "h" + strconv.FormatInt(i, 10), Max: 1, Min: 1, TTL: time.Hour}); err != nil {
				b.Fatal(err)
			}
		}
	}
	chargeAll := func(b *testing.B, s meter.Store, n int) {
		for i := range int64(n) {
			if _, err := s.Charge(ctx, meter.Charge{Account: benchAccount(i), Op: "c" + strconv.FormatInt(i, 10), Amount: 1}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return []benchOp{
		{"Charge", nil, func(s meter.Store, i int64) error {
			_, err := s.Charge(ctx, meter.Charge{Account: benchAccount(i), Op: "c" + strconv.FormatInt(i, 10), Amount: 1, Method: "GET", Route: "/v1/*"})
			return err
		}},
		{"ChargeReplayed", nil, func(s meter.Store, i int64) error {
			_, err := s.Charge(ctx, meter.Charge{Account: benchAccount(i), Op: "same" + benchAccount(i), Amount: 1})
			return err
		}},
		{"Hold", nil, func(s meter.Store, i int64) error {
			_, err := s.Hold(ctx, meter.Hold{Account: benchAccount(i), Op: "h" + strconv.FormatInt(i, 10), Max: 5, Min: 1, TTL: time.Hour})
			return err
		}},
		{"Extend", holdAll, func(s meter.Store, i int64) error {
			_, err := s.Extend(ctx, meter.Extend{Account: benchAccount(i), Op: "h" + strconv.FormatInt(i, 10), Seq: 1, Max: 1, Min: 1, TTL: time.Hour})
			return err
		}},
		{"Settle", holdAll, func(s meter.Store, i int64) error {
			_, err := s.Settle(ctx, meter.Settle{Account: benchAccount(i), Op: "h" + strconv.FormatInt(i, 10), Amount: 1})
			return err
		}},
		{"Release", holdAll, func(s meter.Store, i int64) error {
			_, err := s.Release(ctx, meter.Release{Account: benchAccount(i), Op: "h" + strconv.FormatInt(i, 10), Reason: meter.ReasonRefundOn})
			return err
		}},
		{"Refund", chargeAll, func(s meter.Store, i int64) error {
			_, err := s.Refund(ctx, meter.Refund{Account: benchAccount(i), Op: "c" + strconv.FormatInt(i, 10), Amount: 1, Reason: meter.ReasonRefundOn})
			return err
		}},
		{"Cancel", chargeAll, func(s meter.Store, i int64) error {
			_, err := s.Cancel(ctx, meter.Cancel{Account: benchAccount(i), Op: "c" + strconv.FormatInt(i, 10)})
			return err
		}},
		{"Credit", nil, func(s meter.Store, i int64) error {
			_, err := s.Credit(ctx, meter.Transfer{Account: benchAccount(i), ID: "cr" + strconv.FormatInt(i, 10), Amount: 1, Reason: "purchase", By: "bench"})
			return err
		}},
		{"Debit", nil, func(s meter.Store, i int64) error {
			_, err := s.Debit(ctx, meter.Transfer{Account: benchAccount(i), ID: "de" + strconv.FormatInt(i, 10), Amount: 1, By: "bench"})
			return err
		}},
		{"Account", nil, func(s meter.Store, i int64) error {
			_, err := s.Account(ctx, meter.Read{Account: benchAccount(i), Mode: meter.Caller})
			return err
		}},
		{"Ledger50", nil, func(s meter.Store, i int64) error {
			_, err := s.Ledger(ctx, meter.LedgerQuery{Read: meter.Read{Account: benchAccount(i), Mode: meter.Caller}})
			return err
		}},
	}
}

// fund gives every benchmark account a balance far above what any
// benchmark spends.
func fund(b *testing.B, s meter.Store) {
	for i := range int64(benchAccounts) {
		if _, err := s.Credit(context.Background(), meter.Transfer{Account: benchAccount(i), ID: "fund", Amount: 1 << 50}); err != nil {
			b.Fatal(err)
		}
	}
}

// runBench runs op with benchClients clients at once and returns the ops
// per second.
func runBench(b *testing.B, s meter.Store, op benchOp) float64 {
	fund(b, s)
	if op.prepare != nil {
		op.prepare(b, s, b.N)
	}
	var next atomic.Int64
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op.run(s, next.Add(1)-1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	return float64(b.N) / b.Elapsed().Seconds()
}

// BenchmarkRedis measures each operation on a real redis-server, and reports
// its throughput as a ratio to redis-benchmark running EVALSHA of a trivial
// script on the same server with as many clients.
func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b)
	baseline := evalshaBaseline(b, srv)
	b.Logf("redis-benchmark EVALSHA of a trivial script, %d clients: %.0f ops/s", benchClients, baseline)
	for i, op := range benchOps() {
		b.Run(op.name, func(b *testing.B) {
			s, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL(), Prefix: fmt.Sprintf("b%d-%d", i, b.N)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			opsPerSec := runBench(b, s, op)
			b.ReportMetric(opsPerSec, "ops/s")
			b.ReportMetric(opsPerSec/baseline, "x-evalsha")
		})
	}
}

// BenchmarkMemory measures each operation on the memory store.
func BenchmarkMemory(b *testing.B) {
	for _, op := range benchOps() {
		b.Run(op.name, func(b *testing.B) {
			b.ReportMetric(runBench(b, meter.NewMemory(meter.Config{}), op), "ops/s")
		})
	}
}

var (
	baselineOnce sync.Once
	baselineRate float64
	rateLine     = regexp.MustCompile(`([0-9.]+) requests per second`)
)

// evalshaBaseline runs redis-benchmark once per process against srv.
func evalshaBaseline(b *testing.B, srv *redistest.Server) float64 {
	baselineOnce.Do(func() {
		bin := redistest.RequireBinary(b, "redis-benchmark")
		client := srv.Client(b)
		sha, err := client.ScriptLoad(context.Background(), "return 1").Result()
		if err != nil {
			b.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(srv.Addr)
		out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-c", strconv.Itoa(benchClients),
			"-n", "200000", "-q", "EVALSHA", sha, "0").CombinedOutput()
		if err != nil {
			b.Fatalf("redis-benchmark: %v: %s", err, out)
		}
		m := rateLine.FindAllSubmatch(out, -1)
		if len(m) == 0 {
			b.Fatalf("redis-benchmark printed no rate: %s", out)
		}
		baselineRate, _ = strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	})
	if baselineRate == 0 {
		b.Fatal("no redis-benchmark baseline")
	}
	return baselineRate
}

// accountLife is one account's typical activity: a purchase, ten paid
// requests and a hold settled.
func accountLife(b *testing.B, s meter.Store, account string) {
	ctx := context.Background()
	if _, err := s.Credit(ctx, meter.Transfer{Account: account, ID: "order-1", Amount: 1000, Reason: "purchase", By: "admin"}); err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		if _, err := s.Charge(ctx, meter.Charge{Account: account, Op: fmt.Sprintf("%032x-%d", i, i), Amount: 1, Method: "GET", Route: "/v1/*"}); err != nil {
			b.Fatal(err)
		}
	}
	op := fmt.Sprintf("%032x-h", 99)
	if _, err := s.Hold(ctx, meter.Hold{Account: account, Op: op, Max: 10, Min: 1, TTL: time.Minute, Method: "POST", Route: "/v1/chat"}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Settle(ctx, meter.Settle{Account: account, Op: op, Amount: 4}); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAccountBytes reports the bytes one account costs in each store
// after accountLife: 14 ledger entries, 11 request ops and one credit id.
func BenchmarkAccountBytes(b *testing.B) {
	b.Run("Redis", func(b *testing.B) {
		srv := redistest.Start(b)
		client := srv.Client(b)
		s, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		used := func() float64 {
			info := client.InfoMap(context.Background(), "memory").Item("Memory", "used_memory")
			n, _ := strconv.ParseFloat(info, 64)
			return n
		}
		before := used()
		for i := range b.N {
			accountLife(b, s, "account-"+strconv.Itoa(i))
		}
		b.ReportMetric((used()-before)/float64(b.N), "bytes/account")
	})
	b.Run("Memory", func(b *testing.B) {
		s := meter.NewMemory(meter.Config{})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range b.N {
			accountLife(b, s, "account-"+strconv.Itoa(i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "bytes/account")
		runtime.KeepAlive(s)
	})
}
