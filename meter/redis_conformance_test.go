package meter_test

import (
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// TestRedisConformance runs the conformance suite on one redis-server, each
// store on a key prefix of its own.
func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	conformance(t, srv.Client(t), func(opts meter.RedisOptions) meter.RedisOptions {
		opts.URL = srv.URL()
		return opts
	})
}
