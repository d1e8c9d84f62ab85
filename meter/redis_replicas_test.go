package meter_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// TestReplicasWait checks the outcomes of replicas: with its replica up, a
// change of money is acknowledged; with it down, a request op is served and
// counted, a credit applies but answers ErrUnreplicated, and repeating the
// credit once the replica is back answers replayed without error.
func TestReplicasWait(t *testing.T) {
	master := redistest.Start(t)
	host, port, _ := net.SplitHostPort(master.Addr)
	replica := redistest.Start(t, redistest.Options{Args: []string{"--replicaof", host, port}})
	waitSynced(t, master, 1)

	var unrepl atomic.Int64
	// A timeout long enough for a loaded machine's replica to acknowledge.
	s := newRedis(t, meter.RedisOptions{URL: master.URL(), Replicas: 1, Timeout: time.Second, Unreplicated: func() { unrepl.Add(1) }})
	ctx := context.Background()
	if _, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "t1", Amount: 10}); err != nil {
		t.Fatalf("credit with the replica up: %v", err)
	}
	if _, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "op1", Amount: 1}); err != nil || unrepl.Load() != 0 {
		t.Fatalf("charge with the replica up: %v, %d unreplicated", err, unrepl.Load())
	}

	replica.Stop()
	waitSynced(t, master, 0)
	r, err := s.Charge(ctx, meter.Charge{Account: "alice", Op: "op2", Amount: 1})
	if err != nil || r.Amount != 1 || unrepl.Load() != 1 {
		t.Fatalf("charge with the replica down: %+v, %v, %d unreplicated; want served and 1 counted", r, err, unrepl.Load())
	}
	tr, err := s.Credit(ctx, meter.Transfer{Account: "alice", ID: "t2", Amount: 5})
	if !errors.Is(err, meter.ErrUnreplicated) || !errors.Is(err, meter.ErrUnavailable) || tr.Balance != 13 {
		t.Fatalf("credit with the replica down: %+v, %v; want ErrUnreplicated with balance 13", tr, err)
	}

	replica.Restart(t)
	waitSynced(t, master, 1)
	tr, err = s.Credit(ctx, meter.Transfer{Account: "alice", ID: "t2", Amount: 5})
	if err != nil || !tr.Replayed || tr.Balance != 13 {
		t.Fatalf("repeated credit with the replica back: %+v, %v; want replayed, balance 13", tr, err)
	}
	a, err := s.Account(ctx, meter.Read{Account: "alice"})
	if err != nil || a.Credited != 15 || a.Charged != 2 {
		t.Fatalf("account %+v, %v; want credited 15, charged 2", a, err)
	}
	if unrepl.Load() != 1 {
		t.Fatalf("%d unreplicated, want 1", unrepl.Load())
	}
}

// TestReplicasMoreThanExist checks that waiting for more replicas than
// exist answers within the timeout, unreplicated, and changes money once.
func TestReplicasMoreThanExist(t *testing.T) {
	srv := redistest.Start(t)
	var unrepl atomic.Int64
	s := newRedis(t, meter.RedisOptions{URL: srv.URL(), Replicas: 2, Timeout: 200 * time.Millisecond, Unreplicated: func() { unrepl.Add(1) }})
	ctx := context.Background()
	start := time.Now()
	_, err := s.Credit(ctx, meter.Transfer{Account: "bob", ID: "t", Amount: 3})
	if !errors.Is(err, meter.ErrUnreplicated) {
		t.Fatalf("credit: %v, want ErrUnreplicated", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the credit took %v, more than a few timeouts", d)
	}
	for i := range 3 {
		if _, err := s.Charge(ctx, meter.Charge{Account: "bob", Op: "op" + strconv.Itoa(i), Amount: 1}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Account(ctx, meter.Read{Account: "bob"})
	if err != nil || a.Balance != 0 || a.Credited != 3 || unrepl.Load() != 3 {
		t.Fatalf("account %+v, %v, %d unreplicated; want balance 0 and 3 unreplicated", a, err, unrepl.Load())
	}
}

// TestNoScript checks that a script cache emptied behind the store's back,
// as by a restart or a failover, never reaches a caller, with and without
// replicas.
func TestNoScript(t *testing.T) {
	master := redistest.Start(t)
	host, port, _ := net.SplitHostPort(master.Addr)
	redistest.Start(t, redistest.Options{Args: []string{"--replicaof", host, port}})
	waitSynced(t, master, 1)
	admin := master.Client(t)
	ctx := context.Background()
	for _, replicas := range []int{0, 1} {
		s := newRedis(t, meter.RedisOptions{URL: master.URL(), Replicas: replicas, Prefix: "r" + strconv.Itoa(replicas)})
		if err := s.LoadScripts(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Credit(ctx, meter.Transfer{Account: "a", ID: "t" + strconv.Itoa(i), Amount: 1}); err != nil {
				t.Fatalf("replicas %d: credit after SCRIPT FLUSH: %v", replicas, err)
			}
			if err := admin.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Charge(ctx, meter.Charge{Account: "a", Op: "c" + strconv.Itoa(i), Amount: 1}); err != nil {
				t.Fatalf("replicas %d: charge after SCRIPT FLUSH: %v", replicas, err)
			}
		}
	}
}

// waitSynced waits until master has n replicas online.
func waitSynced(t *testing.T, master *redistest.Server, n int) {
	t.Helper()
	c := master.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:"+strconv.Itoa(n)) && (n == 0 || strings.Contains(info, "state=online")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("master has not %d replicas in sync: %s", n, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
