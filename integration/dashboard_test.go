package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stripe/stripe-go/v82/webhook"
	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// xssRoute and xssReason are a route name and a credit reason that would
// run script if a page put them into HTML.
const (
	xssRoute  = `/<img src=x onerror=window.pwned=1>`
	xssReason = `</script><script>window.pwned=2</script><img src=x onerror=window.pwned=3>`
)

// browser starts a headless Chromium for the test and returns its context,
// and the URLs of the requests the page makes, as they are made.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is missing: the README's test command installs it (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1200, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	var mu sync.Mutex
	var requests []string
	err = chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, string(e.Type)+" "+e.Request.URL)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requests)
	}
}

// getJSON reads one of the caller's answers with a token.
func getJSON(t *testing.T, g *gateway, path, tok string, v any) {
	t.Helper()
	resp, body := g.do(t, "GET", path, tok)
	expectStatus(t, path, resp, body, http.StatusOK)
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatal(err)
	}
}

// TestDashboard opens the dashboard in a real headless Chromium with a
// pasted token, and checks what it shows against the API: the balance,
// today's spending, the chart's points, the ledger page by page. Route
// names and credit reasons made of HTML show as text and run nothing. The
// buy button goes where …/checkout says, the page's own requests stay on
// its origin, and it cannot be framed.
func TestDashboard(t *testing.T) {
	srv := redistest.Start(t)
	apiURL, rec := startStripeMock(t)
	up := newUpstream(t)
	g := startGateway(t, srv, fmt.Sprintf(`tollgate_account /account/*
	tollgate_webhook /hooks/stripe
	tollgate {
		price /v1/expensive 10
		price %q 3
		price * 1
	}
	reverse_proxy %s`, xssRoute, up.Listener.Addr().String()), "lease off\n\t\ttopup_url https://app.example/buy\n\t\t"+stripeBlock(apiURL))
	tok := token(t, "viewer")
	resp, body := g.admin(t, "POST", "/accounts/viewer/credit", fmt.Sprintf(`{"amount":5000,"id":"fund","reason":%q}`, xssReason))
	expectStatus(t, "credit", resp, body, http.StatusOK)
	for i := range 12 {
		for _, path := range []string{"/v1/expensive", "/" + url.PathEscape(xssRoute[1:]), fmt.Sprintf("/other/%d", i)} {
			resp, body := g.do(t, "GET", path, tok)
			expectStatus(t, "GET "+path, resp, body, http.StatusOK)
		}
	}

	// What the API says, to compare with the page.
	var bal struct{ Balance, Held int64 }
	getJSON(t, g, "/account/balance", tok, &bal)
	var hours, days meter.UsageReport
	getJSON(t, g, "/account/usage?by=hour", tok, &hours)
	getJSON(t, g, "/account/usage?by=day", tok, &days)
	var page1 meter.LedgerPage
	getJSON(t, g, "/account/ledger?limit=20", tok, &page1)
	if page1.Next == nil {
		t.Fatal("the ledger fits one page: nothing to page")
	}
	var page2 meter.LedgerPage
	getJSON(t, g, "/account/ledger?limit=20&before="+*page1.Next, tok, &page2)
	ids := func(p meter.LedgerPage) []string {
		var out []string
		for _, e := range p.Entries {
			out = append(out, e.ID)
		}
		return out
	}

	resp, _ = g.do(t, "GET", "/account/", "")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		strings.Contains(csp, "unsafe-inline") || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("the page's headers: CSP %q, Referrer-Policy %q", csp, resp.Header.Get("Referrer-Policy"))
	}

	ctx, requests := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/account/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), tok),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("account")),
		chromedp.WaitVisible(chromedp.CSS("#ledger tbody tr")),
		chromedp.WaitVisible(chromedp.CSS("#routes tbody tr")),
	)
	if err != nil {
		t.Fatal(err)
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	eval := func(expr string) [][]string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](expr))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	pwned := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`typeof window.pwned`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ledgerRows := func() []string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#ledger tbody tr')].map(r => r.dataset.id)`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	balance, held, today, who := text("balance"), text("held"), text("today"), text("who")
	hourPoints := eval(`[...document.querySelectorAll('#chart-hours rect')].filter(r => r.dataset.charged !== '0').map(r => [r.dataset.start, r.dataset.charged])`)
	dayPoints := eval(`[...document.querySelectorAll('#chart-days rect')].filter(r => r.dataset.charged !== '0').map(r => [r.dataset.start, r.dataset.charged])`)
	rows := ledgerRows()
	routesText := text("routes")
	number := func(n int64) string {
		s := fmt.Sprint(n)
		for i := len(s) - 3; i > 0; i -= 3 {
			s = s[:i] + "," + s[i:]
		}
		return s
	}
	var spentToday int64
	for _, b := range days.Buckets {
		if b.Start.Equal(time.Now().UTC().Truncate(24 * time.Hour)) {
			spentToday += b.Charged
		}
	}
	if balance != number(bal.Balance) || held != number(bal.Held) || today != number(spentToday) || who != "Account viewer" {
		t.Errorf("the page shows %s balance %q held %q today %q; the API says %d, %d, %d", who, balance, held, today, bal.Balance, bal.Held, spentToday)
	}
	points := func(rep meter.UsageReport) [][]string {
		var out [][]string
		for _, b := range rep.Buckets {
			if b.Charged != 0 {
				out = append(out, []string{b.Start.UTC().Format("2006-01-02T15:04:05.000Z"), fmt.Sprint(b.Charged)})
			}
		}
		return out
	}
	if !slices.EqualFunc(hourPoints, points(hours), slices.Equal) || !slices.EqualFunc(dayPoints, points(days), slices.Equal) || len(hourPoints) == 0 {
		t.Errorf("the charts' points: hours %v days %v; the API says %v and %v", hourPoints, dayPoints, points(hours), points(days))
	}
	if !slices.Equal(rows, ids(page1)) {
		t.Errorf("the ledger's first page: %v, the API's %v", rows, ids(page1))
	}
	if p := pwned(); p != "undefined" {
		t.Errorf("a route name or a reason ran script: window.pwned is a %s", p)
	}
	if !strings.Contains(routesText, xssRoute) {
		t.Errorf("the route name does not show as text: %q", routesText)
	}

	// The next page of the ledger, and the reason of the first credit as
	// text on it.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("older")),
		chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`#ledger tr[data-id="%s"]`, page1.Entries[0].ID))),
	)
	if err != nil {
		t.Fatal(err)
	}
	if older := ledgerRows(); !slices.Equal(older, ids(page2)) {
		t.Errorf("the ledger's second page: %v, the API's %v", older, ids(page2))
	}
	if ledgerText := text("ledger"); !strings.Contains(ledgerText, "reason: "+xssReason) {
		t.Errorf("the credit's reason does not show as text: %q", ledgerText)
	}
	if p := pwned(); p != "undefined" {
		t.Errorf("a reason ran script: window.pwned is a %s", p)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	// On a phone's width the page does not overflow sideways: only the
	// ledger's own box scrolls.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	fits, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`))
	if err != nil || !fits {
		t.Errorf("at 390 px the page is wider than the screen: %v", err)
	}
	phone, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "dashboard-phone.png"), phone, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 900)); err != nil {
		t.Fatal(err)
	}

	// Every request the page made stayed on its origin.
	for _, r := range requests() {
		if _, u, _ := strings.Cut(r, " "); !strings.HasPrefix(u, g.URL+"/account/") {
			t.Errorf("the page requested %s", r)
		}
	}

	// Buy: the page goes where …/checkout answers.
	resp, body = g.post(t, "/account/checkout", tok, `{"bundle":"pro","quantity":1}`, "Content-Type", "application/json")
	expectStatus(t, "checkout", resp, body, http.StatusOK)
	var answer struct{ URL string }
	_ = json.Unmarshal([]byte(body), &answer)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[data-bundle="pro"]`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the page to go to the checkout", func() bool {
		return slices.Contains(requests(), "Document "+answer.URL)
	})

	// Back from Stripe, the purchase shows as pending until its credit
	// lands, then as arrived.
	_, session := rec.last()
	if err := chromedp.Do(ctx, chromedp.Navigate(g.URL+"/account/?paid=1"), chromedp.WaitVisible(chromedp.ID("pending"))); err != nil {
		t.Fatal(err)
	}
	if banner := text("pending"); !strings.Contains(banner, "pending") {
		t.Errorf("back from Stripe: %q", banner)
	}
	event, _ := json.Marshal(map[string]any{
		"id": "evt_paid", "object": "event", "type": "checkout.session.completed", "livemode": false,
		"data": map[string]any{"object": map[string]any{
			"id": session, "object": "checkout.session", "payment_status": "paid", "client_reference_id": "viewer",
			"metadata": map[string]string{"tollgate_account": "viewer", "tollgate_instance": "gw-test"},
		}},
	})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: event, Secret: stripeWebhookSecret})
	resp, body = g.post(t, "/hooks/stripe", "", string(signed.Payload), "Stripe-Signature", signed.Header)
	expectStatus(t, "the payment's delivery", resp, body, http.StatusOK)
	arrived, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("pending").textContent.includes("arrived: 12,000 tokens")`))
	if err != nil || !arrived {
		t.Errorf("the purchase never showed as arrived: %q, %v", text("pending"), err)
	}
}

