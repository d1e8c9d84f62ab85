package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/meter"
)

// extendLog is a memory store that records the extensions asked of it.
type extendLog struct {
	*meter.Memory
	mu      sync.Mutex
	extends []meter.Extend
}

func (s *extendLog) Extend(ctx context.Context, e meter.Extend) (meter.Receipt, error) {
	s.mu.Lock()
	s.extends = append(s.extends, e)
	s.mu.Unlock()
	return s.Memory.Extend(ctx, e)
}

// heldHandler returns a handler with one compound price, on a memory store
// where alice has balance, and alice's token.
func heldHandler(t testing.TB, price CompoundPrice, balance int64) (*Handler, *extendLog, string) {
	t.Helper()
	secret := []byte("held-handler-secret-0123456789-abcd")
	v, err := auth.New(auth.Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	store := &extendLog{Memory: meter.NewMemory(meter.Config{})}
	if _, err := store.Credit(context.Background(), meter.Transfer{Account: "alice", ID: "f", Amount: balance}); err != nil {
		t.Fatal(err)
	}
	c, err := price.compile()
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{
		Prices:   []Price{{Compound: &price, compound: &c}},
		app:      &App{store: store, verifier: v, OnStoreError: OnStoreErrorDeny},
		refundOn: refundSet{class5: true},
		logger:   caddy.Log(),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return h, store, tok
}

// serve runs one request through h with next behind it. A panic comes back
// as the error errPanicked wraps.
func serve(t testing.TB, h *Handler, tok string, next caddyhttp.HandlerFunc) (w *httptest.ResponseRecorder, err error) {
	req := httptest.NewRequest("GET", "/v1/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w = httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanicked, p)
		}
	}()
	return w, h.ServeHTTP(w, req, next)
}

// errPanicked is a handler that panicked.
var errPanicked = errors.New("panicked")

func TestHeldWriteLargerThanBlock(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{ResponseBytes: "1 per 10B", HoldBlock: "20B"}, 100)
	w, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte(strings.Repeat("x", 95)))
		return err
	})
	if err != nil || w.Body.Len() != 95 {
		t.Fatalf("%d bytes, %v; want all 95", w.Body.Len(), err)
	}
	// The first 20 bytes were held up front; one extension holds the other
	// 75, more than a block.
	if len(store.extends) != 1 || store.extends[0].Max != 8 || store.extends[0].Min != 1 {
		t.Errorf("extensions %+v, want one for up to 8 tokens", store.extends)
	}
	a, _ := store.Account(context.Background(), meter.Read{Account: "alice"})
	if a.Charged != 10 || a.Held != 0 || a.Balance != 90 {
		t.Errorf("account %+v, want 10 charged", a)
	}
}

func TestHeldWritePastBalance(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{ResponseBytes: "1 per 10B", HoldBlock: "20B"}, 5)
	var n int
	var werr error
	_, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		n, werr = w.Write([]byte(strings.Repeat("x", 95)))
		return nil
	})
	if n != 50 || werr != errCutOff {
		t.Errorf("the write wrote %d bytes with %v; want the 50 paid for, and errCutOff", n, werr)
	}
	// A handler that returns normally after a cut-off must not end the
	// response as if it were whole: the handler aborts it.
	if !errors.Is(err, errPanicked) || !strings.Contains(err.Error(), http.ErrAbortHandler.Error()) {
		t.Errorf("ServeHTTP returned %v, want the abort panic", err)
	}
	a, _ := store.Account(context.Background(), meter.Read{Account: "alice"})
	if a.Charged != 5 || a.Held != 0 || a.Balance != 0 {
		t.Errorf("account %+v, want all 5 charged", a)
	}
}

func TestHeldRenewsBeforeAStaleWrite(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{ResponseBytes: "1 per 1KiB"}, 5000)
	_, _ = serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		hr := w.(*responseWriter).meter
		hr.mu.Lock()
		hr.lastAck = time.Now().Add(-h.app.holdExpiry() / 2)
		hr.mu.Unlock()
		_, err := w.Write([]byte("x"))
		return err
	})
	if len(store.extends) != 1 || store.extends[0].Max != 0 || store.extends[0].TTL != DefaultHoldExpiry {
		t.Errorf("extensions %+v, want one renewal of the default expiry", store.extends)
	}
}

func TestReport(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   int64
		bad    bool
	}{
		{[]string{"7"}, 7, false},
		{[]string{"0"}, 0, false},
		{[]string{" 7 "}, 7, false},
		{[]string{"9007199254740991"}, 9007199254740991, false},
		{[]string{"9007199254740992"}, 0, true},
		{[]string{"-1"}, 0, true},
		{[]string{"+1"}, 0, true},
		{[]string{"07"}, 7, false},
		{[]string{"1.5"}, 0, true},
		{[]string{"abc"}, 0, true},
		{[]string{""}, 0, true},
		{[]string{"1", "2"}, 0, true},
	} {
		var hr held
		hr.report(c.values)
		if bad := hr.usage == usageBad; hr.usage == usageUnread || bad != c.bad || (!c.bad && hr.reported != c.want) {
			t.Errorf("report(%q): %d, bad %v; want %d, bad %v", c.values, hr.reported, bad, c.want, c.bad)
		}
	}
}

