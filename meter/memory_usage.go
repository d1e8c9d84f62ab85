package meter

import (
	"context"
	"maps"
)

// Usage reads what an account spent; see Store.
func (m *Memory) Usage(ctx context.Context, q UsageQuery) (UsageReport, error) {
	if err := q.validate(); err != nil {
		return UsageReport{}, err
	}
	var rep UsageReport
	err := m.read(ctx, q.Read, func(a *memAccount, now int64) {
		buckets := make(map[int64]map[string]UsageCount, len(a.usage[q.By]))
		for i, routes := range a.usage[q.By] {
			buckets[i] = maps.Clone(routes)
		}
		rep = q.report(buckets, now)
	})
	return rep, err
}

// use adds charged tokens and requests (less than 0 for a refund) to the
// account's usage of line, in the hour and the day of now (ms). A new
// bucket drops those that fell out of the retention.
func (a *memAccount) use(now int64, ln string, charged, requests int64) {
	ln = line(ln)
	for _, p := range [...]Period{Hourly, Daily} {
		if a.usage[p] == nil {
			a.usage[p] = map[int64]map[string]UsageCount{}
		}
		i := p.index(now)
		routes := a.usage[p][i]
		if routes == nil {
			for old := range a.usage[p] {
				if old <= i-p.kept() {
					delete(a.usage[p], old)
				}
			}
			routes = map[string]UsageCount{}
			a.usage[p][i] = routes
		}
		c := routes[ln]
		c.Charged += charged
		c.Requests += requests
		routes[ln] = c
	}
}

// whole returns -1, one request less, when a refund of amount gives back
// all that was charged, and 0 otherwise.
func whole(amount, charged int64) int64 {
	if amount == charged {
		return -1
	}
	return 0
}
