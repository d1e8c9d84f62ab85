package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

const stripeWebhookSecret = "whsec_integration_secret"

// startStripeMock runs stripe-mock on a free loopback port, behind a proxy
// that records the form of each session it is asked to make and the
// session it answers. It returns the proxy's URL.
func startStripeMock(t *testing.T) (string, *stripeRecorder) {
	t.Helper()
	bin, err := exec.LookPath("stripe-mock")
	if err != nil {
		out, _ := exec.Command("go", "env", "GOPATH").Output()
		bin = filepath.Join(strings.TrimSpace(string(out)), "bin", "stripe-mock")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("stripe-mock is missing: the README's test command installs it (go install github.com/stripe/stripe-mock@v0.203.0)")
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "-http-addr", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec := &stripeRecorder{}
	target, _ := url.Parse("http://" + addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPost || resp.Request.URL.Path != "/v1/checkout/sessions" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var s struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &s)
		rec.mu.Lock()
		rec.sessions = append(rec.sessions, s.ID)
		rec.mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/checkout/sessions" {
			body, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(body))
			rec.mu.Lock()
			rec.forms = append(rec.forms, form)
			rec.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, rec
}

// stripeBlock is the stripe block of the global option for the Stripe API
// at apiURL: two bundles, starter (1,000 tokens) and pro (12,000), for the
// instance gw-test.
func stripeBlock(apiURL string) string {
	return fmt.Sprintf(`stripe {
			secret_key sk_test_123
			webhook_secret %s
			bundle starter price_1QxAbC 1000
			bundle pro price_1QyDeF 12000
			success_url https://app.example/account/?paid=1
			cancel_url https://app.example/account/
			instance gw-test
			api_url %s
		}`, stripeWebhookSecret, apiURL)
}

// stripeRecorder is what the proxy in front of stripe-mock saw.
type stripeRecorder struct {
	mu       sync.Mutex
	forms    []url.Values // of each session made, in order
	sessions []string     // the id of each, in order
}

func (r *stripeRecorder) last() (url.Values, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.forms) == 0 || len(r.sessions) == 0 {
		return nil, ""
	}
	return r.forms[len(r.forms)-1], r.sessions[len(r.sessions)-1]
}

// post sends a POST with a body and headers given as pairs.
func (g *gateway) post(t *testing.T, path, token, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestStripeCheckout buys a bundle end to end: …/checkout makes a session
// through the Stripe API (stripe-mock), with the bundle's price and
// quantity, the account and this instance; a signed
// checkout.session.completed delivered to tollgate_webhook then credits the
// recorded tokens exactly once.
func TestStripeCheckout(t *testing.T) {
	srv := redistest.Start(t)
	apiURL, rec := startStripeMock(t)
	up := newUpstream(t)
	g := startGateway(t, srv, `tollgate_account /account/*
	tollgate_webhook /hooks/stripe
	tollgate 1
	reverse_proxy `+up.Listener.Addr().String(), stripeBlock(apiURL))
	tok := token(t, "buyer")
	jsonType := []string{"Content-Type", "application/json"}

	resp, body := g.post(t, "/account/checkout", tok, `{"bundle":"starter","quantity":2}`, jsonType...)
	expectStatus(t, "checkout", resp, body, http.StatusOK)
	var answer struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil || !strings.HasPrefix(answer.URL, "https://checkout.stripe.com/") {
		t.Fatalf("checkout answered %s", body)
	}
	form, session := rec.last()
	for field, want := range map[string]string{
		"mode":                                             "payment",
		"line_items[0][price]":                             "price_1QxAbC",
		"line_items[0][quantity]":                          "2",
		"client_reference_id":                              "buyer",
		"metadata[tollgate_account]":                       "buyer",
		"metadata[tollgate_bundle]":                        "starter",
		"metadata[tollgate_instance]":                      "gw-test",
		"payment_intent_data[metadata][tollgate_account]":  "buyer",
		"payment_intent_data[metadata][tollgate_instance]": "gw-test",
		"success_url":                                      "https://app.example/account/?paid=1",
		"custom_text[submit][message]":                     "Tokens for the account buyer",
	} {
		if got := form.Get(field); got != want {
			t.Errorf("the session's %s: %q, want %q", field, got, want)
		}
	}
	if session == "" {
		t.Fatal("stripe-mock made no session")
	}

	// The delivery: signed, for this session, claiming more than the
	// bundle in its metadata.
	deliver := func(body []byte, sig string) (*http.Response, string) {
		return g.post(t, "/hooks/stripe", "", string(body), "Stripe-Signature", sig, "Content-Type", "application/json")
	}
	event, _ := json.Marshal(map[string]any{
		"id": "evt_1", "object": "event", "type": "checkout.session.completed", "livemode": false, "api_version": "2020-08-27",
		"data": map[string]any{"object": map[string]any{
			"id": session, "object": "checkout.session", "payment_status": "paid", "client_reference_id": "buyer", "amount_total": 4000,
			"metadata": map[string]string{"tollgate_account": "buyer", "tollgate_instance": "gw-test", "tollgate_tokens": "999999"},
		}},
	})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: event, Secret: stripeWebhookSecret})
	tampered := bytes.Replace(signed.Payload, []byte(`"paid"`), []byte(`"paid" `), 1)
	resp, body = deliver(tampered, signed.Header)
	expectStatus(t, "a tampered delivery", resp, body, http.StatusBadRequest)
	resp, body = deliver(bytes.Repeat([]byte(" "), 1<<20+1), signed.Header)
	expectStatus(t, "a delivery over 1 MiB", resp, body, http.StatusBadRequest)
	for range 3 {
		resp, body = deliver(signed.Payload, signed.Header)
		expectStatus(t, "the delivery", resp, body, http.StatusOK)
	}
	if a := g.account(t, "buyer"); a.Balance != 2000 || a.Credited != 2000 {
		t.Errorf("buyer after 3 deliveries: %+v, want 2 × 1000 credited once", a)
	}
	resp, body = g.do(t, "GET", "/hooks/stripe", "")
	expectStatus(t, "GET on the webhook", resp, body, http.StatusMethodNotAllowed)

	// Checkout refuses what a browser on another site could send.
	resp, body = g.post(t, "/account/checkout", tok, `{"bundle":"starter"}`, "Content-Type", "text/plain")
	expectStatus(t, "a text/plain checkout", resp, body, http.StatusUnsupportedMediaType)
	resp, body = g.post(t, "/account/checkout", tok, `{"bundle":"starter"}`, "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site")
	expectStatus(t, "a cross-site checkout", resp, body, http.StatusForbidden)
	resp, body = g.post(t, "/account/checkout", tok, `{"bundle":"gold"}`, jsonType...)
	expectStatus(t, "an unknown bundle", resp, body, http.StatusBadRequest)
	resp, body = g.do(t, "GET", "/account/checkout", tok)
	expectStatus(t, "GET on checkout", resp, body, http.StatusMethodNotAllowed)
}
