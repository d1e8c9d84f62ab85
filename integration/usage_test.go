package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// usageSite is the metered site of the usage tests: 2 per request and 3 per
// reported unit, with a reserve of 10 units, so every request holds 32.
const usageSite = `tollgate {
		price * {
			request 2
			usage_header X-Usage 3 reserve 10
		}
	}
	reverse_proxy `

// usageHold is what a request holds up front under usageSite.
const usageHold = 2 + 3*10

// usageCredit is what each account of the usage tests starts with.
const usageCredit = 100

// usageBody is the body the usage upstream sends when no size is asked for.
const usageBody = "usage-body"

// usageUpstream is an upstream that reports usage as each request's query
// says.
type usageUpstream struct {
	addr string        // its address
	hits atomic.Int64  // the requests that reached it
	gate chan struct{} // closed to let gated responses finish
}

// newUsageUpstream starts a usageUpstream. Each h value of a request's query
// is sent as an X-Usage response header, each t value as an announced
// X-Usage trailer, and each u value as an unannounced one
// (http.TrailerPrefix); declare=1 announces the trailer without sending it.
// size=n sends n bytes of 'x' instead of usageBody, len=1 sends a
// Content-Length, and status=n answers with that status. early=v first
// sends a 103 Early Hints with X-Usage: v, a Link header and a
// Tollgate-Balance header of its own. o=v sends an announced X-Other
// trailer, which is none of Tollgate's business. gate=1 sends the
// first half of the body, flushed, and the rest once the gate is closed.
func newUsageUpstream(t *testing.T) *usageUpstream {
	u := &usageUpstream{gate: make(chan struct{})}
	u.addr = httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		q := r.URL.Query()
		if v := q.Get("early"); v != "" {
			w.Header().Set("X-Usage", v)
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.Header().Set("Tollgate-Balance", "999999")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("X-Usage")
			w.Header().Del("Link")
			w.Header().Del("Tollgate-Balance")
		}
		for _, v := range q["h"] {
			w.Header().Add("X-Usage", v)
		}
		if len(q["t"]) > 0 || q.Get("declare") == "1" {
			w.Header().Add("Trailer", "X-Usage")
		}
		if q.Get("o") != "" {
			w.Header().Add("Trailer", "X-Other")
		}
		body := []byte(usageBody)
		if s := q.Get("size"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				http.Error(w, "bad size", http.StatusBadRequest)
				return
			}
			body = []byte(strings.Repeat("x", n))
		}
		if q.Get("len") == "1" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		status := http.StatusOK
		if s := q.Get("status"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		w.WriteHeader(status)
		if q.Get("gate") == "1" {
			half := len(body) / 2
			if _, err := w.Write(body[:half]); err != nil {
				return
			}
			if err := http.NewResponseController(w).Flush(); err != nil {
				return
			}
			select {
			case <-u.gate:
			case <-r.Context().Done():
				return
			}
			body = body[half:]
		}
		if _, err := w.Write(body); err != nil {
			return
		}
		if len(q["t"]) > 0 {
			// After WriteHeader, the header map is the trailers.
			w.Header().Del("X-Usage")
			for _, v := range q["t"] {
				w.Header().Add("X-Usage", v)
			}
		}
		if v := q.Get("o"); v != "" {
			w.Header().Set("X-Other", v)
		}
		if len(q["u"]) > 0 {
			// Unannounced trailers need a chunked response: flush before
			// the handler ends, so that no Content-Length is set.
			if err := http.NewResponseController(w).Flush(); err != nil {
				return
			}
			for _, v := range q["u"] {
				w.Header().Add(http.TrailerPrefix+"X-Usage", v)
			}
		}
	})
	return u
}

// usageQuery builds the query of a request to the usage upstream from
// key/value pairs.
func usageQuery(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Add(kv[i], kv[i+1])
	}
	return "/u?" + q.Encode()
}

// usageGet sends an authenticated GET and reads the body to its end, so that
// resp.Trailer holds the trailers the client got.
func usageGet(t *testing.T, g *gateway, path, tok string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of %s: %v", path, err)
	}
	return resp, string(body)
}

// usageNoReport fails the test if the client got the usage report, as a
// header, as an announced trailer or as a trailer.
func usageNoReport(t *testing.T, resp *http.Response) {
	t.Helper()
	if v, ok := resp.Header["X-Usage"]; ok {
		t.Errorf("the client got the X-Usage header %q", v)
	}
	if v, ok := resp.Header[http.TrailerPrefix+"X-Usage"]; ok {
		t.Errorf("the client got the X-Usage trailer as a header %q", v)
	}
	for _, v := range resp.Header.Values("Trailer") {
		if strings.Contains(strings.ToLower(v), "x-usage") {
			t.Errorf("the client was told of an X-Usage trailer: Trailer %q", v)
		}
	}
	if v, ok := resp.Trailer["X-Usage"]; ok {
		t.Errorf("the client got the X-Usage trailer %q (or its announcement)", v)
	}
}

