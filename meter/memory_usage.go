package meter

import (
	"context"
	"slices"
)

// usageCell is what one line spent in one bucket.
type usageCell struct {
	index int64 // the bucket's
	line  string
	UsageCount
}

// Usage reads what an account spent; see Store.
func (m *Memory) Usage(ctx context.Context, q UsageQuery) (UsageReport, error) {
	if err := q.validate(); err != nil {
		return UsageReport{}, err
	}
	var rep UsageReport
	err := m.read(ctx, q.Read, func(a *memAccount, now int64) {
		buckets := map[int64]map[string]UsageCount{}
		for _, c := range a.usage[q.By] {
			if buckets[c.index] == nil {
				buckets[c.index] = map[string]UsageCount{}
			}
			buckets[c.index][c.line] = c.UsageCount
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
		i := p.index(now)
		cells := a.usage[p]
		// The bucket is the last one but for a clock that went back.
		at := len(cells)
		for at > 0 && cells[at-1].index > i {
			at--
		}
		k := at - 1
		for k >= 0 && cells[k].index == i && cells[k].line != ln {
			k--
		}
		if k >= 0 && cells[k].index == i {
			cells[k].Charged += charged
			cells[k].Requests += requests
			continue
		}
		if at == 0 || cells[at-1].index != i {
			// A new bucket: forget those past the retention.
			drop := 0
			for drop < len(cells) && cells[drop].index <= i-p.kept() {
				drop++
			}
			cells, at = slices.Delete(cells, 0, drop), at-drop
		}
		a.usage[p] = slices.Insert(cells, at, usageCell{index: i, line: ln, UsageCount: UsageCount{Charged: charged, Requests: requests}})
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
