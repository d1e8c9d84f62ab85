package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestHeldUploadRunsOutMidBlock reads a chunked body in 32 KiB reads, as
// reverse_proxy does, with a balance of 5 under blocks of 4: the read past
// the first block is granted the one token left, less than it needs, so the
// body is cut off there, and the answer is a 402, not a 503.
func TestHeldUploadRunsOutMidBlock(t *testing.T) {
	h, store, tok := heldHandler(t, CompoundPrice{RequestBytes: "1 per 1KiB", HoldBlock: "4KiB"}, 5)
	req := httptest.NewRequest(http.MethodPost, "/v1/upload", io.MultiReader(bytes.NewReader(make([]byte, 300_000))))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
	var forwarded int64
	err := h.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			forwarded += int64(n)
			if err != nil {
				return err
			}
		}
	}))
	if err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	var p problem
	if jerr := json.Unmarshal(w.Body.Bytes(), &p); jerr != nil || w.Code != http.StatusPaymentRequired || p.Type != problemType+"insufficient-balance" {
		t.Fatalf("status %d, body %s; want a 402 insufficient-balance", w.Code, w.Body)
	}
	if p.Balance == nil || *p.Balance != 0 || p.Price == nil || *p.Price != 4 || w.Header().Get("Retry-After") != "" {
		t.Errorf("problem %s, Retry-After %q; want balance 0, price 4 and no Retry-After", w.Body, w.Header().Get("Retry-After"))
	}
	if forwarded != 5<<10 {
		t.Errorf("%d bytes forwarded, want the 5 KiB paid for", forwarded)
	}
	if a := store.alice(t); a.Charged != 5 || a.Balance != 0 || a.Held != 0 {
		t.Errorf("account %+v, want 5 charged and nothing held", a)
	}
}
