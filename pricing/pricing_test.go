package pricing

import (
	"errors"
	"strconv"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "1024": 1024, "1KiB": 1024, "1kib": 1024, "4 MiB": 4 << 20, "1MiB": 1 << 20,
		"1MB": 1_000_000, "1GiB": 1 << 30, "2B": 2, "9007199254740991": MaxAmount,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0KiB", "-1", "1.5MiB", "1,024", "MiB", "1 parsec", "9007199254740992", "8EiB", "16EiB", " ", "+1"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestParseAmountAndRate(t *testing.T) {
	for _, in := range []string{"0", "-1", "01", "1.0", "1e3", "9007199254740992", "", " 1"} {
		if _, err := ParseAmount(in); err == nil {
			t.Errorf("ParseAmount(%q) accepted", in)
		}
	}
	r, err := ParseRate("2 per 1MiB")
	if err != nil || r != (Rate{Amount: 2, Per: 1 << 20}) {
		t.Fatalf("ParseRate: %+v, %v", r, err)
	}
	for _, in := range []string{"2 1MiB", "2 per", "per 1MiB", "0 per 1MiB", "2 per 0", "2 each 1MiB", "2 per 1MiB extra"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func TestRateCost(t *testing.T) {
	mib := Rate{Amount: 1, Per: 1 << 20}
	for _, c := range []struct{ bytes, want int64 }{
		{0, 0}, {1, 1}, {1 << 20, 1}, {1<<20 + 1, 2}, {10 << 20, 10}, {3<<19 + 0, 2},
	} {
		if got, err := mib.Cost(c.bytes); err != nil || got != c.want {
			t.Errorf("Cost(%d) = %d, %v; want %d", c.bytes, got, err, c.want)
		}
	}
	if _, err := (Rate{Amount: MaxAmount, Per: 1}).Cost(2); !errors.Is(err, ErrOverflow) {
		t.Errorf("an overflowing cost: %v, want ErrOverflow", err)
	}
}

func TestCompound(t *testing.T) {
	usage := &Usage{Header: "X-Tokens", Amount: 2, Reserve: 100}
	c := Compound{Request: 1, RequestBytes: &Rate{1, 1024}, ResponseBytes: &Rate{3, 1 << 20}, Usage: usage, HoldBlock: 3 << 19}
	if b := c.Block(); b != 2<<20 {
		t.Errorf("a 1.5 MiB hold block is %d bytes, want it rounded up to 2 MiB", b)
	}
	for _, x := range []struct {
		req, resp, reported int64
		ok                  bool
		want                int64
	}{
		{0, 0, 0, true, 1},                         // the request term alone
		{1025, 1<<20 + 1, 7, true, 1 + 2 + 6 + 14}, // each term rounded up on its own
		{0, 0, 150, true, 1 + 200},                 // usage capped at the reserve
		{0, 0, 0, false, 1 + 200},                  // a missing report counts the reserve
		{0, 0, -5, true, 1 + 200},                  // as does a bad one
		{0, 0, 100, true, 1 + 200},                 // at the reserve
	} {
		if got, err := c.Total(x.req, x.resp, x.reported, x.ok); err != nil || got != x.want {
			t.Errorf("Total(%d, %d, %d, %v) = %d, %v; want %d", x.req, x.resp, x.reported, x.ok, got, err, x.want)
		}
	}
	max, min, err := c.UpFront(2048)
	if err != nil || max != 1+2+6+200 || min != 1+2+3+200 {
		t.Errorf("UpFront(2048) = %d, %d, %v; want 209 and 206", max, min, err)
	}
	// A body of unknown length holds its first block up front, as the
	// response does.
	if max, min, err := c.UpFront(-1); err != nil || max != 1+1536+6+200 || min != 1+1+3+200 {
		t.Errorf("UpFront(-1) = %d, %d, %v; want 1743 and 205", max, min, err)
	}
	bytesOnly := Compound{ResponseBytes: &Rate{1, 1 << 20}}
	if max, min, _ := bytesOnly.UpFront(0); max != 1 || min != 1 || bytesOnly.Block() != DefaultHoldBlock {
		t.Errorf("a bytes-only price holds %d..%d up front with a block of %d", min, max, bytesOnly.Block())
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "1KiB", "4 MiB", "1MB", "1.5MiB", "0", "9007199254740991", "18446744073709551615", "1EiB", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 1 || n > MaxAmount {
			t.Fatalf("ParseSize(%q) = %d, outside [1, 2^53-1]", s, n)
		}
		if back, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
			t.Fatalf("ParseSize(%d) = %d, %v", n, back, err)
		}
	})
}

func FuzzRate(f *testing.F) {
	f.Add("2 per 1MiB", int64(1<<20+1))
	f.Add("1 per 1", int64(MaxAmount))
	f.Add("9007199254740991 per 1", int64(2))
	f.Add("3 per 7", int64(0))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		r, err := ParseRate(s)
		if err != nil || n < 0 || n > 1<<62 {
			return
		}
		cost, err := r.Cost(n)
		if errors.Is(err, ErrOverflow) {
			return
		}
		if err != nil || cost < 0 || cost > MaxAmount || cost%r.Amount != 0 {
			t.Fatalf("%+v.Cost(%d) = %d, %v", r, n, cost, err)
		}
		units := cost / r.Amount
		// Exactly the units the bytes start: the last one started, no more.
		if units*r.Per < n || (units > 0 && (units-1)*r.Per >= n) {
			t.Fatalf("%+v.Cost(%d) = %d: %d units", r, n, cost, units)
		}
	})
}
