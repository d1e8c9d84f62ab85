package caddymodule

import (
	"net/http"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// serveUsage answers what an account spent, in UTC buckets: by (hour or
// day, default hour) buckets that start in [from, to), both RFC 3339 and
// optional.
func serveUsage(w http.ResponseWriter, r *http.Request, store meter.Store, rd meter.Read) {
	q := meter.UsageQuery{Read: rd, By: meter.Hourly}
	query := r.URL.Query()
	if v := query.Get("by"); v != "" {
		by, ok := meter.ParsePeriod(v)
		if !ok {
			writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "by must be hour or day.", nil)
			return
		}
		q.By = by
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		v := query.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeAdminProblem(w, http.StatusBadRequest, "invalid-request", p.name+" must be an RFC 3339 time, such as 2026-12-01T00:00:00Z.", nil)
			return
		}
		*p.t = t
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		writeAdminProblem(w, http.StatusBadRequest, "invalid-request", "to must not be before from.", nil)
		return
	}
	rep, err := store.Usage(r.Context(), q)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
