package meter

import (
	"encoding/json"
	"time"
)

// Entry kinds.
const (
	KindCharge  = "charge"
	KindHold    = "hold"
	KindSettle  = "settle"
	KindRelease = "release"
	KindRefund  = "refund"
	KindCredit  = "credit"
	KindDebit   = "debit"
)

// Entry is one change of an account's balance.
type Entry struct {
	// ID is opaque and strictly increasing per account.
	ID string `json:"id"`

	// Time is when the change happened, on the store's clock.
	Time time.Time `json:"time"`

	// Kind is one of the Kind constants.
	Kind string `json:"kind"`

	// Amount is positive, or 0 for a settle that charged nothing.
	Amount int64 `json:"amount"`

	// Balance is the available balance after the change.
	Balance int64 `json:"balance"`

	// Op is the request op, or the credit or debit id.
	Op string `json:"op"`

	// Detail depends on Kind: method and route for charge and hold (with
	// count and lease for a lease's charge, and reason "lease" for a lease's
	// hold), released and cut_off for settle, reason for release and refund
	// (with count for a lease's refund), reason and by for credit and debit.
	Detail Detail `json:"detail"`
}

// Detail holds an entry's kind-specific fields.
type Detail struct {
	Method    string
	Route     string
	Released  int64
	CutOff    bool
	Reason    string
	By        string
	Count     int64  // the requests a lease's charge or refund covers; 0 otherwise
	Lease     string // the op of the lease a charge was paid from
	Shortfall int64  // what a debit could not take, the balance being too low
}

// timeLayout is RFC 3339 in UTC with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON writes the entry with its time in RFC 3339 UTC with
// milliseconds and only the detail fields of its kind.
func (e Entry) MarshalJSON() ([]byte, error) {
	var detail any
	switch {
	case e.Kind == KindHold && e.Detail.Reason == ReasonLease:
		detail = struct {
			Reason string `json:"reason"`
		}{e.Detail.Reason}
	case e.Kind == KindCharge || e.Kind == KindHold:
		detail = struct {
			Method string `json:"method"`
			Route  string `json:"route"`
			Count  int64  `json:"count,omitempty"`
			Lease  string `json:"lease,omitempty"`
		}{e.Detail.Method, e.Detail.Route, e.Detail.Count, e.Detail.Lease}
	case e.Kind == KindSettle:
		detail = struct {
			Released int64 `json:"released"`
			CutOff   bool  `json:"cut_off"`
		}{e.Detail.Released, e.Detail.CutOff}
	case e.Kind == KindRelease || e.Kind == KindRefund:
		detail = struct {
			Reason string `json:"reason"`
			Count  int64  `json:"count,omitempty"`
		}{e.Detail.Reason, e.Detail.Count}
	default:
		detail = struct {
			Reason    string `json:"reason"`
			By        string `json:"by"`
			Shortfall int64  `json:"shortfall,omitempty"`
		}{e.Detail.Reason, e.Detail.By, e.Detail.Shortfall}
	}
	return json.Marshal(struct {
		ID      string `json:"id"`
		Time    string `json:"time"`
		Kind    string `json:"kind"`
		Amount  int64  `json:"amount"`
		Balance int64  `json:"balance"`
		Op      string `json:"op"`
		Detail  any    `json:"detail"`
	}{e.ID, e.Time.UTC().Format(timeLayout), e.Kind, e.Amount, e.Balance, e.Op, detail})
}
