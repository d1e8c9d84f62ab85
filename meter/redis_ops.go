package meter

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Charge takes a request's price from the balance; see Store.
func (s *Redis) Charge(ctx context.Context, c Charge) (Receipt, error) {
	if err := c.validate(); err != nil {
		return Receipt{}, err
	}
	reply, err := s.run(ctx, scriptCharge, s.keys(c.Account, "op:"+c.Op), true,
		c.Op, c.Amount, c.Bonus, c.Method, c.Route, c.Line)
	if err = s.unreplicated(err); err != nil {
		s.cancelIfUnknown(err, c.Account, c.Op)
		return Receipt{}, err
	}
	return receipt(reply), nil
}

// Hold sets tokens aside for a request; see Store.
func (s *Redis) Hold(ctx context.Context, h Hold) (Receipt, error) {
	if err := h.validate(); err != nil {
		return Receipt{}, err
	}
	reply, err := s.run(ctx, scriptHold, s.keys(h.Account, "op:"+h.Op), true,
		h.Op, h.Max, h.Min, h.TTL.Milliseconds(), h.Bonus, h.Method, h.Route, h.Line)
	if err = s.unreplicated(err); err != nil {
		s.cancelIfUnknown(err, h.Account, h.Op)
		return Receipt{}, err
	}
	return receipt(reply), nil
}

// Extend adds to an open hold and renews it; see Store.
func (s *Redis) Extend(ctx context.Context, e Extend) (Receipt, error) {
	if err := e.validate(); err != nil {
		return Receipt{}, err
	}
	return s.request(ctx, scriptExtend, e.Account, e.Op, e.Seq, e.Max, e.Min, e.TTL.Milliseconds())
}

// Settle charges what a hold delivered and releases the rest; see Store.
func (s *Redis) Settle(ctx context.Context, st Settle) (Receipt, error) {
	if err := st.validate(); err != nil {
		return Receipt{}, err
	}
	cut := "0"
	if st.CutOff {
		cut = "1"
	}
	return s.request(ctx, scriptSettle, st.Account, st.Op, st.Amount, cut)
}

// Release releases an open hold in full; see Store.
func (s *Redis) Release(ctx context.Context, r Release) (Receipt, error) {
	if err := r.validate(); err != nil {
		return Receipt{}, err
	}
	return s.request(ctx, scriptRelease, r.Account, r.Op, r.Reason)
}

// Refund gives back what an op charged; see Store.
func (s *Redis) Refund(ctx context.Context, r Refund) (Receipt, error) {
	if err := r.validate(); err != nil {
		return Receipt{}, err
	}
	return s.request(ctx, scriptRefund, r.Account, r.Op, r.Amount, r.Reason)
}

// Cancel makes an op as if it never happened; see Store.
func (s *Redis) Cancel(ctx context.Context, c Cancel) (Receipt, error) {
	if err := c.validate(); err != nil {
		return Receipt{}, err
	}
	return s.request(ctx, scriptCancel, c.Account, c.Op)
}

// Lease takes, spends, resizes, renews or closes a lease; see Store.
func (s *Redis) Lease(ctx context.Context, l Lease) (LeaseReceipt, error) {
	if err := l.validate(); err != nil {
		return LeaseReceipt{}, err
	}
	closing := "0"
	if l.Close {
		closing = "1"
	}
	args := make([]any, 0, 9+5*len(l.Charges)+4*len(l.Refunds))
	args = append(args, l.Op, l.Seq, l.TTL.Milliseconds(), l.Grow, l.Shrink, closing,
		l.Drain.Milliseconds(), len(l.Charges), len(l.Refunds))
	for _, c := range l.Charges {
		args = append(args, c.Method, c.Route, c.Line, c.Amount, c.Count)
	}
	for _, r := range l.Refunds {
		args = append(args, r.Seq, r.Line, r.Amount, r.Count)
	}
	reply, err := s.run(ctx, scriptLease, s.keys(l.Account, "op:"+l.Op), true, args...)
	if err = s.unreplicated(err); err != nil {
		return LeaseReceipt{}, err
	}
	r := LeaseReceipt{
		Charged:  intAt(reply, 1),
		Refunded: intAt(reply, 2),
		Added:    intAt(reply, 3),
		Released: intAt(reply, 4),
		Held:     intAt(reply, 5),
		Balance:  intAt(reply, 6),
		Draining: intAt(reply, 8) == 1,
		Replayed: intAt(reply, 9) == 1,
	}
	if ms := intAt(reply, 7); ms > 0 {
		r.Expires = time.UnixMilli(ms).UTC()
	}
	return r, nil
}

