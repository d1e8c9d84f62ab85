package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters, each with its replicas, all on
// loopback.
type Cluster struct {
	// Servers are every node, masters and replicas.
	Servers []*Server
}

// StartCluster starts masters × (1 + replicas) cluster-enabled servers,
// joins them with redis-cli --cluster create, and waits until every node
// reports the cluster ok and every replica is in sync. Nodes time out after
// one second, so a killed master fails over quickly.
func StartCluster(t testing.TB, masters, replicas int, opts ...Options) *Cluster {
	t.Helper()
	cli := RequireBinary(t, "redis-cli")
	c := &Cluster{}
	for range masters * (1 + replicas) {
		o := append(append([]Options{}, opts...), Options{Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
		}})
		c.Servers = append(c.Servers, Start(t, o...))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(t)
	return c
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		addrs[i] = s.Addr
	}
	return addrs
}

// WaitHealthy waits until every running node says the cluster is ok, sees
// as many masters as slots are served by, and every replica's link to its
// master is up.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		cl := s.Client(t)
		waitFor(t, "the cluster to be ok on "+s.Addr, func(ctx context.Context) error {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if st := infoField(info, "cluster_state"); st != "ok" {
				return fmt.Errorf("cluster_state %s", st)
			}
			if n := infoField(info, "cluster_slots_ok"); n != "16384" {
				return fmt.Errorf("%s slots ok", n)
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if infoField(repl, "role") == "slave" && infoField(repl, "master_link_status") != "up" {
				return fmt.Errorf("replica link %s", infoField(repl, "master_link_status"))
			}
			return nil
		})
	}
}

// Node returns the server at addr.
func (c *Cluster) Node(t testing.TB, addr string) *Server {
	t.Helper()
	for _, s := range c.Servers {
		if s.Addr == addr {
			return s
		}
	}
	t.Fatalf("redistest: no cluster node at %s", addr)
	return nil
}

// MasterOf returns the master that serves slot now, and one of its
// replicas (nil if it has none).
func (c *Cluster) MasterOf(t testing.TB, slot int) (master, replica *Server) {
	t.Helper()
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		slots, err := s.Client(t).ClusterSlots(context.Background()).Result()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if slot >= int(r.Start) && slot <= int(r.End) {
				master = c.Node(t, r.Nodes[0].Addr)
				return master, c.replicaOf(t, master)
			}
		}
	}
	t.Fatalf("redistest: no node serves slot %d", slot)
	return nil, nil
}

// Masters returns the running nodes that are masters now.
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	var masters []*Server
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		if info, err := s.Client(t).Info(context.Background(), "replication").Result(); err == nil && infoField(info, "role") == "master" {
			masters = append(masters, s)
		}
	}
	return masters
}

// replicaOf returns a running replica of master, or nil.
func (c *Cluster) replicaOf(t testing.TB, master *Server) *Server {
	t.Helper()
	_, port, _ := strings.Cut(master.Addr, ":")
	for _, s := range c.Servers {
		if s == master || !s.Running() {
			continue
		}
		info, err := s.Client(t).Info(context.Background(), "replication").Result()
		if err == nil && infoField(info, "role") == "slave" && infoField(info, "master_port") == port {
			return s
		}
	}
	return nil
}

// ID returns the cluster node id of s.
func (s *Server) ID(t testing.TB) string {
	t.Helper()
	id, err := s.Client(t).Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("redistest: CLUSTER MYID on %s: %v", s.Addr, err)
	}
	return id
}

// Migration moves one slot from one master to another, a batch of keys at
// a time, so that clients meet ASK while it runs.
type Migration struct {
	slot     int
	from, to *Server
	fromC    *redis.Client
	toC      *redis.Client
}

// BeginMigration marks slot as importing on to and migrating on from.
func (c *Cluster) BeginMigration(t testing.TB, slot int, from, to *Server) *Migration {
	t.Helper()
	m := &Migration{slot: slot, from: from, to: to, fromC: from.Client(t), toC: to.Client(t)}
	ctx := context.Background()
	if err := m.toC.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.ID(t)).Err(); err != nil {
		t.Fatalf("redistest: SETSLOT IMPORTING: %v", err)
	}
	if err := m.fromC.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.ID(t)).Err(); err != nil {
		t.Fatalf("redistest: SETSLOT MIGRATING: %v", err)
	}
	return m
}

// Step moves up to n of the slot's keys with MIGRATE and reports how many
// are left on the old master. It returns errors rather than failing the
// test, so a goroutine may run it.
func (m *Migration) Step(n int) (left int, err error) {
	ctx := context.Background()
	keys, err := m.fromC.ClusterGetKeysInSlot(ctx, m.slot, n).Result()
	if err != nil {
		return 0, fmt.Errorf("GETKEYSINSLOT: %w", err)
	}
	if len(keys) > 0 {
		host, port, _ := strings.Cut(m.to.Addr, ":")
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := m.fromC.Do(ctx, args...).Err(); err != nil {
			return 0, fmt.Errorf("MIGRATE: %w", err)
		}
	}
	count, err := m.fromC.ClusterCountKeysInSlot(ctx, m.slot).Result()
	if err != nil {
		return 0, fmt.Errorf("COUNTKEYSINSLOT: %w", err)
	}
	return int(count), nil
}

// End gives the slot to the new master on both nodes; the others learn it
// from them. It returns errors rather than failing the test, so a goroutine
// may run it.
func (m *Migration) End() error {
	id, err := m.toC.Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		return fmt.Errorf("CLUSTER MYID: %w", err)
	}
	for _, c := range []*redis.Client{m.toC, m.fromC} {
		if err := c.Do(context.Background(), "CLUSTER", "SETSLOT", m.slot, "NODE", id).Err(); err != nil {
			return fmt.Errorf("SETSLOT NODE: %w", err)
		}
	}
	return nil
}
