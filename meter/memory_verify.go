package meter

import (
	"context"
	"fmt"
)

// Verify checks one account's records; see Store.
func (m *Memory) Verify(ctx context.Context, account string) (Check, error) {
	return verifyAccount(ctx, m, account)
}

// VerifyPage checks a page of accounts; see Store.
func (m *Memory) VerifyPage(ctx context.Context, cursor string, limit int) (CheckPage, error) {
	return verifyPage(ctx, m, cursor, limit)
}

// records reads an account's records under its lock, as they are: no expired
// hold is released.
func (m *Memory) records(ctx context.Context, account string) (records, error) {
	if err := ctx.Err(); err != nil {
		return records{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	m.mu.RLock()
	a := m.accounts[account]
	m.mu.RUnlock()
	if a == nil {
		return records{}, fmt.Errorf("%w: account was never seen", ErrNotFound)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.exists {
		return records{}, fmt.Errorf("%w: account was never seen", ErrNotFound)
	}
	r := records{
		account: account,
		totals:  totals{a.credited, a.charged, a.debited, a.refunded, a.held},
		holds:   make(map[string]int64, len(a.holds)),
		expiry:  make(map[string]int64, len(a.holds)),
		ledger:  make([]Entry, 0, len(a.ledger)),
		whole:   a.added == int64(len(a.ledger)),
	}
	// The memory store looks at every hold's expiry, so it looks from the
	// earliest on.
	for op, h := range a.holds {
		r.holds[op], r.expiry[op] = h.amount, h.expires
		if r.nextExpiry == 0 || h.expires < r.nextExpiry {
			r.nextExpiry = h.expires
		}
	}
	for i := range a.ledger {
		r.ledger = append(r.ledger, a.ledger[(a.ledgerStart+i)%len(a.ledger)])
	}
	return r, nil
}

// Interface guards
var _ recorder = (*Memory)(nil)