// request runs a script on a request op's record.
func (s *Redis) request(ctx context.Context, script *redis.Script, account, op string, args ...any) (Receipt, error) {
	reply, err := s.run(ctx, script, s.keys(account, "op:"+op), true, append([]any{op}, args...)...)
	if err = s.unreplicated(err); err != nil {
		return Receipt{}, err
	}
	return receipt(reply), nil
}

// cancelIfUnknown cancels an op in the background, until Redis acknowledges,
// when err leaves its outcome unknown: the script may have applied, or may
// still apply once a frozen Redis wakes.
func (s *Redis) cancelIfUnknown(err error, account, op string) {
	if !errors.Is(err, ErrUnavailable) {
		return
	}
	s.Retry(func(ctx context.Context) error {
		_, err := s.Cancel(ctx, Cancel{Account: account, Op: op})
		return err
	})
}

// Retry runs fn in the background until it is acknowledged; see Store.
func (s *Redis) Retry(fn func(context.Context) error) {
	s.bg.goDo(func() {
		backoff := 10 * time.Millisecond
		for {
			err := fn(context.Background())
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, redis.ErrClosed) {
				return
			}
			t := time.NewTimer(backoff)
			<-t.C
			backoff = min(2*backoff, 2*time.Second)
		}
	})
}

// Credit adds tokens under the operator's id; see Store.
func (s *Redis) Credit(ctx context.Context, t Transfer) (TransferReceipt, error) {
	return s.transfer(ctx, t, KindCredit)
}

// Debit takes tokens under the operator's id; see Store.
func (s *Redis) Debit(ctx context.Context, t Transfer) (TransferReceipt, error) {
	return s.transfer(ctx, t, KindDebit)
}

func (s *Redis) transfer(ctx context.Context, t Transfer, kind string) (TransferReceipt, error) {
	if err := t.validate(); err != nil {
		return TransferReceipt{}, err
	}
	reply, err := s.run(ctx, scriptTransfer, s.keys(t.Account, kind+":"+t.ID), true,
		kind, t.ID, t.Amount, t.Reason, t.By)
	if err != nil && !errors.Is(err, ErrUnreplicated) {
		return TransferReceipt{}, err
	}
	bal, id := intAt(reply, 1), strAt(reply, 2)
	// An unreplicated transfer returns its receipt with ErrUnreplicated.
	return TransferReceipt{
		Account: t.Account,
		Balance: bal,
		Entry: Entry{
			ID:      id,
			Time:    entryTime(id),
			Kind:    kind,
			Amount:  t.Amount,
			Balance: bal,
			Op:      t.ID,
			Detail:  Detail{Reason: t.Reason, By: strAt(reply, 4)},
		},
		Replayed: intAt(reply, 3) == 1,
	}, err
}

// Account reads an account's totals; see Store.
func (s *Redis) Account(ctx context.Context, r Read) (Account, error) {
	if err := r.validate(); err != nil {
		return Account{}, err
	}
	reply, err := s.run(ctx, scriptAccount, s.keys(r.Account, ""), false, r.Mode.String(), r.Bonus)
	if err != nil {
		return Account{}, err
	}
	a := Account{
		Account:  r.Account,
		Credited: intAt(reply, 1),
		Charged:  intAt(reply, 2),
		Debited:  intAt(reply, 3),
		Refunded: intAt(reply, 4),
		Held:     intAt(reply, 5),
		Created:  time.UnixMilli(intAt(reply, 6)).UTC(),
	}
	a.Balance = a.Credited - a.Charged - a.Debited + a.Refunded - a.Held
	return a, nil
}

