// Package meter is Tollgate's ledger: token balances and every operation that
// changes them, each one atomic and idempotent.
//
// A Store keeps, for every account, the running totals credited, charged,
// debited, refunded and held, an append-only ledger with one entry per change,
// and the records that make operations idempotent. At every moment a client
// can observe:
//
//	balance == credited - charged - debited + refunded - held
//	balance >= 0, held >= 0
//	held    == the sum of the account's open holds
//
// Two implementations share these semantics and one conformance suite
// (package storetest): Redis, where every operation is one Lua script, and
// Memory, the embedded default that lives for the life of the process.
//
// Request operations (Charge, Hold and what follows them) are identified by an
// op id chosen by the gateway. Repeating an operation with the same op returns
// the first result and changes nothing. Credits and debits are identified by
// the caller's own id, kept apart from request ops and from each other.
package meter

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// MaxAmount is the largest amount or balance a store accepts: 2^53-1, the
// largest integer that every part of the path (Lua, JSON) represents exactly.
const MaxAmount = 1<<53 - 1

// Defaults shared by both stores.
const (
	// DefaultRetention is how many ledger entries are kept per account.
	DefaultRetention = 10000

	// DefaultOpRetention is how long a request op is remembered after it
	// closes.
	DefaultOpRetention = 24 * time.Hour
)

// Store is a ledger of token balances. Every method is one atomic step. Errors
// are ErrInvalid, ErrNotFound, ErrConflict, ErrGone, ErrCancelled,
// *InsufficientError (which matches ErrInsufficient) or ErrUnavailable.
//
// Every operation first releases the account's expired holds, so what it
// reports already reflects expiry.
type Store interface {
	// Charge takes Amount from the account's balance for a request. The
	// account's first caller operation credits the sign-up bonus first.
	Charge(ctx context.Context, c Charge) (Receipt, error)

	// Hold sets aside up to Max tokens, and at least Min, for a request whose
	// final price is not known yet.
	Hold(ctx context.Context, h Hold) (Receipt, error)

	// Extend adds up to Max tokens, and at least Min, to an open hold and
	// renews its expiry. Extend is idempotent per op and sequence number.
	Extend(ctx context.Context, e Extend) (Receipt, error)

	// Settle charges Amount, at most what the hold holds, and releases the
	// rest.
	Settle(ctx context.Context, s Settle) (Receipt, error)

	// Release releases an open hold in full.
	Release(ctx context.Context, r Release) (Receipt, error)

	// Refund gives back Amount, at most what the op charged, once per op.
	Refund(ctx context.Context, r Refund) (Receipt, error)

	// Cancel makes an op as if it never happened: a charge that applied is
	// refunded and an open hold released, both with reason not_forwarded; an
	// op that has not applied is tombstoned, so a later apply changes
	// nothing. Cancel is idempotent.
	Cancel(ctx context.Context, c Cancel) (Receipt, error)

	// Lease takes, spends, resizes, renews and closes a gateway's lease: a
	// hold that the gateway spends locally, request by request. Each call
	// charges what the lease spent since the last one, from the lease, and
	// is idempotent per op and sequence number.
	Lease(ctx context.Context, l Lease) (LeaseReceipt, error)

	// Credit adds tokens under the caller's id.
	Credit(ctx context.Context, t Transfer) (TransferReceipt, error)

	// Debit takes tokens under the caller's id, never below a zero balance.
	Debit(ctx context.Context, t Transfer) (TransferReceipt, error)

	// Account reads an account's totals.
	Account(ctx context.Context, r Read) (Account, error)

	// Ledger reads a page of an account's ledger, newest first.
	Ledger(ctx context.Context, q LedgerQuery) (LedgerPage, error)

	// Usage reads what an account spent, in hourly or daily buckets.
	Usage(ctx context.Context, q UsageQuery) (UsageReport, error)

	// RecordPurchase records a purchase before it is paid. The same session
	// recorded again with the same values changes nothing; with others it
	// is ErrConflict.
	RecordPurchase(ctx context.Context, p Purchase) error

	// FulfilPurchase credits a recorded purchase's tokens, less what refunds
	// took back before it, once: a repeat replies with the first result. A
	// session never recorded is ErrNotFound.
	FulfilPurchase(ctx context.Context, f Fulfil) (PurchaseReceipt, error)

	// RefundPurchase takes back a refund's share of a recorded purchase,
	// once per ID: from the balance, never below 0, once the purchase is
	// credited, and out of its credit before. The same ID with another
	// amount is ErrConflict. A session never recorded is ErrNotFound.
	RefundPurchase(ctx context.Context, r PurchaseRefund) (PurchaseReceipt, error)

	// Accounts lists accounts. Every account that exists for the whole walk
	// appears at least once; a page may be empty while Next is still set.
	Accounts(ctx context.Context, cursor string, limit int) (AccountPage, error)

	// Verify recomputes every invariant of one account from the store's own
	// records, read in one atomic step, and reports each one they break. It
	// changes nothing and releases no expired hold: such a hold is still
	// open. An account never seen is ErrNotFound, and is not created.
	Verify(ctx context.Context, account string) (Check, error)

	// VerifyPage verifies every account on a page of Accounts, from the
	// cursor, with limit as its hint.
	VerifyPage(ctx context.Context, cursor string, limit int) (CheckPage, error)

	// Retry runs fn in the background, again and again with a growing pause,
	// until it returns an error other than ErrUnavailable, or none. The store
	// stays open until it is done. It is how refunds and cancels whose
	// outcome is unknown are retried until acknowledged.
	Retry(fn func(context.Context) error)

	// Use marks the store in use, by a request in flight, until the returned
	// function is called: Close waits for every use to end before it closes
	// the store's connections.
	Use() (done func())

	// Drain waits until background work (Retry, and the cancels of ops whose
	// outcome was unknown) and every Use are done, or ctx ends.
	Drain(ctx context.Context) error

	// Close releases the store's resources once its background work is done.
	Close() error
}

