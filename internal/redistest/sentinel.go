package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinels of StartSentinel monitor the master
// by.
const MasterName = "tollgate"

// failoverTimeout bounds how long a Sentinel failover may take.
const failoverTimeout = 30 * time.Second

// Sentinel is a master, its replicas and three Sentinels watching them, all
// on loopback. A failover changes which Server is the master.
type Sentinel struct {
	// Servers are the master and its replicas, master first at the start.
	Servers []*Server

	// Sentinels are the three redis-sentinel processes.
	Sentinels []*Server
}

// StartSentinel starts a master with replicas replicas and three Sentinels
// with a quorum of two and a down-after of one second, and waits until every
// Sentinel knows the replicas and the other Sentinels. The opts apply to
// the master and the replicas.
func StartSentinel(t testing.TB, replicas int, opts ...Options) *Sentinel {
	t.Helper()
	sentinelBin := RequireBinary(t, "redis-sentinel")
	master := Start(t, opts...)
	topo := &Sentinel{Servers: []*Server{master}}
	host, port, _ := net.SplitHostPort(master.Addr)
	for range replicas {
		o := append(append([]Options{}, opts...), Options{Args: []string{"--replicaof", host, port}})
		topo.Servers = append(topo.Servers, Start(t, o...))
	}
	waitFor(t, "the replicas to sync", func(ctx context.Context) error {
		info, err := master.Client(t).Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if n := infoField(info, "connected_slaves"); n != strconv.Itoa(replicas) {
			return fmt.Errorf("%s replicas connected", n)
		}
		if online := strings.Count(info, ",state=online,"); online != replicas {
			return fmt.Errorf("%d replicas online", online)
		}
		return nil
	})
	for range 3 {
		s := &Server{bin: sentinelBin, dir: t.TempDir()}
		s.conf = func(p string) string {
			return fmt.Sprintf("port %s\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir %s\nlogfile %s\n"+
				"sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %[4]s 1000\n"+
				"sentinel failover-timeout %[4]s 5000\nsentinel parallel-syncs %[4]s 1\n",
				p, s.dir, s.logPath(), MasterName, host, port)
		}
		startOn(t, s)
		topo.Sentinels = append(topo.Sentinels, s)
	}
	for _, s := range topo.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		waitFor(t, "the sentinels to know each other", func(ctx context.Context) error {
			m, err := c.Master(ctx, MasterName).Result()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != strconv.Itoa(replicas) {
				return fmt.Errorf("sentinel %s sees %s sentinels and %s replicas", s.Addr, m["num-other-sentinels"], m["num-slaves"])
			}
			return nil
		})
		_ = c.Close()
	}
	return topo
}

// Addrs returns the Sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// Master returns the server the Sentinels name as the master now.
func (s *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].Addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout*4)
	defer cancel()
	addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		t.Fatalf("redistest: ask sentinel for the master: %v", err)
	}
	return s.server(t, net.JoinHostPort(addr[0], addr[1]))
}

// WaitFailover waits until the Sentinels name a master other than old and
// that server answers as a master, and returns it.
func (s *Sentinel) WaitFailover(t testing.TB, old *Server) *Server {
	t.Helper()
	var now *Server
	deadline := time.Now().Add(failoverTimeout)
	for time.Now().Before(deadline) {
		if now = s.Master(t); now != old {
			info, err := now.Client(t).Info(context.Background(), "replication").Result()
			if err == nil && infoField(info, "role") == "master" {
				return now
			}
		}
		time.Sleep(pollInterval)
	}
	t.Fatalf("redistest: no failover away from %s within %v", old.Addr, failoverTimeout)
	return nil
}

func (s *Sentinel) server(t testing.TB, addr string) *Server {
	t.Helper()
	for _, n := range s.Servers {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("redistest: the sentinels name %s, which is none of the servers", addr)
	return nil
}

// waitFor polls check until it succeeds, or fails the test after
// failoverTimeout with check's last error.
func waitFor(t testing.TB, what string, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(failoverTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout*4)
		err := check(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: waiting for %s: %v", what, err)
		}
		time.Sleep(pollInterval)
	}
}

// infoField returns one field of an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}