// Ledger reads a page of an account's ledger; see Store.
func (s *Redis) Ledger(ctx context.Context, q LedgerQuery) (LedgerPage, error) {
	if err := q.validate(); err != nil {
		return LedgerPage{}, err
	}
	reply, err := s.run(ctx, scriptLedger, s.keys(q.Account, ""), false,
		q.Mode.String(), q.Bonus, q.Before, q.Limit+1)
	if err != nil {
		return LedgerPage{}, err
	}
	raw, _ := reply[1].([]any)
	page := LedgerPage{Account: q.Account, Entries: make([]Entry, 0, min(len(raw), q.Limit))}
	for i, item := range raw {
		if i == q.Limit {
			next := page.Entries[i-1].ID
			page.Next = &next
			break
		}
		e, err := parseEntry(item)
		if err != nil {
			return LedgerPage{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

// Usage reads what an account spent; see Store.
func (s *Redis) Usage(ctx context.Context, q UsageQuery) (UsageReport, error) {
	if err := q.validate(); err != nil {
		return UsageReport{}, err
	}
	period := "h"
	if q.By == Daily {
		period = "d"
	}
	reply, err := s.run(ctx, scriptUsage, s.keys(q.Account, ""), false, q.Mode.String(), q.Bonus, period)
	if err != nil {
		return UsageReport{}, err
	}
	raw, _ := reply[2].([]any)
	buckets := make(map[int64]map[string]UsageCount, len(raw))
	for _, item := range raw {
		b, _ := item.([]any)
		if len(b) != 2 {
			return UsageReport{}, fmt.Errorf("%w: malformed usage bucket", ErrUnavailable)
		}
		i, _ := b[0].(int64)
		lines, _ := b[1].([]any)
		routes := make(map[string]UsageCount, len(lines)/3)
		for j := 0; j+2 < len(lines); j += 3 {
			name, _ := lines[j].(string)
			charged, _ := lines[j+1].(int64)
			requests, _ := lines[j+2].(int64)
			routes[name] = UsageCount{Charged: charged, Requests: requests}
		}
		buckets[i] = routes
	}
	return q.report(buckets, intAt(reply, 1)), nil
}

// parseEntry reads a ledger entry as XREVRANGE gives it.
func parseEntry(item any) (Entry, error) {
	pair, _ := item.([]any)
	if len(pair) != 2 {
		return Entry{}, errors.New("malformed ledger entry")
	}
	id, _ := pair[0].(string)
	fields, _ := pair[1].([]any)
	e := Entry{ID: id, Time: entryTime(id)}
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		value, _ := fields[i+1].(string)
		switch name {
		case "k":
			e.Kind = value
		case "a":
			e.Amount, _ = strconv.ParseInt(value, 10, 64)
		case "b":
			e.Balance, _ = strconv.ParseInt(value, 10, 64)
		case "o":
			e.Op = value
		case "m":
			e.Detail.Method = value
		case "r":
			e.Detail.Route = value
		case "rl":
			e.Detail.Released, _ = strconv.ParseInt(value, 10, 64)
		case "co":
			e.Detail.CutOff = value == "1"
		case "rs":
			e.Detail.Reason = value
		case "by":
			e.Detail.By = value
		case "n":
			e.Detail.Count, _ = strconv.ParseInt(value, 10, 64)
		case "l":
			e.Detail.Lease = value
		case "sf":
			e.Detail.Shortfall, _ = strconv.ParseInt(value, 10, 64)
		}
	}
	if e.ID == "" || e.Kind == "" {
		return Entry{}, errors.New("malformed ledger entry")
	}
	return e, nil
}

// Accounts lists accounts; see Store. On one server or a Sentinel's
// master it is a SCAN, which returns every key present for the whole walk,
// also across a failover to a replica; on a cluster it walks every master
// slot by slot.
func (s *Redis) Accounts(ctx context.Context, cursor string, limit int) (AccountPage, error) {
	if limit < 1 || limit > MaxAccountsLimit {
		limit = DefaultAccountsLimit
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.cluster != nil {
		return s.clusterAccounts(ctx, cursor, limit)
	}
	var from uint64
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return AccountPage{}, invalid("bad cursor")
		}
		from = n
	}
	pattern := globEscape(s.prefix) + ":{*}:acct"
	keys, next, err := s.client.Scan(ctx, from, pattern, int64(limit)).Result()
	if err != nil {
		return AccountPage{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	page := AccountPage{Accounts: make([]string, 0, len(keys))}
	for _, k := range keys {
		if id, ok := s.accountOf(k); ok {
			page.Accounts = append(page.Accounts, id)
		}
	}
	if next != 0 {
		n := strconv.FormatUint(next, 10)
		page.Next = &n
	}
	return page, nil
}

// decodeAccount reads an account id from its key's hash tag.
func decodeAccount(enc string) (string, error) {
	id, err := base64.RawURLEncoding.DecodeString(enc)
	return string(id), err
}

// globEscape escapes the characters special to Redis's glob patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// String returns the mode as the scripts name it.
func (m Mode) String() string {
	if m == Caller {
		return "caller"
	}
	return "operator"
}

// Interface guards
var _ Store = (*Redis)(nil)