// usageHeaders checks Tollgate's response headers.
func usageHeaders(t *testing.T, resp *http.Response, charged, held, balance int64) {
	t.Helper()
	h := resp.Header
	if h.Get("Tollgate-Charged") != fmt.Sprint(charged) || h.Get("Tollgate-Held") != fmt.Sprint(held) || h.Get("Tollgate-Balance") != fmt.Sprint(balance) {
		t.Errorf("headers charged %q held %q balance %q; want %d, %d and %d",
			h.Get("Tollgate-Charged"), h.Get("Tollgate-Held"), h.Get("Tollgate-Balance"), charged, held, balance)
	}
	if len(h.Get("Tollgate-Op")) != 34 {
		t.Errorf("Tollgate-Op %q, want an op", h.Get("Tollgate-Op"))
	}
}

// usageSettled checks an account after its only request: what it was
// charged, nothing still held, and the settle entry of the request's op,
// which charged charged and released the rest of hold.
func usageSettled(t *testing.T, g *gateway, account string, resp *http.Response, hold, charged int64) {
	t.Helper()
	g.settled(t, account, usageCredit-charged, charged)
	e := g.lastSettle(t, account)
	if e.Amount != charged || e.Detail.Released != hold-charged || e.Detail.CutOff || e.Op != resp.Header.Get("Tollgate-Op") {
		t.Errorf("settle entry %+v; want %d charged, %d released, not cut off, op %s", e, charged, hold-charged, resp.Header.Get("Tollgate-Op"))
	}
}

