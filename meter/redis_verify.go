package meter

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Verify checks one account's records; see Store.
func (s *Redis) Verify(ctx context.Context, account string) (Check, error) {
	return verifyAccount(ctx, s, account)
}

// VerifyPage checks a page of accounts; see Store.
func (s *Redis) VerifyPage(ctx context.Context, cursor string, limit int) (CheckPage, error) {
	return verifyPage(ctx, s, cursor, limit)
}

// accountFields are the fields of the account hash that a verify reads: the
// totals, the creation time and nx (lib.lua).
var accountFields = []string{"cr", "ch", "de", "rf", "hd", "ct", "nx"}

// records reads an account's keys in one MULTI/EXEC transaction, which runs
// no script and so releases no expired hold. The keys share a hash slot, so
// the transaction runs on one node of a cluster too.
func (s *Redis) records(ctx context.Context, account string) (records, error) {
	keys := s.keys(account, "")
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var (
		acct   *redis.SliceCmd
		ledger *redis.Cmd
		exists *redis.IntCmd
		info   *redis.XInfoStreamCmd
		holds  *redis.MapStringStringCmd
		expiry *redis.ZSliceCmd
	)
	// The transaction's error is its first command's; each is looked at on
	// its own below, since XINFO STREAM fails on a ledger never written.
	_, _ = s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		acct = p.HMGet(ctx, keys[0], accountFields...)
		ledger = p.Do(ctx, "XRANGE", keys[1], "-", "+")
		exists = p.Exists(ctx, keys[1])
		info = p.XInfoStream(ctx, keys[1])
		holds = p.HGetAll(ctx, keys[2])
		expiry = p.ZRangeWithScores(ctx, keys[3], 0, -1)
		return nil
	})
	for _, cmd := range []redis.Cmder{acct, ledger, exists, holds, expiry} {
		if err := cmd.Err(); err != nil {
			return records{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if exists.Val() == 1 && info.Err() != nil {
		return records{}, fmt.Errorf("%w: %w", ErrUnavailable, info.Err())
	}
	v := acct.Val()
	if v[5] == nil { // no ct: the account was never created
		return records{}, fmt.Errorf("%w: account was never seen", ErrNotFound)
	}
	r := records{account: account, holds: map[string]int64{}, expiry: map[string]int64{}}
	field := func(i int, check string) int64 {
		if v[i] == nil {
			return 0
		}
		raw, _ := v[i].(string)
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			r.malform(check, "the account's %s is %q, not an integer", accountFields[i], raw)
		}
		return n
	}
	r.totals = totals{field(0, CheckTotals), field(1, CheckTotals), field(2, CheckTotals), field(3, CheckTotals), field(4, CheckTotals)}
	r.nextExpiry = field(6, CheckExpiry)
	for op, raw := range holds.Val() {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			r.malform(CheckHeld, "open hold %q holds %q, not an integer", op, raw)
		}
		r.holds[op] = n
	}
	for _, z := range expiry.Val() {
		op, _ := z.Member.(string)
		if z.Score != math.Trunc(z.Score) || math.Abs(z.Score) > MaxAmount {
			r.malform(CheckExpiry, "the expiry of %q is %v, not an integer", op, z.Score)
		}
		r.expiry[op] = int64(z.Score)
	}
	items, _ := ledger.Val().([]any)
	r.ledger = make([]Entry, 0, len(items))
	for i, item := range items {
		e, err := parseEntry(item)
		if err != nil {
			r.malform(CheckLedger, "ledger entry %d of %d cannot be read", i+1, len(items))
			continue
		}
		r.ledger = append(r.ledger, e)
	}
	stream := info.Val()
	r.whole = exists.Val() == 0 || (stream != nil && stream.EntriesAdded == stream.Length)
	return r, nil
}

// Interface guards
var _ recorder = (*Redis)(nil)
