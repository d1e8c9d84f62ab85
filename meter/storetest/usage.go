package storetest

import (
	"maps"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/meter"
)

// usage reads an account's usage by period, in operator mode.
func usage(t *testing.T, s meter.Store, id string, by meter.Period) meter.UsageReport {
	t.Helper()
	rep := must(s.Usage(ctx(t), meter.UsageQuery{Read: meter.Read{Account: id}, By: by}))(t)
	if rep.Account != id || rep.By != by.String() {
		t.Fatalf("usage of %q by %s: report of %q by %q", id, by, rep.Account, rep.By)
	}
	return rep
}

// sumUsage adds a report's buckets up by line, checking that each bucket's
// total is the sum of its lines and that buckets are in order.
func sumUsage(t *testing.T, rep meter.UsageReport) map[string]meter.UsageCount {
	t.Helper()
	sum := map[string]meter.UsageCount{}
	for i, b := range rep.Buckets {
		if i > 0 && !rep.Buckets[i-1].Start.Before(b.Start) {
			t.Errorf("usage by %s: bucket %s after %s", rep.By, b.Start, rep.Buckets[i-1].Start)
		}
		var total meter.UsageCount
		for line, c := range b.Routes {
			total.Charged += c.Charged
			total.Requests += c.Requests
			s := sum[line]
			s.Charged += c.Charged
			s.Requests += c.Requests
			sum[line] = s
		}
		if total.Charged != b.Charged || total.Requests != b.Requests {
			t.Errorf("usage by %s, bucket %s: total %d/%d, its lines add up to %d/%d",
				rep.By, b.Start, b.Charged, b.Requests, total.Charged, total.Requests)
		}
	}
	return sum
}

// testUsage drives every kind of spending on one account, under three price
// lines, and checks the hourly and daily usage against what was done: by
// line, in total, and in buckets that start where the ledger's entries fall.
func testUsage(t *testing.T, f Factory) {
	s, _ := fresh(t, f)
	c := ctx(t)
	fund(t, s, "alice", 100_000)
	want := map[string]meter.UsageCount{}
	spend := func(line string, charged, requests int64) {
		if line == "" {
			line = meter.DefaultLine
		}
		w := want[line]
		w.Charged += charged
		w.Requests += requests
		want[line] = w
	}

	// Charges, one replayed and one refused: a replay or a refusal counts
	// nothing.
	for i, amount := range []int64{1, 7, 13} {
		line := []string{"a", "b", ""}[i]
		ch := meter.Charge{Account: "alice", Op: "c" + line, Amount: amount, Method: "GET", Route: "/x", Line: line}
		must(s.Charge(c, ch))(t)
		must(s.Charge(c, ch))(t)
		spend(line, amount, 1)
	}
	_, err := s.Charge(c, meter.Charge{Account: "alice", Op: "too-much", Amount: 1_000_000, Line: "a"})
	isErr(t, "a charge past the balance", err, meter.ErrInsufficient)

	// A hold settles under its own line, and a release counts nothing.
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h1", Max: 50, Min: 1, TTL: time.Minute, Line: "b"}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h1", Amount: 21}))(t)
	spend("b", 21, 1)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h2", Max: 50, Min: 1, TTL: time.Minute, Line: "b"}))(t)
	must(s.Release(c, meter.Release{Account: "alice", Op: "h2", Reason: meter.ReasonRefundOn}))(t)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "h3", Max: 9, Min: 1, TTL: time.Minute, Line: "a"}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "h3", Amount: 0}))(t)
	spend("a", 0, 1)

	// A refund in full takes the request back; a partial one only tokens,
	// until a cancel gives back the rest.
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "r1", Amount: 5, Line: "a"}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "r1", Amount: 5, Reason: meter.ReasonRefundOn}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "r1", Amount: 5, Reason: meter.ReasonRefundOn}))(t)
	must(s.Charge(c, meter.Charge{Account: "alice", Op: "r2", Amount: 10, Line: "b"}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "r2", Amount: 4, Reason: meter.ReasonRefundOn}))(t)
	spend("b", 6, 1)
	must(s.Cancel(c, meter.Cancel{Account: "alice", Op: "r2"}))(t)
	spend("b", -6, -1)
	must(s.Hold(c, meter.Hold{Account: "alice", Op: "r3", Max: 30, Min: 1, TTL: time.Minute, Line: "a"}))(t)
	must(s.Settle(c, meter.Settle{Account: "alice", Op: "r3", Amount: 30}))(t)
	must(s.Refund(c, meter.Refund{Account: "alice", Op: "r3", Amount: 30, Reason: meter.ReasonRefundOn}))(t)

	// A lease's call counts each line's requests at once, and its refunds
	// take them back.
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 1, TTL: time.Minute, Grow: 500}))(t)
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 2, TTL: time.Minute, Charges: []meter.LeaseCharge{
		{Method: "GET", Route: "/a", Line: "a", Amount: 40, Count: 20},
		{Method: "GET", Route: "/b", Line: "b", Amount: 30, Count: 3},
	}}))(t)
	spend("a", 40, 20)
	spend("b", 30, 3)
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 3, TTL: time.Minute, Close: true,
		Refunds: []meter.LeaseRefund{{Seq: 2, Line: "a", Amount: 4, Count: 2}, {Seq: 2, Line: "b", Amount: 10, Count: 1}}}))(t)
	must(s.Lease(c, meter.Lease{Account: "alice", Op: "l", Seq: 3, TTL: time.Minute, Close: true,
		Refunds: []meter.LeaseRefund{{Seq: 2, Line: "a", Amount: 4, Count: 2}, {Seq: 2, Line: "b", Amount: 10, Count: 1}}}))(t)
	spend("a", -4, -2)
	spend("b", -10, -1)

	entries := ledger(t, s, "alice")
	for _, by := range []meter.Period{meter.Hourly, meter.Daily} {
		rep := usage(t, s, "alice", by)
		if got := sumUsage(t, rep); !maps.Equal(got, want) {
			t.Errorf("usage by %s: %v, want %v", by, got, want)
		}
		// Every bucket starts at the hour or day of a ledger entry: the
		// buckets follow the store's clock, as the ledger does.
		starts := map[time.Time]bool{}
		for _, e := range entries {
			starts[e.Time.Truncate(by.Duration())] = true
		}
		for _, b := range rep.Buckets {
			if !starts[b.Start] {
				t.Errorf("usage by %s: bucket %s, where no ledger entry falls", by, b.Start)
			}
		}
		if len(rep.Buckets) == 0 {
			t.Errorf("usage by %s: no bucket", by)
		}
	}

	// The account's figures are its own.
	fund(t, s, "bob", 10)
	must(s.Charge(c, meter.Charge{Account: "bob", Op: "b1", Amount: 3, Line: "a"}))(t)
	if got := sumUsage(t, usage(t, s, "bob", meter.Daily)); !maps.Equal(got, map[string]meter.UsageCount{"a": {Charged: 3, Requests: 1}}) {
		t.Errorf("bob's usage: %v", got)
	}

	// An operator never sees an unseen account; a caller's read creates it.
	_, err = s.Usage(c, meter.UsageQuery{Read: meter.Read{Account: "nobody"}, By: meter.Hourly})
	isErr(t, "operator usage of an unseen account", err, meter.ErrNotFound)
	rep := must(s.Usage(c, meter.UsageQuery{Read: meter.Read{Account: "carol", Mode: meter.Caller, Bonus: 5}, By: meter.Hourly}))(t)
	if len(rep.Buckets) != 0 {
		t.Errorf("a new caller's usage: %+v", rep)
	}
	expectTotals(t, s, "carol", meter.Account{Balance: 5, Credited: 5})

	for name, q := range map[string]meter.UsageQuery{
		"no period":       {Read: meter.Read{Account: "alice"}},
		"unknown period":  {Read: meter.Read{Account: "alice"}, By: 9},
		"bad account":     {Read: meter.Read{Account: ""}, By: meter.Daily},
		"range backwards": {Read: meter.Read{Account: "alice"}, By: meter.Daily, From: time.Unix(100, 0), To: time.Unix(50, 0)},
	} {
		_, err := s.Usage(c, q)
		isErr(t, name, err, meter.ErrInvalid)
	}
}

