package meter

import (
	"slices"
	"time"
)

// Period is the width of a usage bucket, in UTC.
type Period int

const (
	// Hourly buckets start on the hour.
	Hourly Period = iota + 1

	// Daily buckets start at midnight UTC.
	Daily
)

// Usage retention: an account keeps its hourly buckets at least UsageHours
// and its daily ones at least UsageDays after they end.
const (
	UsageHours = 48
	UsageDays  = 90
)

// DefaultLine is the line usage counts a request under when its price line
// has no name.
const DefaultLine = "*"

// String returns "hour" or "day".
func (p Period) String() string {
	switch p {
	case Hourly:
		return "hour"
	case Daily:
		return "day"
	}
	return "unknown"
}

// ParsePeriod reads "hour" or "day".
func ParsePeriod(s string) (Period, bool) {
	switch s {
	case "hour":
		return Hourly, true
	case "day":
		return Daily, true
	}
	return 0, false
}

// Duration returns the width of the period's buckets.
func (p Period) Duration() time.Duration {
	if p == Daily {
		return 24 * time.Hour
	}
	return time.Hour
}

// kept returns how many buckets of the period an account keeps: the current
// one and those of the retention before it.
func (p Period) kept() int64 {
	if p == Daily {
		return UsageDays + 1
	}
	return UsageHours + 1
}

// index returns the number of the period's bucket that holds the time t, in
// ms since the epoch.
func (p Period) index(ms int64) int64 {
	return ms / p.Duration().Milliseconds()
}

// UsageQuery asks for an account's usage in the buckets of By that start in
// [From, To). A zero From or To leaves that side open.
type UsageQuery struct {
	Read
	By       Period
	From, To time.Time
}

// UsageReport is what an account spent, bucket by bucket, oldest first. A
// bucket in which nothing was charged or refunded is left out.
type UsageReport struct {
	Account string        `json:"account"`
	By      string        `json:"by"`
	Buckets []UsageBucket `json:"buckets"`
}

// UsageBucket is what an account spent in one hour or day: the tokens
// charged less those refunded, and the requests charged less those whose
// charge was given back in full, in total and by price line. A refund
// counts in the bucket it happens in, which is nearly always its charge's.
type UsageBucket struct {
	Start    time.Time             `json:"start"`
	Charged  int64                 `json:"charged"`
	Requests int64                 `json:"requests"`
	Routes   map[string]UsageCount `json:"routes"`
}

// UsageCount is what one price line spent in a bucket.
type UsageCount struct {
	Charged  int64 `json:"charged"`
	Requests int64 `json:"requests"`
}

// line returns the line usage counts a request under.
func line(s string) string {
	if s == "" {
		return DefaultLine
	}
	return s
}

// report builds a report from buckets by index, keeping those of q's range
// that the retention still holds at now (ms).
func (q UsageQuery) report(buckets map[int64]map[string]UsageCount, now int64) UsageReport {
	rep := UsageReport{Account: q.Account, By: q.By.String(), Buckets: []UsageBucket{}}
	oldest := q.By.index(now) - q.By.kept() + 1
	width := q.By.Duration()
	for i, routes := range buckets {
		start := time.UnixMilli(i * width.Milliseconds()).UTC()
		if i < oldest || (!q.From.IsZero() && start.Before(q.From)) || (!q.To.IsZero() && !start.Before(q.To)) {
			continue
		}
		b := UsageBucket{Start: start, Routes: make(map[string]UsageCount, len(routes))}
		for name, c := range routes {
			b.Charged += c.Charged
			b.Requests += c.Requests
			b.Routes[name] = c
		}
		rep.Buckets = append(rep.Buckets, b)
	}
	slices.SortFunc(rep.Buckets, func(a, b UsageBucket) int { return a.Start.Compare(b.Start) })
	return rep
}

func (q UsageQuery) validate() error {
	if err := q.Read.validate(); err != nil {
		return err
	}
	if q.By != Hourly && q.By != Daily {
		return invalid("usage is by hour or by day")
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return invalid("usage range ends before it starts")
	}
	return nil
}
