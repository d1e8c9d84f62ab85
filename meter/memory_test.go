package meter_test

import (
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/meter/storetest"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by exactly d.
func (c *fakeClock) Advance(_ *testing.T, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMemoryConformance runs the conformance suite on memory stores, each on
// a fake clock of its own. The clock starts off a millisecond boundary, so
// that the store's millisecond times are truncated.
func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg meter.Config) storetest.Harness {
		clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 123_456_789, time.UTC)}
		cfg.Now = clock.Now
		return storetest.Harness{Store: meter.NewMemory(cfg), Advance: clock.Advance}
	})
}