func TestUnannounce(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{[]string{"X-Usage"}, nil},
		{[]string{"x-usage, Grpc-Status"}, []string{"Grpc-Status"}},
		{[]string{"Grpc-Status", "X-Usage,Other"}, []string{"Grpc-Status, Other"}},
	} {
		h := http.Header{"Trailer": c.in}
		unannounce(h, "X-Usage")
		if got := h["Trailer"]; strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("unannounce(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// BenchmarkHeld measures a request held, metered and settled under a
// response price on the memory store: one hold, one write within it, one
// settle.
func BenchmarkHeld(b *testing.B) {
	h, _, tok := heldHandler(b, CompoundPrice{ResponseBytes: "1 per 1MiB"}, meter.MaxAmount)
	body := []byte(strings.Repeat("x", 1024))
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write(body)
		return err
	})
	b.ReportAllocs()
	for b.Loop() {
		if w, err := serve(b, h, tok, next); err != nil || w.Code != http.StatusOK {
			b.Fatalf("status %d, %v", w.Code, err)
		}
	}
}

// account reads alice's totals.
func (s *extendLog) alice(t testing.TB) meter.Account {
	t.Helper()
	a, err := s.Account(context.Background(), meter.Read{Account: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestHeldRefundAfterTheUsageHeaderSettled(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{Request: 1, UsageHeader: "X-Usage 1 reserve 50"}, 100)
	h.refundOn = refundSet{class5: true, aborted: true}
	_, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("X-Usage", "17")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("part of the answer"))
		panic(http.ErrAbortHandler)
	})
	if !errors.Is(err, errPanicked) {
		t.Fatalf("ServeHTTP returned %v, want the abort panic", err)
	}
	if a := store.alice(t); a.Charged != 18 || a.Refunded != 18 || a.Balance != 100 || a.Held != 0 {
		t.Errorf("account %+v, want the 18 settled by the header refunded", a)
	}
}

func TestHeldNothingToHold(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{RequestBytes: "1 per 1KiB"}, 100)
	w, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		_, err := w.Write([]byte("ok"))
		return err
	})
	if err != nil || w.Code != http.StatusOK || w.Header().Get("Tollgate-Charged") != "0" {
		t.Fatalf("a GET under a request_bytes price: status %d, charged %q, %v", w.Code, w.Header().Get("Tollgate-Charged"), err)
	}
	if a := store.alice(t); a.Charged != 0 || a.Balance != 100 {
		t.Errorf("account %+v, want nothing charged", a)
	}
}

func TestHeldWritePastContentLength(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{ResponseBytes: "1 per 1B"}, 100)
	var werr error
	w, _ := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Length", "10")
		_, werr = w.Write([]byte(strings.Repeat("x", 15)))
		return nil
	})
	if w.Body.Len() != 10 || !errors.Is(werr, http.ErrContentLength) {
		t.Errorf("%d bytes written, %v; want the 10 declared and ErrContentLength", w.Body.Len(), werr)
	}
	if a := store.alice(t); a.Charged != 10 || a.Held != 0 {
		t.Errorf("account %+v, want the 10 bytes sent charged", a)
	}
}

func TestHeldStaleRenewalAfterAFailedOne(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{ResponseBytes: "1 per 10B", HoldBlock: "10B"}, 100)
	var n int
	_, _ = serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		hr := w.(*responseWriter).meter
		hr.mu.Lock()
		hr.noMore = true // as after a renewal that failed under deny
		hr.lastAck = time.Now().Add(-h.app.holdExpiry() / 2)
		hr.mu.Unlock()
		n, _ = w.Write([]byte(strings.Repeat("x", 25)))
		return nil
	})
	// The stale hold is renewed before a byte goes out; then the write
	// stops at what is held, as no more blocks are taken.
	if len(store.extends) != 1 || store.extends[0].Max != 0 || n != 10 {
		t.Errorf("extensions %+v and %d bytes written; want one renewal and the 10 held", store.extends, n)
	}
}

// failingHolds is a memory store whose holds cannot reach it.
type failingHolds struct{ *extendLog }

func (failingHolds) Hold(context.Context, meter.Hold) (meter.Receipt, error) {
	return meter.Receipt{}, meter.ErrUnavailable
}

func TestHeldUnbilledKeepsTheUsageReport(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{UsageHeader: "X-Usage 1 reserve 50"}, 100)
	h.app.store, h.app.OnStoreError = failingHolds{store}, OnStoreErrorAllow
	w, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("X-Usage", "17")
		_, err := w.Write([]byte("ok"))
		w.Header().Set(http.TrailerPrefix+"X-Usage", "18")
		return err
	})
	if err != nil || w.Body.String() != "ok" {
		t.Fatalf("unbilled answer %q, %v", w.Body.String(), err)
	}
	for name := range w.Result().Header {
		if strings.Contains(name, "X-Usage") {
			t.Errorf("the client got %s", name)
		}
	}
	if _, ok := w.Header()[http.TrailerPrefix+"X-Usage"]; ok {
		t.Error("the usage trailer was left for the client")
	}
}

func TestHeldPanicBeforeHeadersIs500(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{Request: 3, UsageHeader: "X-Usage 1 reserve 50"}, 100)
	_, err := serve(t, h, tok, func(w http.ResponseWriter, r *http.Request) error {
		panic("boom")
	})
	if !errors.Is(err, errPanicked) {
		t.Fatalf("ServeHTTP returned %v, want the panic", err)
	}
	if a := store.alice(t); a.Charged != 0 || a.Held != 0 || a.Balance != 100 {
		t.Errorf("account %+v, want the hold released under refund_on 5xx", a)
	}
}