// Charge is a request's up-front payment.
type Charge struct {
	Account string
	Op      string
	Amount  int64
	Method  string // recorded in the ledger entry
	Route   string // recorded in the ledger entry
	Line    string // the price line usage counts it under; "" for DefaultLine
	Bonus   int64  // sign-up bonus credited if this is the caller's arrival
}

// Hold asks to set aside up to Max tokens and at least Min (1 <= Min <= Max).
type Hold struct {
	Account string
	Op      string
	Max     int64
	Min     int64
	TTL     time.Duration // the hold expires TTL after it was last extended
	Method  string
	Route   string
	Line    string // the price line usage counts its settle under
	Bonus   int64
}

// Extend asks to add up to Max tokens and at least Min to an open hold, and
// to renew its expiry to TTL from now. Max == 0 only renews. Seq numbers one
// extension of the op: repeating the last Seq repeats its first result, and
// an older Seq changes nothing and reports the hold as it is, with Replayed
// set.
type Extend struct {
	Account string
	Op      string
	Seq     int64
	Max     int64
	Min     int64
	TTL     time.Duration
}

// Lease is one call on a lease. Seq 1 takes the lease: it holds up to Grow
// tokens, at least 1, from the balance. Each later call, with the next Seq,
// first charges Charges from the lease and gives back Refunds, then gives
// Shrink tokens back to the balance or adds up to Grow from it, and renews
// the lease to TTL from now; Close releases all it still holds and closes
// it. A lease left holding nothing stays open without a hold, so that later
// calls may refund what it charged or grow it again. A closed or expired
// lease takes calls of Refunds alone, as long as its op is remembered; any
// other call on it is ErrGone.
// Repeating the last Seq replies with its first result; an older one changes
// nothing and reports the lease as it is, with Replayed set.
//
// The entries of call n carry the op Op followed by n (EpochOp), so each
// request's Tollgate-Op finds the charge entry that paid for it.
type Lease struct {
	Account string
	Op      string
	Seq     int64
	TTL     time.Duration
	Charges []LeaseCharge
	Refunds []LeaseRefund
	Grow    int64
	Shrink  int64
	Close   bool

	// Drain is how recent a refusal for the balance must be for the reply
	// to report the account as draining.
	Drain time.Duration
}

// LeaseCharge is what one method, route and price line spent from a lease:
// Count requests for Amount tokens.
type LeaseCharge struct {
	Method string
	Route  string
	Line   string
	Amount int64
	Count  int64
}

// LeaseRefund gives back Amount, for Count requests of the price line Line,
// of what the lease's call Seq charged.
type LeaseRefund struct {
	Seq    int64
	Line   string
	Amount int64
	Count  int64
}

// EpochOp returns the op of a lease's call seq: the op its entries carry.
func EpochOp(op string, seq int64) string {
	return op + strconv.FormatInt(seq, 10)
}

