// Package pricing holds Tollgate's price rules and their arithmetic: sizes,
// per-byte rates, and compound prices, in whole tokens. It knows nothing of
// Caddy or of the store. Every amount is an integer in [0, 2^53-1]; a result
// out of range is an error, never a wrap or a rounding.
package pricing

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// MaxAmount is the largest amount: 2^53-1.
const MaxAmount = 1<<53 - 1

// ErrOverflow reports a price above MaxAmount.
var ErrOverflow = errors.New("price exceeds 2^53-1 tokens")

// ParseAmount parses a whole number of tokens from 1 to MaxAmount, written
// plainly: no sign, no leading zero, no fraction.
func ParseAmount(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > MaxAmount || s != strconv.FormatInt(n, 10) {
		return 0, fmt.Errorf("amount must be a whole number from 1 to 2^53-1, not %q", s)
	}
	return n, nil
}

// ParseSize parses a whole number of bytes, with an optional unit: 1024,
// 1KiB, 4 MiB, 1MB. Fractions are refused, so that no unit is rounded.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" || strings.ContainsAny(t, ".,") || t[0] < '0' || t[0] > '9' {
		return 0, fmt.Errorf("size must be a whole number of bytes with an optional unit such as KiB or MiB, not %q", s)
	}
	n, err := humanize.ParseBytes(t)
	if err != nil || n < 1 || n > MaxAmount {
		return 0, fmt.Errorf("size must be a whole number of bytes from 1 to 2^53-1, with an optional unit such as KiB or MiB, not %q", s)
	}
	return int64(n), nil
}

// Rate is a price per size of bytes: Amount tokens per Per bytes, each
// started unit paid in full.
type Rate struct {
	Amount int64
	Per    int64
}

// ParseRate parses "<amount> per <size>", such as "2 per 1MiB".
func ParseRate(s string) (Rate, error) {
	f := strings.Fields(s)
	if len(f) != 3 || f[1] != "per" {
		return Rate{}, fmt.Errorf("rate must be <amount> per <size>, not %q", s)
	}
	amount, err := ParseAmount(f[0])
	if err != nil {
		return Rate{}, err
	}
	per, err := ParseSize(f[2])
	if err != nil {
		return Rate{}, err
	}
	return Rate{Amount: amount, Per: per}, nil
}

// Units returns how many pricing units n bytes start: ceil(n/Per).
func (r Rate) Units(n int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n-1)/r.Per + 1
}

// Cost returns what n bytes cost: ceil(n/Per) × Amount.
func (r Rate) Cost(n int64) (int64, error) {
	return mul(r.Units(n), r.Amount)
}

// mul multiplies two amounts, refusing a product above MaxAmount.
func mul(a, b int64) (int64, error) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if a < 0 || b < 0 || hi != 0 || lo > MaxAmount {
		return 0, ErrOverflow
	}
	return int64(lo), nil
}

// add sums amounts, refusing a sum above MaxAmount.
func add(terms ...int64) (int64, error) {
	var sum int64
	for _, t := range terms {
		if t < 0 || sum > MaxAmount-t {
			return 0, ErrOverflow
		}
		sum += t
	}
	return sum, nil
}
