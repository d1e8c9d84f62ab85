package meter

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockResample is how often the offset to Redis's clock is measured again.
const clockResample = time.Minute

// clockDriftPPM bounds how fast two clocks may drift apart, in parts per
// million: 500 is the most ntpd slews a clock.
const clockDriftPPM = 500

// redisClock estimates Redis's clock from the gateway's, to give each script
// a deadline on Redis's own clock. It never compares the two clocks'
// readings: it measures only intervals on the gateway's clock since a sample
// of Redis TIME, so a gateway clock that is off by hours changes nothing.
type redisClock struct {
	client interface {
		Time(ctx context.Context) *redis.TimeCmd
	}
	now func() time.Time

	mu        sync.Mutex
	redisMs   int64         // Redis TIME at the sample
	local     time.Time     // the gateway's clock when the sample's reply arrived
	rtt       time.Duration // the sample's round trip
	sampled   bool
	resamples bool // a resample is running
}

// sample measures Redis TIME and records it with the gateway's clock.
func (c *redisClock) sample(ctx context.Context) error {
	before := c.now()
	t, err := c.client.Time(ctx).Result()
	after := c.now()
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.redisMs, c.local, c.rtt, c.sampled = t.UnixMilli(), after, after.Sub(before), true
	c.mu.Unlock()
	return nil
}

// deadline returns the latest time, in ms on Redis's clock, at which a
// script may still apply for a call bounded by ctx. Redis read its clock
// before the sample's reply arrived, so the estimate never runs late: a
// script that finds Redis's clock past it runs after the caller gave up.
func (c *redisClock) deadline(ctx context.Context) (int64, error) {
	c.mu.Lock()
	sampled := c.sampled
	stale := sampled && !c.resamples && c.now().Sub(c.local) > clockResample
	if stale {
		c.resamples = true
	}
	c.mu.Unlock()
	if !sampled {
		if err := c.sample(ctx); err != nil {
			return 0, err
		}
	} else if stale {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = c.sample(ctx)
			c.mu.Lock()
			c.resamples = false
			c.mu.Unlock()
		}()
	}
	end, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The gateway's time from the sample to the moment the caller gives up.
	elapsed := c.now().Sub(c.local) + time.Until(end)
	elapsed -= elapsed / 1e6 * clockDriftPPM
	return c.redisMs + elapsed.Milliseconds(), nil
}

// clockFor returns the clock of the node that holds key: the store's one
// server or master, or on a cluster the master of key's slot, each of which
// keeps its own clock. A cluster master's clock is sampled on its first use.
func (s *Redis) clockFor(ctx context.Context, key string) *redisClock {
	if s.cluster == nil {
		return s.clock
	}
	node, err := s.cluster.MasterForKey(ctx, key)
	if err != nil {
		// The call fails on its own; the cluster-wide clock bounds it.
		return s.clock
	}
	addr := node.Options().Addr
	if c, ok := s.clocks.Load(addr); ok {
		return c.(*redisClock)
	}
	c, _ := s.clocks.LoadOrStore(addr, &redisClock{client: node, now: s.cfg.Now})
	return c.(*redisClock)
}

// offset returns the latest estimate of Redis's clock minus the gateway's,
// and the round trip of the sample it comes from.
func (c *redisClock) offset() (offset, rtt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.UnixMilli(c.redisMs).Sub(c.local), c.rtt
}
