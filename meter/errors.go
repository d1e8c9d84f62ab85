package meter

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid reports an argument the store refused; nothing was written.
	ErrInvalid = errors.New("invalid argument")

	// ErrNotFound reports an account never seen (in Operator mode) or an op
	// that was never applied.
	ErrNotFound = errors.New("not found")

	// ErrConflict reports an id or op reused with other values.
	ErrConflict = errors.New("conflict")

	// ErrGone reports a hold that is no longer open: settled, released or
	// expired.
	ErrGone = errors.New("hold is gone")

	// ErrCancelled reports an op that was cancelled.
	ErrCancelled = errors.New("operation was cancelled")

	// ErrInsufficient is matched by every *InsufficientError.
	ErrInsufficient = errors.New("insufficient balance")

	// ErrUnavailable reports a store that could not be reached, or did not
	// answer within its timeout. For Charge and Hold the store cancels the op
	// in the background, so it never lands.
	ErrUnavailable = errors.New("store unavailable")

	// ErrUnreplicated reports a credit or debit that applied on the master
	// but that the replicas a store waits for did not acknowledge in time.
	// It matches ErrUnavailable: repeating the same id is safe, and answers
	// once the replicas have it.
	ErrUnreplicated = fmt.Errorf("%w: not acknowledged by the replicas in time", ErrUnavailable)
)

// InsufficientError reports a balance too low for the price.
type InsufficientError struct {
	Balance int64 // the available balance
	Price   int64 // the least amount that was asked for
	Held    int64 // the account's held total: what its holds and leases set aside

	// Depleted is set on the first refusal of a request for the account's
	// balance in an hour, across all gateways: the one to tell of.
	Depleted bool
}

func (e *InsufficientError) Error() string {
	return fmt.Sprintf("insufficient balance: %d available, %d needed", e.Balance, e.Price)
}

// Is makes errors.Is(err, ErrInsufficient) true.
func (e *InsufficientError) Is(target error) bool { return target == ErrInsufficient }

// invalid returns an ErrInvalid with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
