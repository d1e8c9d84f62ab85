package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// holdExpiry is the shortest hold_expiry the contract allows, which the
// tests of this file use to keep their wall time down.
const holdExpiry = 10 * time.Second

// holdPoll polls cond until it holds, and fails the test if it does not
// within the given time. It is for effects that happen in the background,
// such as a hold expiring on Redis's clock.
func holdPoll(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdStore returns a gateway with no Caddy of its own: only a Redis store
// under a prefix of its own, to credit and read the accounts that a gateway
// process on the same keys meters.
func holdStore(t *testing.T, srv *redistest.Server) *gateway {
	t.Helper()
	prefix := fmt.Sprintf("it%d", prefixes.Add(1))
	store, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL(), Prefix: prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &gateway{prefix: prefix, store: store, redis: srv}
}

// holdGet sends an authenticated GET to url with a client that allows slow
// bodies, and returns the response with its body unread.
func holdGet(t *testing.T, url, tok string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// holdExpired returns the release entries of op whose reason is expired.
func holdExpired(t *testing.T, g *gateway, account, op string) []meter.Entry {
	t.Helper()
	page, err := g.store.Ledger(context.Background(), meter.LedgerQuery{Read: meterRead(account), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var found []meter.Entry
	for _, e := range page.Entries {
		if e.Kind == meter.KindRelease && e.Detail.Reason == meter.ReasonExpired && e.Op == op {
			found = append(found, e)
		}
	}
	return found
}

// TestGatewayKilledMidStream kills a gateway process with SIGKILL while it
// streams a response: the hold it left behind expires on Redis's clock and
// is released in full, in the caller's favour.
func TestGatewayKilledMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the gateway and waits for a hold to expire")
	}
	srv := redistest.Start(t)
	const first = 6 << 10 // bytes the upstream sends before it stalls
	stall := make(chan struct{})
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(bytes.Repeat([]byte("x"), first))
		http.NewResponseController(w).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	})
	// Registered after the upstream, so it runs before the upstream closes.
	t.Cleanup(func() { close(stall) })

	g := holdStore(t, srv)
	p := startProcess(t, srv, g, `tollgate {
		price * {
			response_bytes 1 per 1KiB
			hold_block 4KiB
		}
	}
	reverse_proxy `+up, "hold_expiry 10s")
	g.credit(t, "alice", 100)

	resp := holdGet(t, p.URL+"/stream", token(t, "alice"))
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	op := resp.Header.Get("Tollgate-Op")
	if _, err := io.ReadFull(resp.Body, make([]byte, first)); err != nil {
		t.Fatalf("reading the first %d bytes: %v", first, err)
	}
	// The first block (4 tokens) was held up front; the bytes past it
	// needed a second block before they were written, so once the client
	// has them, 8 tokens are held.
	p.kill()
	if a := g.account(t, "alice"); a.Held != 8 || a.Balance != 92 || a.Charged != 0 {
		t.Fatalf("right after the kill: account %+v, want 8 held, balance 92, nothing charged", a)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("the body of a killed gateway ended cleanly: the client would think it had it all")
	}

	// Every read of the account first releases its expired holds, so polling
	// the account is what makes the expiry visible.
	holdPoll(t, "the hold to expire", 2*holdExpiry, func() bool { return g.account(t, "alice").Held == 0 })
	if a := g.account(t, "alice"); a.Balance != 100 || a.Charged != 0 || a.Held != 0 {
		t.Errorf("after expiry: account %+v, want balance 100, nothing charged or held", a)
	}
	if rel := holdExpired(t, g, "alice", op); len(rel) != 1 || rel[0].Amount != 8 || rel[0].Balance != 100 {
		t.Errorf("expired releases of op %s: %+v, want one of 8 leaving balance 100", op, rel)
	}
}