// TestDashboardBasicAuth opens the dashboard behind basic_auth in account
// mode: the browser's own credentials identify the caller, and no token is
// asked for. With those credentials in the browser, another site's page can
// neither make it buy (a form POST, text/plain, is refused) nor frame the
// dashboard.
func TestDashboardBasicAuth(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	apiURL, rec := startStripeMock(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g := startGatewayWith(t, srv, "account {http.auth.user.id}", fmt.Sprintf(`basic_auth {
		carol %s
	}
	tollgate_account /account/*
	tollgate 2
	reverse_proxy %s`, hash, up.Listener.Addr().String()), "signup_bonus 50\n\t\t"+stripeBlock(apiURL))
	ctx, requests := browser(t)
	// The credentials a browser sends once its user has logged in.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:open sesame"))
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": basic},
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(g.URL+"/account/"), chromedp.WaitVisible(chromedp.ID("account"))); err != nil {
		t.Fatal(err)
	}
	who, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("who")))
	if err != nil {
		t.Fatal(err)
	}
	balance, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("balance")))
	if err != nil {
		t.Fatal(err)
	}
	signin, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("signin").hidden`))
	if err != nil {
		t.Fatal(err)
	}
	if who != "Account carol" || balance != "50" || !signin {
		t.Errorf("behind basic_auth the page shows %q, balance %q, the token form hidden %v", who, balance, signin)
	}

	// Another site (localhost is not 127.0.0.1's site) posts a form to
	// …/checkout.
	var statuses sync.Map // URL -> status of the documents the browser got
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventResponseReceived); ok && e.Type == network.ResourceTypeDocument {
			statuses.Store(e.Response.URL, e.Response.Status)
		}
	}); err != nil {
		t.Fatal(err)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/frame" {
			fmt.Fprintf(w, `<iframe id="f" src="%s/account/"></iframe>`, g.URL)
			return
		}
		fmt.Fprintf(w, `<form method="post" action="%s/account/checkout" enctype="text/plain">`+
			`<input name='{"bundle":"starter","x":"' value='"}'></form><script>document.forms[0].submit()</script>`, g.URL)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	if err := chromedp.Do(ctx, chromedp.Navigate(evilURL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cross-site form's answer", func() bool {
		_, ok := statuses.Load(g.URL + "/account/checkout")
		return ok
	})
	if st, _ := statuses.Load(g.URL + "/account/checkout"); st != int64(http.StatusForbidden) {
		t.Errorf("a cross-site form POST to checkout: status %v, want 403", st)
	}
	if form, _ := rec.last(); form != nil {
		t.Errorf("a cross-site form made a checkout session: %v", form)
	}
	// The dashboard framed by a page of the same site (another port), so
	// that the frame, if it rendered, would run in this tab: the frame's
	// document arrives, and nothing of it runs.
	before := len(requests())
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL+"/frame")); err != nil {
		t.Fatal(err)
	}
	framed := requests()[before:]
	if !slices.Contains(framed, "Document "+g.URL+"/account/") {
		t.Fatalf("the frame did not ask for the dashboard: %v", framed)
	}
	if slices.Contains(framed, "Script "+g.URL+"/account/app.js") {
		t.Errorf("another page framed the dashboard and ran its script: %v", framed)
	}
}