// usageCapped reads tollgate_usage_capped_total from Caddy's admin endpoint.
func usageCapped(t *testing.T, g *gateway) float64 {
	t.Helper()
	resp, err := g.client.Get(g.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin metrics: status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tollgate_usage_capped_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", sc.Text(), err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Fatal("the admin endpoint's metrics have no tollgate_usage_capped_total")
	return 0
}

// usageCase is a request to the usage upstream and what it settles at.
type usageCase struct {
	name   string
	path   string
	units  int64 // the usage units charged
	capped bool  // settled at the reserve for a missing, bad or too large report
	early  bool  // settled from the header, when the headers went out
}

// usageRun sends each case's request for an account of its own, credited
// usageCredit, checks the response, the balance and the settle entry, and
// then that tollgate_usage_capped_total went up by the capped cases.
func usageRun(t *testing.T, g *gateway, prefix string, cases []usageCase) {
	t.Helper()
	before := usageCapped(t, g)
	var capped float64
	for _, c := range cases {
		if c.capped {
			capped++
		}
		t.Run(c.name, func(t *testing.T) {
			account := prefix + "-" + c.name
			g.credit(t, account, usageCredit)
			resp, body := usageGet(t, g, c.path, token(t, account))
			expectStatus(t, c.path, resp, body, http.StatusOK)
			if body != usageBody {
				t.Errorf("body %q, want %q", body, usageBody)
			}
			charged := 2 + 3*c.units
			if c.early {
				usageHeaders(t, resp, charged, 0, usageCredit-charged)
			} else {
				usageHeaders(t, resp, 0, usageHold, usageCredit-usageHold)
			}
			usageNoReport(t, resp)
			usageSettled(t, g, account, resp, usageHold, charged)
		})
	}
	if got := usageCapped(t, g) - before; got != capped {
		t.Errorf("tollgate_usage_capped_total went up by %v, want %v", got, capped)
	}
}

// TestUsageHeader checks usage reported in a response header: it settles
// when the headers go out at min(reported, reserve), and anything but one
// decimal integer in [0, 2^53-1] settles at the reserve and is counted.
func TestUsageHeader(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	h := func(v string) string { return usageQuery("h", v) }
	usageRun(t, g, "header", []usageCase{
		{name: "below", path: h("4"), units: 4, early: true},
		{name: "zero", path: h("0"), units: 0, early: true},
		{name: "at", path: h("10"), units: 10, early: true},
		{name: "above", path: h("11"), units: 10, capped: true, early: true},
		{name: "max", path: h("9007199254740991"), units: 10, capped: true, early: true},
		{name: "beyond-max", path: h("9007199254740992"), units: 10, capped: true, early: true},
		{name: "letters", path: h("abc"), units: 10, capped: true, early: true},
		{name: "negative", path: h("-1"), units: 10, capped: true, early: true},
		{name: "fraction", path: h("1.5"), units: 10, capped: true, early: true},
		{name: "plus", path: h("+7"), units: 10, capped: true, early: true},
		{name: "hex", path: h("0x7"), units: 10, capped: true, early: true},
		{name: "inner-space", path: h("7 8"), units: 10, capped: true, early: true},
		{name: "list", path: h("4, 5"), units: 10, capped: true, early: true},
		{name: "empty", path: h(""), units: 10, capped: true, early: true},
		{name: "two-values", path: usageQuery("h", "4", "h", "5"), units: 10, capped: true, early: true},
		// Optional whitespace around a field value is not part of it (RFC
		// 9110, section 5.5): the gateway gets "7", as any HTTP recipient
		// would.
		{name: "leading-space", path: h(" 7"), units: 7, early: true},
		// Without a header or a trailer, nothing was reported: the reserve
		// is settled at the end.
		{name: "missing", path: "/u", units: 10, capped: true},
	})
}

// TestUsageTrailer checks usage reported in a trailer, announced or not: the
// request stays held when the headers go out and settles at its end.
func TestUsageTrailer(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	tr := func(v string) string { return usageQuery("t", v) }
	un := func(v string) string { return usageQuery("u", v) }
	usageRun(t, g, "trailer", []usageCase{
		{name: "below", path: tr("4"), units: 4},
		{name: "zero", path: tr("0"), units: 0},
		{name: "at", path: tr("10"), units: 10},
		{name: "above", path: tr("11"), units: 10, capped: true},
		{name: "letters", path: tr("abc"), units: 10, capped: true},
		{name: "negative", path: tr("-1"), units: 10, capped: true},
		{name: "fraction", path: tr("1.5"), units: 10, capped: true},
		{name: "two-values", path: usageQuery("t", "4", "t", "5"), units: 10, capped: true},
		{name: "announced-not-sent", path: usageQuery("declare", "1"), units: 10, capped: true},
		{name: "unannounced-below", path: un("6"), units: 6},
		{name: "unannounced-above", path: un("12"), units: 10, capped: true},
		{name: "unannounced-letters", path: un("abc"), units: 10, capped: true},
	})
}

// TestUsageHeaderAndTrailer checks that a header is final: a trailer of the
// same name is then ignored, even when the header is unreadable, and never
// reaches the client.
func TestUsageHeaderAndTrailer(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	usageRun(t, g, "both", []usageCase{
		{name: "announced", path: usageQuery("h", "4", "t", "9"), units: 4, early: true},
		{name: "announced-lower", path: usageQuery("h", "9", "t", "1"), units: 9, early: true},
		{name: "unannounced", path: usageQuery("h", "4", "u", "9"), units: 4, early: true},
		{name: "bad-header", path: usageQuery("h", "abc", "t", "4"), units: 10, capped: true, early: true},
		{name: "header-above", path: usageQuery("h", "11", "u", "4"), units: 10, capped: true, early: true},
	})
}

// TestUsageUnaffordable checks that a balance below the reserve is a 402
// with the whole up-front price, before any upstream work, and that nothing
// stays held.
func TestUsageUnaffordable(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	g.credit(t, "short", usageHold-1)
	before := usageCapped(t, g)

	resp, body := usageGet(t, g, usageQuery("h", "0"), token(t, "short"))
	expectStatus(t, "a balance below the reserve", resp, body, http.StatusPaymentRequired)
	p := decodeProblem(t, resp, body)
	if p.Type != "urn:tollgate:problem:insufficient-balance" || p.Price == nil || *p.Price != usageHold || p.Balance == nil || *p.Balance != usageHold-1 {
		t.Errorf("402 problem %s; want price %d and balance %d", body, usageHold, usageHold-1)
	}
	if h := resp.Header; h.Get("Tollgate-Charged") != "0" || h.Get("Tollgate-Balance") != fmt.Sprint(usageHold-1) {
		t.Errorf("402 headers charged %q balance %q; want 0 and %d", h.Get("Tollgate-Charged"), h.Get("Tollgate-Balance"), usageHold-1)
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("the 402 reached the upstream %d times", n)
	}
	if a := g.account(t, "short"); a.Balance != usageHold-1 || a.Held != 0 || a.Charged != 0 {
		t.Errorf("account %+v; want balance %d, nothing held or charged", a, usageHold-1)
	}
	if got := usageCapped(t, g) - before; got != 0 {
		t.Errorf("a 402 moved tollgate_usage_capped_total by %v", got)
	}

	// One more token pays for the reserve.
	g.credit(t, "short", 1)
	resp, body = usageGet(t, g, usageQuery("h", "1"), token(t, "short"))
	expectStatus(t, "a balance of exactly the reserve", resp, body, http.StatusOK)
	usageHeaders(t, resp, 5, 0, usageHold-5)
	g.settled(t, "short", usageHold-5, 5)
	if n := up.hits.Load(); n != 1 {
		t.Errorf("the upstream got %d requests, want 1", n)
	}
}

// TestUsageRefundOn checks that a response refund_on covers pays nothing,
// whatever usage it reports, and that the report still does not reach the
// client.
func TestUsageRefundOn(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	before := usageCapped(t, g)
	for _, c := range []struct{ name, path string }{
		{"header", usageQuery("status", "500", "h", "4")},
		{"trailer", usageQuery("status", "500", "t", "4")},
		{"bad-header", usageQuery("status", "503", "h", "abc")},
	} {
		t.Run(c.name, func(t *testing.T) {
			account := "refund-" + c.name
			g.credit(t, account, usageCredit)
			resp, body := usageGet(t, g, c.path, token(t, account))
			if resp.StatusCode < 500 {
				t.Fatalf("status %d, want the upstream's 5xx; body %s", resp.StatusCode, body)
			}
			usageHeaders(t, resp, 0, 0, usageCredit)
			usageNoReport(t, resp)
			g.settled(t, account, usageCredit, 0)
		})
	}
	if got := usageCapped(t, g) - before; got != 0 {
		t.Errorf("released holds moved tollgate_usage_capped_total by %v", got)
	}
}

// TestUsageWithResponseBytes checks a price with both a response_bytes and a
// usage_header term: the total adds both, the header no longer settles the
// request when the headers go out, and response blocks held on the way do
// not eat into the reserve.
func TestUsageWithResponseBytes(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, `tollgate {
		price * {
			request 2
			response_bytes 1 per 1KiB
			usage_header X-Usage 3 reserve 10
			hold_block 4KiB
		}
	}
	reverse_proxy `+up.addr, "")
	const hold = 2 + 4 + 3*10 // the request, the first block and the reserve
	before := usageCapped(t, g)

	for _, c := range []struct {
		name  string
		path  string
		size  int64 // response bytes
		units int64 // usage units charged
	}{
		// 3000 bytes with a Content-Length: 3 KiB units.
		{"header", usageQuery("size", "3000", "h", "4"), 3000, 4},
		{"header-above", usageQuery("size", "3000", "h", "12"), 3000, 10},
		// Chunked, with a trailer.
		{"trailer", usageQuery("size", "3000", "t", "5"), 3000, 5},
		// 10000 bytes: past the first block, so the hold is extended.
		{"trailer-extended", usageQuery("size", "10000", "t", "7"), 10000, 7},
		{"header-extended", usageQuery("size", "10000", "h", "2"), 10000, 2},
		{"missing-extended", usageQuery("size", "10000"), 10000, 10},
		// The request settles at its end, when the trailer has come too:
		// the header is still final.
		{"both", usageQuery("size", "3000", "h", "4", "t", "9"), 3000, 4},
		{"both-unannounced", usageQuery("size", "10000", "h", "3", "u", "9"), 10000, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			account := "bytes-" + c.name
			g.credit(t, account, usageCredit)
			resp, body := usageGet(t, g, c.path, token(t, account))
			expectStatus(t, c.path, resp, body, http.StatusOK)
			if int64(len(body)) != c.size {
				t.Fatalf("%d body bytes, want %d", len(body), c.size)
			}
			usageHeaders(t, resp, 0, hold, usageCredit-hold)
			usageNoReport(t, resp)
			charged := 2 + (c.size+1023)/1024 + 3*c.units
			g.settled(t, account, usageCredit-charged, charged)
			if e := g.lastSettle(t, account); e.Amount != charged || e.Detail.CutOff || e.Op != resp.Header.Get("Tollgate-Op") {
				t.Errorf("settle entry %+v; want %d charged, not cut off", e, charged)
			}
		})
	}
	if got := usageCapped(t, g) - before; got != 2 {
		t.Errorf("tollgate_usage_capped_total went up by %v, want 2", got)
	}
}