// testUsageBuckets crosses hour and day boundaries and the retention on a
// store whose clock the test moves, and reads ranges of buckets.
func testUsageBuckets(t *testing.T, f Factory) {
	s, h := fresh(t, f)
	if h.Slow {
		t.Skip("the store's clock is Redis's own: testUsage checks its buckets against the ledger")
	}
	c := ctx(t)
	fund(t, s, "alice", 1_000_000)
	charge := func(op string, amount int64) time.Time {
		t.Helper()
		must(s.Charge(c, meter.Charge{Account: "alice", Op: op, Amount: amount, Line: "a"}))(t)
		return ledger(t, s, "alice")[0].Time
	}
	first := charge("c1", 1)
	h.Advance(t, time.Hour)
	second := charge("c2", 2)
	hours := usage(t, s, "alice", meter.Hourly).Buckets
	if len(hours) != 2 || !hours[0].Start.Equal(first.Truncate(time.Hour)) || !hours[1].Start.Equal(second.Truncate(time.Hour)) ||
		hours[0].Charged != 1 || hours[1].Charged != 2 {
		t.Fatalf("two hours: %+v", hours)
	}

	// From is inclusive and To exclusive.
	q := meter.UsageQuery{Read: meter.Read{Account: "alice"}, By: meter.Hourly, From: hours[1].Start}
	if got := must(s.Usage(c, q))(t).Buckets; len(got) != 1 || got[0].Charged != 2 {
		t.Errorf("from the second hour: %+v", got)
	}
	q = meter.UsageQuery{Read: meter.Read{Account: "alice"}, By: meter.Hourly, To: hours[1].Start}
	if got := must(s.Usage(c, q))(t).Buckets; len(got) != 1 || got[0].Charged != 1 {
		t.Errorf("to the second hour: %+v", got)
	}

	// Past the hourly retention, the first hours are gone; the days stay.
	h.Advance(t, (meter.UsageHours+1)*time.Hour)
	charge("c3", 4)
	hours = usage(t, s, "alice", meter.Hourly).Buckets
	if len(hours) != 1 || hours[0].Charged != 4 {
		t.Errorf("hours after %dh: %+v", meter.UsageHours+1, hours)
	}
	days := usage(t, s, "alice", meter.Daily).Buckets
	if sum := sumUsage(t, meter.UsageReport{Buckets: days}); sum["a"] != (meter.UsageCount{Charged: 7, Requests: 3}) || len(days) < 2 {
		t.Errorf("days after %dh: %+v", meter.UsageHours+1, days)
	}

	// Past the daily retention, only the newest day is left.
	h.Advance(t, (meter.UsageDays+1)*24*time.Hour)
	charge("c4", 8)
	days = usage(t, s, "alice", meter.Daily).Buckets
	if len(days) != 1 || days[0].Charged != 8 || days[0].Requests != 1 {
		t.Errorf("days after %d days: %+v", meter.UsageDays+1, days)
	}
}