// TestSlowStreamRenewsItsHold streams an SSE-like response for longer than
// hold_expiry, with a quiet spell longer than hold_expiry/2 in the middle:
// the gateway's timer keeps renewing the hold, so the whole body arrives and
// is charged exactly.
//
// Without renewals the test fails. The hold is taken at t=0 and lives
// hold_expiry (10s) on Redis's clock after its last extension. Events go out
// at t=0..3s, which are too soon after the hold for a renewal before a
// write (that needs the last one to be hold_expiry/2 old), then nothing until
// t=12s. So only the timer (every hold_expiry/3) renews the hold in the
// quiet spell. Without it the hold expires at t≈10s, and the renewal before
// the write at t=12s finds it gone: the response is cut off at 800 bytes,
// and the ledger shows a release with reason expired. With neither kind of
// renewal, the extension at t=13s finds it gone and the response is cut off
// at 1024 bytes.
func TestSlowStreamRenewsItsHold(t *testing.T) {
	if testing.Short() {
		t.Skip("streams for longer than hold_expiry")
	}
	srv := redistest.Start(t)
	event := []byte("data: " + strings.Repeat("x", 200-len("data: \n\n")) + "\n\n")
	// The seconds at which an event goes out, and the last of them.
	schedule := map[int]bool{0: true, 1: true, 2: true, 3: true, 12: true, 13: true}
	const last = 13
	up := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for second := 0; second <= last; second++ {
			if second > 0 {
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				}
			}
			if !schedule[second] {
				continue
			}
			if _, err := w.Write(event); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
		}
	})
	g := startGateway(t, srv, `tollgate {
		price * {
			response_bytes 1 per 1KiB
			hold_block 1KiB
		}
	}
	reverse_proxy `+up, "hold_expiry 10s")
	g.credit(t, "alice", 100)

	resp := holdGet(t, g.URL+"/events", token(t, "alice"))
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	want := bytes.Repeat(event, len(schedule)) // 1200 bytes: 2 tokens
	if err != nil || !bytes.Equal(body, want) || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %d bytes, error %v; want 200 and all %d bytes", resp.StatusCode, len(body), err, len(want))
	}
	if h := resp.Header; h.Get("Tollgate-Charged") != "0" || h.Get("Tollgate-Held") != "1" {
		t.Errorf("headers charged %q held %q; want 0 and 1", h.Get("Tollgate-Charged"), h.Get("Tollgate-Held"))
	}
	op := resp.Header.Get("Tollgate-Op")
	// A chunked response is settled before its end is written: no polling.
	g.settled(t, "alice", 98, 2)
	if e := g.lastSettle(t, "alice"); e.Amount != 2 || e.Detail.CutOff || e.Detail.Released != 0 || e.Op != op {
		t.Errorf("settle entry %+v, want 2 for op %s, nothing released, not cut off", e, op)
	}
	if rel := holdExpired(t, g, "alice", op); len(rel) != 0 {
		t.Errorf("the hold expired while its request was alive: %+v", rel)
	}
}

// holdPort returns the port of url.
func holdPort(t *testing.T, u string) int {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(parsed.Port())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// holdLoad adapts a Caddyfile and loads it into this process's Caddy,
// failing the test if that does not return within a few seconds: a reload
// must not wait for the requests in flight.
func holdLoad(t *testing.T, cfg string) {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", cfg, err)
	}
	done := make(chan error, 1)
	go func() { done <- caddy.Load(js, true) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reloading:\n%s\n%v", cfg, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reload did not return while a download was in flight")
	}
}

// holdDownload downloads 100 MiB from url, and calls reload once the first
// 10 MiB have arrived. It returns the response and the bytes read in all.
func holdDownload(t *testing.T, url, tok string, reload func()) (*http.Response, int64) {
	t.Helper()
	resp := holdGet(t, url, tok)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	n, err := io.CopyN(io.Discard, resp.Body, 10*MiB)
	if err != nil {
		t.Fatalf("the first 10 MiB: %d bytes, %v", n, err)
	}
	reload()
	rest, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		t.Fatalf("after the reload: %d more bytes, then %v", rest, err)
	}
	return resp, n + rest
}

// holdSite is a metered site that prices response bytes at perMiB tokens
// per MiB, in front of the byte upstream at up.
func holdSite(up string, perMiB int) string {
	return fmt.Sprintf(`tollgate {
		price * {
			response_bytes %d per 1MiB
		}
	}
	reverse_proxy %s`, perMiB, up)
}