// usageLastEntryKind reads the kind of an account's newest ledger entry
// straight from the Redis stream, with a plain read that CLIENT PAUSE WRITE
// does not hold up (the store's own reads are scripts, which it does).
func usageLastEntryKind(t *testing.T, g *gateway, account string) string {
	t.Helper()
	key := g.prefix + ":{" + base64.RawURLEncoding.EncodeToString([]byte(account)) + "}:ledger"
	msgs, err := g.redis.Client(t).XRevRangeN(context.Background(), key, "+", "-", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("ledger stream %s has no entry", key)
	}
	k, _ := msgs[0].Values["k"].(string)
	return k
}

// TestUsageSettledBeforeLastByte checks that a response with a
// Content-Length and no usage report is settled before its last byte goes
// out (SPEC 4.1: a client that has read a response to its end already sees
// the charge). Redis holds writes back while the last half of the body is
// sent, so a settle that comes after the last write is seen missing when the
// client has read the end.
func TestUsageSettledBeforeLastByte(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	const size = 256 << 10
	g.credit(t, "last-byte", usageCredit)

	req, err := http.NewRequest(http.MethodGet, g.URL+usageQuery("size", fmt.Sprint(size), "len", "1", "gate", "1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token(t, "last-byte"))
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	expectStatus(t, "a gated response", resp, "", http.StatusOK)
	if resp.ContentLength != size {
		t.Fatalf("Content-Length %d, want %d", resp.ContentLength, size)
	}
	usageHeaders(t, resp, 0, usageHold, usageCredit-usageHold)

	// Writes wait in Redis for 100 ms, well under the store's 200 ms timeout:
	// a settle made before the last write holds that write back until then.
	pause := g.redis.Client(t)
	if err := pause.Do(context.Background(), "CLIENT", "PAUSE", "100", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	close(up.gate)
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("the body: %d bytes, %v; want %d", n, err, size)
	}
	kind := usageLastEntryKind(t, g, "last-byte")
	if err := pause.Do(context.Background(), "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	if kind != "settle" {
		t.Errorf("the client read the whole body while the newest ledger entry was %q: the settle came after the last byte", kind)
	}
	waitFor(t, "the settle", func() bool { return g.account(t, "last-byte").Held == 0 })
	usageSettled(t, g, "last-byte", resp, usageHold, usageHold)
	usageNoReport(t, resp)
}

// TestUsageInformational checks that an informational (1xx) response does
// not carry the usage header (nor an upstream's Tollgate-* header) to the
// client either, and that only the final response's header is the report.
func TestUsageInformational(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	g.credit(t, "early", usageCredit)

	var mu sync.Mutex
	var early []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		defer mu.Unlock()
		early = append(early, h)
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet,
		g.URL+usageQuery("early", "9", "h", "4"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token(t, "early"))
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, "a response after a 103", resp, string(body), http.StatusOK)

	mu.Lock()
	defer mu.Unlock()
	if len(early) != 1 || early[0].Get("Link") == "" {
		t.Fatalf("the client got 1xx headers %v; want the upstream's 103 with its Link", early)
	}
	if v, ok := early[0]["X-Usage"]; ok {
		t.Errorf("the client got X-Usage %q in a 103", v)
	}
	// SPEC 4: Tollgate-* headers the upstream sends are dropped.
	if v, ok := early[0]["Tollgate-Balance"]; ok {
		t.Errorf("the client got the upstream's Tollgate-Balance %q in a 103", v)
	}
	usageHeaders(t, resp, 2+3*4, 0, usageCredit-2-3*4)
	usageNoReport(t, resp)
	usageSettled(t, g, "early", resp, usageHold, 2+3*4)
}

// TestUsageOtherTrailers checks that taking the usage trailer out leaves the
// upstream's other trailers to the client, announced or not.
func TestUsageOtherTrailers(t *testing.T) {
	srv := redistest.Start(t)
	up := newUsageUpstream(t)
	g := startGateway(t, srv, usageSite+up.addr, "")
	for _, c := range []struct {
		name  string
		path  string
		units int64
		early bool
	}{
		{"announced", usageQuery("t", "4", "o", "kept"), 4, false},
		{"unannounced", usageQuery("u", "5", "o", "kept"), 5, false},
		{"header", usageQuery("h", "6", "o", "kept"), 6, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			account := "other-" + c.name
			g.credit(t, account, usageCredit)
			resp, body := usageGet(t, g, c.path, token(t, account))
			expectStatus(t, c.path, resp, body, http.StatusOK)
			if v := resp.Trailer.Get("X-Other"); v != "kept" {
				t.Errorf("the client got the X-Other trailer %q, want kept; trailers %v", v, resp.Trailer)
			}
			charged := 2 + 3*c.units
			if c.early {
				usageHeaders(t, resp, charged, 0, usageCredit-charged)
			} else {
				usageHeaders(t, resp, 0, usageHold, usageCredit-usageHold)
			}
			usageNoReport(t, resp)
			usageSettled(t, g, account, resp, usageHold, charged)
		})
	}
}
