package meter

import "math/bits"

// Purchase is a bundle sold through a checkout session, recorded when the
// session is made: what it credits once paid, and what it charges, for the
// share of a later refund.
type Purchase struct {
	Account  string
	Session  string // the checkout session's id
	Bundle   string
	Quantity int64
	Tokens   int64 // credited once paid
	Total    int64 // what the session charges, in the currency's smallest unit
}

// Fulfil credits a recorded purchase, once.
type Fulfil struct {
	Account string
	Session string
	ID      string // the credit entry's op, such as stripe:<session>
	Reason  string
	By      string
}

// PurchaseRefund takes back the share of a purchase's tokens that Amount,
// refunded or disputed of the purchase's Total, stands for: Tokens × Amount
// ÷ Total, rounded up, and never more than what is left of the purchase.
type PurchaseRefund struct {
	Account string
	Session string
	ID      string // the debit entry's op, such as stripe-refund:<refund id>
	Amount  int64
	Reason  string
	By      string
}

// PurchaseReceipt is the outcome of a Fulfil or a PurchaseRefund.
type PurchaseReceipt struct {
	// Amount is what was credited, or debited.
	Amount int64

	// Shortfall is what a refund's share could not take back: the balance
	// was too low.
	Shortfall int64

	// Pending reports a refund that came before its purchase was credited:
	// it takes its share out of that credit.
	Pending bool

	// Balance is the account's available balance after the operation.
	Balance int64

	// Entry is the ledger entry the operation wrote; its ID is "" when it
	// wrote none (a credit or a debit of nothing).
	Entry Entry

	Replayed bool
}

// MaxPurchaseRefunds bounds the refunds and disputes of one purchase.
const MaxPurchaseRefunds = 100

// share returns tokens × amount ÷ total, rounded up, without overflow.
func share(tokens, amount, total int64) int64 {
	hi, lo := bits.Mul64(uint64(tokens), uint64(amount))
	q, r := bits.Div64(hi, lo, uint64(total))
	if r > 0 {
		q++
	}
	return int64(q)
}

func (p Purchase) validate() error {
	if err := checkAccount(p.Account); err != nil {
		return err
	}
	if err := checkID("session", p.Session); err != nil {
		return err
	}
	if err := checkLabel("bundle", p.Bundle); err != nil {
		return err
	}
	if p.Quantity < 1 || p.Quantity > 100 {
		return invalid("quantity must be 1-100")
	}
	if err := checkPositive("tokens", p.Tokens); err != nil {
		return err
	}
	return checkPositive("total", p.Total)
}

func (f Fulfil) validate() error {
	if err := checkAccount(f.Account); err != nil {
		return err
	}
	if err := checkID("session", f.Session); err != nil {
		return err
	}
	if err := checkID("id", f.ID); err != nil {
		return err
	}
	return checkNote(f.Reason, f.By)
}

func (r PurchaseRefund) validate() error {
	if err := checkAccount(r.Account); err != nil {
		return err
	}
	if err := checkID("session", r.Session); err != nil {
		return err
	}
	if err := checkID("id", r.ID); err != nil {
		return err
	}
	if err := checkPositive("amount", r.Amount); err != nil {
		return err
	}
	return checkNote(r.Reason, r.By)
}
