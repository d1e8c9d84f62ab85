package meter

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestMemoryUsageClockBack counts spending in the bucket of its own time
// when the gateway's clock goes back across an hour, and keeps each
// period's buckets in order.
func TestMemoryUsageClockBack(t *testing.T) {
	a := newMemAccount("alice")
	at := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	a.use(at("2026-12-08T10:00:01Z"), "a", 1, 1)
	a.use(at("2026-12-08T11:00:01Z"), "a", 2, 1)
	a.use(at("2026-12-08T10:59:59Z"), "b", 4, 1) // the clock went back
	a.use(at("2026-12-08T10:59:59Z"), "a", 8, 1)
	a.use(at("2026-12-08T11:00:02Z"), "b", 16, 1)
	var got []string
	for _, c := range a.usage[Hourly] {
		hour := time.UnixMilli(c.index * time.Hour.Milliseconds()).UTC().Format("15")
		got = append(got, fmt.Sprintf("%s %s %d/%d", hour, c.line, c.Charged, c.Requests))
	}
	if want := []string{"10 a 9/2", "10 b 4/1", "11 a 2/1", "11 b 16/1"}; !slices.Equal(got, want) {
		t.Errorf("hourly cells %q, want %q", got, want)
	}
	if days := a.usage[Daily]; len(days) != 2 || days[0].Charged != 11 || days[1].Charged != 20 {
		t.Errorf("daily cells %+v, want a 11 and b 20", days)
	}
}