// LeaseReceipt is the outcome of a call on a lease.
type LeaseReceipt struct {
	// Charged is what the call charged from the lease.
	Charged int64

	// Refunded is what the call gave back to the balance for refunds.
	Refunded int64

	// Added is what the call took from the balance into the lease.
	Added int64

	// Released is what the call gave back to the balance from the lease.
	Released int64

	// Held is what the lease holds after the call.
	Held int64

	// Balance is the account's available balance after the call.
	Balance int64

	// Expires is when the lease expires, on the store's clock.
	Expires time.Time

	// Draining reports that a request on the account was refused for its
	// balance within the call's Drain: lease holders should give back what
	// they do not need.
	Draining bool

	// Replayed reports that the call had already been applied, and this is
	// its first result.
	Replayed bool
}

// Settle charges Amount of an open hold and releases the rest. CutOff records
// that the response was cut off.
type Settle struct {
	Account string
	Op      string
	Amount  int64
	CutOff  bool
}

// Release reasons recorded in the ledger.
const (
	ReasonExpired      = "expired"
	ReasonRefundOn     = "refund_on"
	ReasonNotForwarded = "not_forwarded"
	ReasonSignupBonus  = "signup_bonus"
	ReasonLease        = "lease"
)

// Release releases an open hold in full, for Reason (ReasonRefundOn or
// ReasonNotForwarded).
type Release struct {
	Account string
	Op      string
	Reason  string
}

// Refund gives back Amount of what the op charged, for Reason.
type Refund struct {
	Account string
	Op      string
	Amount  int64
	Reason  string
}

// Cancel undoes an op whose outcome is unknown.
type Cancel struct {
	Account string
	Op      string
}

// Receipt is the outcome of a request operation.
type Receipt struct {
	// Amount is what the operation moved: tokens charged, added to the hold,
	// settled (charged), released, refunded, or given back by a cancel.
	Amount int64

	// Released is what a settle released.
	Released int64

	// Held is what the op's hold holds after the operation.
	Held int64

	// Balance is the account's available balance after the operation.
	Balance int64

	// Expires is when the op's hold expires, on the store's clock.
	Expires time.Time

	// Replayed reports that the op had already been applied, and this is its
	// first result.
	Replayed bool
}

// Transfer is an operator's credit or debit.
type Transfer struct {
	Account string
	ID      string // the caller's id: 1-255 bytes, each 0x21-0x7E
	Amount  int64
	Reason  string // at most 256 printable bytes; may be empty
	By      string // who made it; recorded, not compared on replay
}

// TransferReceipt is the outcome of a credit or debit.
type TransferReceipt struct {
	Account  string `json:"account"`
	Balance  int64  `json:"balance"`
	Entry    Entry  `json:"entry"`
	Replayed bool   `json:"replayed"`
}

// Mode says who reads an account.
type Mode int

const (
	// Operator reads never create an account; an unseen one is ErrNotFound.
	Operator Mode = iota

	// Caller reads create the account and record the caller's arrival,
	// crediting the sign-up bonus.
	Caller
)

// Read identifies an account read.
type Read struct {
	Account string
	Mode    Mode
	Bonus   int64 // used in Caller mode
}

// Account is an account's totals.
type Account struct {
	Account  string    `json:"account"`
	Balance  int64     `json:"balance"`
	Held     int64     `json:"held"`
	Credited int64     `json:"credited"`
	Charged  int64     `json:"charged"`
	Debited  int64     `json:"debited"`
	Refunded int64     `json:"refunded"`
	Created  time.Time `json:"created"`
}

// MarshalJSON writes the account with its creation time in RFC 3339 UTC with
// milliseconds, as entries are.
func (a Account) MarshalJSON() ([]byte, error) {
	type plain Account // without this method
	return json.Marshal(struct {
		plain
		Created string `json:"created"`
	}{plain(a), a.Created.UTC().Format(timeLayout)})
}

// DefaultLedgerLimit is the page size of a ledger read that gives none.
const DefaultLedgerLimit = 50

// MaxLedgerLimit is the largest ledger page.
const MaxLedgerLimit = 1000

// LedgerQuery asks for up to Limit entries older than Before (exclusive; empty
// for the newest).
type LedgerQuery struct {
	Read
	Before string
	Limit  int
}

// LedgerPage is a page of entries, newest first. Next is the Before of the
// following page, or nil at the end.
type LedgerPage struct {
	Account string  `json:"account"`
	Entries []Entry `json:"entries"`
	Next    *string `json:"next"`
}

// DefaultAccountsLimit is the page size of an account listing that gives
// none, or gives one outside [1, MaxAccountsLimit].
const DefaultAccountsLimit = 50

// MaxAccountsLimit is the largest account page asked for.
const MaxAccountsLimit = 1000

// AccountPage is a page of account ids. Next is nil at the end.
type AccountPage struct {
	Accounts []string `json:"accounts"`
	Next     *string  `json:"next"`
}
