package meter_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/meter/storetest"
)

// TestSentinelConformance runs the conformance suite through Sentinels to a
// master with one replica, waiting for the replica after every change of
// money.
func TestSentinelConformance(t *testing.T) {
	topo := redistest.StartSentinel(t, 1)
	conformance(t, topo.Servers[0].Client(t), func(opts meter.RedisOptions) meter.RedisOptions {
		opts.Sentinel = &meter.SentinelOptions{Master: redistest.MasterName, Addrs: topo.Addrs()}
		opts.Replicas = 1
		return opts
	})
}

// TestClusterConformance runs the conformance suite on a cluster of three
// masters with a replica each, the accounts spread over the shards, waiting
// for the replica after every change of money.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	conformance(t, c.Servers[0].Client(t), func(opts meter.RedisOptions) meter.RedisOptions {
		opts.Cluster = c.Addrs()
		opts.Replicas = 1
		return opts
	})
}

// conformance runs the suite with stores that with configures, each on a
// key prefix of its own; clock reads Redis's clock.
func conformance(t *testing.T, clock *redis.Client, with func(meter.RedisOptions) meter.RedisOptions) {
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T, cfg meter.Config) storetest.Harness {
		s := newRedis(t, with(meter.RedisOptions{
			Prefix:  "c" + strconv.FormatInt(n.Add(1), 10),
			Timeout: 5 * time.Second,
			Config:  cfg,
		}))
		return storetest.Harness{
			Store: s,
			Slow:  true,
			// Advance waits until Redis's clock has moved on by d.
			Advance: func(t *testing.T, d time.Duration) {
				start, err := clock.Time(context.Background()).Result()
				if err != nil {
					t.Fatal(err)
				}
				for {
					now, err := clock.Time(context.Background()).Result()
					if err != nil {
						t.Fatal(err)
					}
					if now.Sub(start) > d {
						return
					}
					time.Sleep(time.Millisecond)
				}
			},
		}
	})
}
