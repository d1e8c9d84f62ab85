package meter_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
	"github.com/tollgate-dev/tollgate/meter/storetest"
)

// TestRedisConformance runs the conformance suite on one redis-server, each
// store on a key prefix of its own.
func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T, cfg meter.Config) storetest.Harness {
		s := newRedis(t, meter.RedisOptions{
			URL:     srv.URL(),
			Prefix:  "c" + strconv.FormatInt(n.Add(1), 10),
			Timeout: 5 * time.Second,
			Config:  cfg,
		})
		return storetest.Harness{
			Store: s,
			Slow:  true,
			// Advance waits until Redis's clock has moved on by d.
			Advance: func(t *testing.T, d time.Duration) {
				start, err := client.Time(context.Background()).Result()
				if err != nil {
					t.Fatal(err)
				}
				for {
					now, err := client.Time(context.Background()).Result()
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