// TestReloadDuring100MiBDownload reloads the config, with a new price, while
// a 100 MiB download is in flight: the download completes and is charged
// once, at the price it started under; requests after the reload pay the
// new one.
func TestReloadDuring100MiBDownload(t *testing.T) {
	const size = 100 * MiB
	path := fmt.Sprintf("/len/%d", size)

	// A reload that keeps the store's settings shares its client; one that
	// changes them hands the old client back to the pool while the download
	// still uses it.
	for _, c := range []struct{ name, store string }{
		{"redis", ""},
		{"redis with a new store client", "timeout 300ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			holdRedisReload(t, path, size, c.store)
		})
	}

	t.Run("memory", func(t *testing.T) {
		up, _ := newByteUpstream(t)
		port, adminPort := freePort(t), freePort(t)
		config := func(perMiB int) string {
			return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		jwt {
			hmac_secret %s
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, adminPort, secret, port, holdSite(up, perMiB))
		}
		if err := load(t, config(1)); err != nil {
			t.Fatal(err)
		}
		g := &gateway{
			URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
			Admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
			client: &http.Client{Timeout: 10 * time.Second},
		}
		// The memory store lives as long as this process: a name of its own.
		account := fmt.Sprint("hold-memo-", time.Now().UnixNano())
		r, b := g.admin(t, "POST", "/accounts/"+account+"/credit", `{"amount":200,"id":"h1"}`)
		expectStatus(t, "credit", r, b, http.StatusOK)
		tok := tokenPlain(t, account)

		resp, n := holdDownload(t, g.URL+path, tok, func() {
			holdLoad(t, config(2))
		})
		if n != size {
			t.Fatalf("%d bytes arrived, want %d", n, size)
		}
		holdMemorySettled(t, g, account, 100, 100)
		var ledger struct {
			Entries []struct {
				Kind   string `json:"kind"`
				Amount int64  `json:"amount"`
				Op     string `json:"op"`
				Detail struct {
					CutOff bool `json:"cut_off"`
				} `json:"detail"`
			} `json:"entries"`
		}
		r, b = g.admin(t, "GET", "/accounts/"+account+"/ledger?limit=1000", "")
		expectStatus(t, "ledger", r, b, http.StatusOK)
		if err := json.Unmarshal([]byte(b), &ledger); err != nil {
			t.Fatal(err)
		}
		settles := 0
		for _, e := range ledger.Entries {
			if e.Kind == meter.KindSettle {
				settles++
				if e.Amount != 100 || e.Detail.CutOff || e.Op != resp.Header.Get("Tollgate-Op") {
					t.Errorf("settle entry %+v, want 100, not cut off", e)
				}
			}
		}
		if settles != 1 {
			t.Errorf("%d settle entries, want 1: %s", settles, b)
		}

		// The reload took effect: 1 MiB now costs 2.
		if _, n, err := g.get(t, fmt.Sprintf("/len/%d", MiB), tok); err != nil || n != MiB {
			t.Fatalf("1 MiB after the reload: %d bytes, %v", n, err)
		}
		holdMemorySettled(t, g, account, 98, 102)
	})
}

// holdRedisReload downloads path, size bytes at 1 token per MiB, through a
// gateway on Redis that is reloaded with a price of 2 per MiB, and the store
// option store added, after the first 10 MiB.
func holdRedisReload(t *testing.T, path string, size int64, store string) {
	t.Helper()
	srv := redistest.Start(t)
	up, hits := newByteUpstream(t)
	g := startGateway(t, srv, holdSite(up, 1), "")
	g.credit(t, "alice", 200)
	tok := token(t, "alice")
	resp, n := holdDownload(t, g.URL+path, tok, func() {
		cfg := gatewayConfig(srv, g.prefix, holdPort(t, g.Admin), holdPort(t, g.URL), holdSite(up, 2), "")
		if store != "" {
			cfg = strings.Replace(cfg, "prefix "+g.prefix, "prefix "+g.prefix+"\n\t\t\t"+store, 1)
		}
		holdLoad(t, cfg)
	})
	if n != size {
		t.Fatalf("%d bytes arrived, want %d", n, size)
	}
	g.settled(t, "alice", 100, 100)
	if e := g.lastSettle(t, "alice"); e.Amount != 100 || e.Detail.CutOff || e.Op != resp.Header.Get("Tollgate-Op") {
		t.Errorf("settle entry %+v, want 100, not cut off", e)
	}

	// The reload took effect: 1 MiB now costs 2.
	if _, n, err := g.get(t, fmt.Sprintf("/len/%d", MiB), tok); err != nil || n != MiB {
		t.Fatalf("1 MiB after the reload: %d bytes, %v", n, err)
	}
	g.settled(t, "alice", 98, 102)
	if hits() != 2 {
		t.Errorf("%d upstream requests, want 2", hits())
	}
}

// holdMemorySettled checks an account on the memory store, through Caddy's
// admin endpoint, as gateway.settled does on Redis.
func holdMemorySettled(t *testing.T, g *gateway, account string, balance, charged int64) {
	t.Helper()
	r, b := g.admin(t, "GET", "/accounts/"+account, "")
	expectStatus(t, "account", r, b, http.StatusOK)
	var a meter.Account
	if err := json.Unmarshal([]byte(b), &a); err != nil {
		t.Fatal(err)
	}
	if a.Balance != balance || a.Charged != charged || a.Held != 0 {
		t.Errorf("account %s: balance %d, charged %d, held %d; want %d, %d and 0", account, a.Balance, a.Charged, a.Held, balance, charged)
	}
}
