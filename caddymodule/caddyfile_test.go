package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

const goodSecret = "unit-test-secret-0123456789-abcdefgh"

// adapt adapts a Caddyfile to JSON.
func adapt(t *testing.T, cfg string) ([]byte, error) {
	t.Helper()
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	return js, err
}

// site wraps global options and a site body into a Caddyfile.
func site(globals, body string) string {
	return "{\n\tadmin off\n\ttollgate {\n" + globals + "\n\t}\n}\n\nhttp://localhost:8080 {\n" + body + "\n}\n"
}

func TestGlobalOption(t *testing.T) {
	js, err := adapt(t, site(`
		store redis {
			url redis://127.0.0.1:6379/1
			timeout 150ms
			prefix tg
		}
		jwt {
			hmac_secret `+goodSecret+`
			public_key /etc/issuer.pem k1
			public_key /etc/other.pem
			algorithms HS256 RS256
			issuer https://issuer.example/
			audience https://api.example/
			leeway 10s
			account_claim uid
			scope_claim scp
			admin_audience https://ops.example/
		}
		signup_bonus 100
		ledger_retention 500
		on_store_error allow`, "tollgate 1\nrespond ok"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Tollgate App `json:"tollgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	app := cfg.Apps.Tollgate
	want := App{
		Store: &StoreConfig{Kind: "redis", URL: "redis://127.0.0.1:6379/1", Timeout: caddy.Duration(150e6), Prefix: "tg"},
		JWT: &JWTConfig{
			HMACSecret: goodSecret,
			PublicKeys: []PublicKeyConfig{{File: "/etc/issuer.pem", KID: "k1"}, {File: "/etc/other.pem"}},
			Algorithms: []string{"HS256", "RS256"},
			Issuer:     "https://issuer.example/", Audience: "https://api.example/",
			Leeway: caddy.Duration(10e9), AccountClaim: "uid",
			ScopeClaim: "scp", AdminAudience: "https://ops.example/",
		},
		SignupBonus: 100, LedgerRetention: 500, OnStoreError: "allow",
	}
	got, _ := json.Marshal(app)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("adapted app\n%s\nwant\n%s", got, exp)
	}

	// The JSON round trip keeps every field.
	var again App
	if err := json.Unmarshal(got, &again); err != nil {
		t.Fatal(err)
	}
	if back, _ := json.Marshal(again); string(back) != string(got) {
		t.Errorf("round trip\n%s\nwant\n%s", back, got)
	}

	js, err = adapt(t, site(`store redis {
			sentinel mymaster 10.0.0.1:26379 10.0.0.2:26379
			username tg
			password {env.REDIS_PASSWORD}
			sentinel_password {env.SENTINEL_PASSWORD}
			tls {
				ca /etc/ca.pem
				server_name redis.internal
				client_cert /etc/c.pem /etc/c.key
			}
			replicas 1
		}`, "tollgate 1\nrespond ok"))
	if want := `"store":{"kind":"redis","sentinel":{"master":"mymaster","addrs":["10.0.0.1:26379","10.0.0.2:26379"]},` +
		`"username":"tg","password":"{env.REDIS_PASSWORD}","sentinel_password":"{env.SENTINEL_PASSWORD}",` +
		`"tls":{"ca":"/etc/ca.pem","server_name":"redis.internal","client_cert":"/etc/c.pem","client_key":"/etc/c.key"},"replicas":1}`; err != nil || !strings.Contains(string(js), want) {
		t.Errorf("sentinel store: %s, %v", js, err)
	}
	js, err = adapt(t, site("store redis {\n\t\t\tcluster a:7000 b:7000\n\t\t}", "tollgate 1\nrespond ok"))
	if err != nil || !strings.Contains(string(js), `"store":{"kind":"redis","cluster":["a:7000","b:7000"]}`) {
		t.Errorf("cluster store: %s, %v", js, err)
	}

	js, err = adapt(t, site("store redis redis://h:1/0", "tollgate 1\nrespond ok"))
	if err != nil || !strings.Contains(string(js), `"store":{"kind":"redis","url":"redis://h:1/0"}`) {
		t.Errorf("short store form: %s, %v", js, err)
	}

	js, err = adapt(t, site(`topup_url https://app.example/buy
		stripe {
			secret_key {env.STRIPE_SECRET_KEY}
			webhook_secret {env.STRIPE_WEBHOOK_SECRET}
			bundle starter price_1QxAbC 1000
			bundle pro price_1QyDeF 12000
			success_url https://app.example/account/?paid=1
			cancel_url https://app.example/account/
			instance api-eu
			api_url http://127.0.0.1:12111
		}`, "tollgate 1\nrespond ok"))
	if want := `"topup_url":"https://app.example/buy","stripe":{"secret_key":"{env.STRIPE_SECRET_KEY}",` +
		`"webhook_secret":"{env.STRIPE_WEBHOOK_SECRET}","bundles":[{"name":"starter","price":"price_1QxAbC","tokens":1000},` +
		`{"name":"pro","price":"price_1QyDeF","tokens":12000}],"success_url":"https://app.example/account/?paid=1",` +
		`"cancel_url":"https://app.example/account/","instance":"api-eu","api_url":"http://127.0.0.1:12111"}`; err != nil || !strings.Contains(string(js), want) {
		t.Errorf("stripe: %s, %v", js, err)
	}
}

func TestGlobalOptionErrors(t *testing.T) {
	for _, c := range []struct{ globals, want string }{
		{"store", "wrong argument count"},
		{"store disk", `unknown store "disk"`},
		{"store redis {\n\t\t\ttimeout 1s\n\t\t}", "exactly one of url, sentinel and cluster"},
		{"store redis {\n\t\t\tsentinel m\n\t\t}", "sentinel needs a master name and at least one sentinel address"},
		{"store redis {\n\t\t\tcluster\n\t\t}", "cluster needs at least one node address"},
		{"store redis {\n\t\t\turl u\n\t\t\treplicas -1\n\t\t}", "replicas must be a whole number"},
		{"store redis {\n\t\t\turl u\n\t\t\treplicas one\n\t\t}", "replicas must be a whole number"},
		{"store redis {\n\t\t\tcluster a:1\n\t\t\ttls {\n\t\t\t\tpin x\n\t\t\t}\n\t\t}", `unknown tls option "pin"`},
		{"store redis {\n\t\t\tcluster a:1\n\t\t\ttls {\n\t\t\t\tclient_cert c.pem\n\t\t\t}\n\t\t}", "wrong argument count"},
		{"store redis {\n\t\t\turl u\n\t\t\tpool 3\n\t\t}", `unknown store redis option "pool"`},
		{"store redis {\n\t\t\turl u\n\t\t\tcluster a:1 b:2\n\t\t}", "exactly one of url, sentinel and cluster"},
		{"store redis {\n\t\t\turl u\n\t\t\ttimeout soon\n\t\t}", "bad duration"},
		{"jwt {\n\t\t\tcolour blue\n\t\t}", `unknown jwt option "colour"`},
		{"jwt {\n\t\t\thmac_secret\n\t\t}", "wrong argument count"},
		{"jwt {\n\t\t\thmac_secret a b\n\t\t}", "wrong argument count"},
		{"jwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}\n\t\taccount {http.auth.user.id}", "jwt or account, not both"},
		{"signup_bonus -1", "not an integer"},
		{"signup_bonus 1.5", "not an integer"},
		{"signup_bonus 9007199254740992", "not an integer"},
		{"ledger_retention 0", "at least 1"},
		{"on_store_error maybe", "deny or allow"},
		{"colour blue", `unknown tollgate option "colour"`},
		{"stripe {\n\t\t\tbundle starter price_1\n\t\t}", "bundle takes a name, a Stripe Price id and the tokens a unit credits"},
		{"stripe {\n\t\t\tbundle starter price_1 many\n\t\t}", "tokens must be a positive integer"},
		{"stripe {\n\t\t\tcurrency eur\n\t\t}", `unknown stripe option "currency"`},
		{"stripe {\n\t\t\tsecret_key a b\n\t\t}", "wrong argument count"},
		{"stripe now", "wrong argument count"},
		{"lease on", `lease takes off or a block, not "on"`},
		{"lease off now", "wrong argument count"},
		{"lease {\n\t\t\tsize 0\n\t\t}", "lease size must be auto or a positive integer"},
		{"lease {\n\t\t\tsize -5\n\t\t}", "lease size must be auto or a positive integer"},
		{"lease {\n\t\t\tsize 1e3\n\t\t}", "lease size must be auto or a positive integer"},
		{"lease {\n\t\t\tsize\n\t\t}", "wrong argument count"},
		{"lease {\n\t\t\tflush soon\n\t\t}", "bad duration"},
		{"lease {\n\t\t\tmin_balance -1\n\t\t}", "not an integer"},
		{"lease {\n\t\t\tmin_balance 10 20\n\t\t}", "wrong argument count"},
		{"lease {\n\t\t\tstrategy greedy\n\t\t}", `unknown lease option "strategy"`},
	} {
		_, err := adapt(t, site(c.globals, "respond ok"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.globals, err, c.want)
		}
	}
}

func TestDirective(t *testing.T) {
	js, err := adapt(t, site("jwt {\n\t\t\thmac_secret "+goodSecret+"\n\t\t}", `
	@chat path /v1/chat
	tollgate {
		price @chat 5
		price /v1/* 2
		price * 1
		refund_on 502 503 504 error
	}
	respond ok`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"handler":"tollgate"`,
		`{"amount":5,"match":[{"path":["/v1/chat"]}],"route":"@chat"}`,
		`{"amount":2,"match":[{"path":["/v1/*"]}],"route":"/v1/*"}`,
		`{"amount":1}`,
		`"refund_on":["502","503","504","error"]`,
	} {
		if !strings.Contains(string(js), want) {
			t.Errorf("adapted config lacks %s:\n%s", want, js)
		}
	}
	// tollgate runs before request_header and reverse_proxy.
	js, err = adapt(t, site("", "reverse_proxy localhost:9\nrequest_header X-A b\ntollgate 3"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(js)
	if i, j := strings.Index(s, `"handler":"tollgate"`), strings.Index(s, `"handler":"headers"`); i < 0 || j < 0 || i > j {
		t.Errorf("tollgate is not ordered before request_header:\n%s", s)
	}
}

func TestDirectiveErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"tollgate", "needs an amount"},
		{"tollgate {\n\trefund_on 5xx\n}", "needs an amount"},
		{"tollgate 0", "amount must be a whole number"},
		{"tollgate -3", "amount must be a whole number"},
		{"tollgate 1.5", "amount must be a whole number"},
		{"tollgate 9007199254740992", "amount must be a whole number"},
		{"tollgate 1 2", "wrong argument count"},
		{"tollgate {\n\tprice 5\n}", "needs a matcher"},
		{"tollgate {\n\tprice\n}", "needs a matcher"},
		{"tollgate {\n\tprice /v1/*\n}", "needs an amount"},
		{"tollgate {\n\tprice @nope 5\n}", "nope"},
		{"tollgate {\n\tprice * 5 6\n}", "wrong argument count"},
		{"tollgate {\n\tprice * {\n\t\tresponse_bytes 1 MiB\n\t}\n}", "response_bytes <amount> per <size>"},
		{"tollgate {\n\tprice * {\n\t\tusage_header X-Tokens 2\n\t}\n}", "usage_header <Header-Name> <amount> reserve <units>"},
		{"tollgate {\n\tprice * {\n\t\trequest 0\n\t}\n}", "amount must be a whole number"},
		{"tollgate {\n\tprice * {\n\t\tresponse_bytes 1 per 1.5MiB\n\t}\n}", "size must be a whole number"},
		{"tollgate {\n\tprice * {\n\t\thold_block lots\n\t}\n}", "hold_block"},
		{"tollgate {\n\tprice * {\n\t\tusage_header X-Tokens 1 reserve -4\n\t}\n}", "usage_header reserve"},
		{"tollgate {\n\tprice * {\n\t\trequest 5\n\t}\n}", "needs request_bytes, response_bytes or usage_header"},
		{"tollgate {\n\tprice * {\n\t\tusage_header X:Tokens 1 reserve 4\n\t}\n}", "is not a header name"},
		{"tollgate {\n\tprice * {\n\t\tusage_header X-Tokens 1 reserve 4\n\t\thold_block 1MiB\n\t}\n}", "hold_block needs a request_bytes or response_bytes price"},
		{"tollgate {\n\tprice * {\n\t\trequest 9007199254740991\n\t\tresponse_bytes 1 per 1KiB\n\t}\n}", "exceeds 2^53-1"},
		{"tollgate {\n\tprice * {\n\t\tusage_header X-Tokens 9007199254740991 reserve 2\n\t}\n}", "exceeds 2^53-1"},
		{"tollgate {\n\tprice * {\n\t\tcolour blue\n\t}\n}", `unknown price subdirective "colour"`},
		{"tollgate {\n\tcolour blue\n}", `unknown tollgate subdirective "colour"`},
		{"tollgate {\n\trefund_on\n}", "wrong argument count"},
		{"tollgate {\n\trefund_on 6xx\n}", "refund_on"},
		{"tollgate {\n\trefund_on 200\n}", "refund_on"},
	} {
		_, err := adapt(t, site("", c.body+"\nrespond ok"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.body, err, c.want)
		}
	}
}

// validate adapts and provisions a config without starting it.
func validate(t *testing.T, cfg string) error {
	t.Helper()
	js, err := adapt(t, cfg)
	if err != nil {
		return err
	}
	return caddy.Validate(mustConfig(t, js))
}

func mustConfig(t *testing.T, js []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

func TestProvisionErrors(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_EMPTY", "")
	t.Setenv("TOLLGATE_TEST_SHORT", "short")
	for _, c := range []struct{ globals, body, want string }{
		{"", "tollgate 1", "needs jwt"},
		{"jwt {\n\t\t\thmac_secret {env.TOLLGATE_TEST_SHORT}\n\t\t}", "tollgate 1", "at least 32 bytes"},
		{"jwt {\n\t\t\thmac_secret {env.TOLLGATE_TEST_EMPTY}\n\t\t}", "tollgate 1", "empty"},
		{"jwt {\n\t\t\thmac_secret {env.TOLLGATE_TEST_UNSET}\n\t\t}", "tollgate 1", "empty"},
		{"jwt {\n\t\t\tpublic_key /nonexistent.pem\n\t\t\tissuer i\n\t\t\taudience a\n\t\t}", "tollgate 1", "reading public key"},
		{"jwt {\n\t\t\tjwks http://idp.example/jwks.json\n\t\t\tissuer i\n\t\t\taudience a\n\t\t}", "tollgate 1", "must be https"},
		{"jwt {\n\t\t\tjwks https://idp.example/jwks.json\n\t\t}", "tollgate 1", "requires issuer and audience"},
		{"jwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t\tadmin_audience {env.TOLLGATE_TEST_EMPTY}\n\t\t}", "tollgate 1", "empty after placeholders"},
		{"jwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t\talgorithms RS256\n\t\t}", "tollgate 1", "no public key"},
		{"account alice", "tollgate 1", "account must be one placeholder"},
		{"account user-{http.auth.user.id}", "tollgate 1", "account must be one placeholder"},
		{"account {http.request.uri.query.u}", "tollgate 1", "account must be one placeholder"},
		{"account {http.request.cookie.user}", "tollgate 1", "account must be one placeholder"},
		{"account {http.auth.user.id}", "tollgate_admin /ops/*", "needs jwt"},
		{"hold_expiry 9s\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "hold_expiry must be at least 10s"},
		{"hold_expiry 367d\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "hold_expiry must be at most"},
		{"topup_url /buy\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "topup_url must be an absolute http or https URL"},
		{"jwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate_webhook /hooks/stripe", "tollgate_webhook directive needs stripe"},
		{"stripe {\n\t\t\tsecret_key sk_test_1\n\t\t\tbundle a price_a 5\n\t\t\tsuccess_url https://a.example/\n\t\t\tcancel_url https://a.example/\n\t\t}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "stripe needs a webhook_secret"},
		{"topup_url javascript:alert(1)\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "topup_url must be an absolute http or https URL"},
		{"topup_url ftp://files.example/\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "topup_url must be an absolute http or https URL"},
		{"store redis {env.TOLLGATE_TEST_EMPTY}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "url is empty"},
		{"store redis {\n\t\t\turl redis://h:1/0\n\t\t\tprefix a{b\n\t\t}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "braces"},
		{"lease {\n\t\t\tflush 0.5ms\n\t\t}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "lease flush must be between 1ms and 1m0s"},
		{"lease {\n\t\t\tflush 2m\n\t\t}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "lease flush must be between"},
		{"hold_expiry 10s\n\t\tlease {\n\t\t\tflush 3s\n\t\t}\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}", "tollgate 1", "at most a quarter of hold_expiry"},
	} {
		err := validate(t, site(c.globals, c.body+"\nrespond ok"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.globals, err, c.want)
		}
	}
	hmac := "\n\t\tjwt {\n\t\t\thmac_secret " + goodSecret + "\n\t\t}"
	for _, good := range []struct{ globals, body string }{
		{hmac, "tollgate 1"},
		{"account {http.auth.user.id}", "tollgate 1\ntollgate_account /account/*"},
		{"jwt {\n\t\t\tjwks https://idp.example/jwks.json {\n\t\t\t\trefresh 10m\n\t\t\t\twait 100ms\n\t\t\t\ttimeout 2s\n\t\t\t}\n\t\t\tissuer i\n\t\t\taudience a\n\t\t}", "tollgate 1"},
		{"lease off" + hmac, "tollgate 1"},
		{"lease {\n\t\t\tsize auto\n\t\t\tflush 2500ms\n\t\t\tmin_balance 0\n\t\t}\n\t\thold_expiry 10s" + hmac, "tollgate 1"},
		{"hold_expiry 10s" + hmac, "tollgate {\n\tprice * {\n\t\trequest 1\n\t\trequest_bytes 1 per 1KiB\n\t\tresponse_bytes 2 per 1MiB\n\t\tusage_header X-Tokens 1 reserve 4000\n\t\thold_block 4MiB\n\t}\n}"},
	} {
		if err := validate(t, site(good.globals, good.body+"\nrespond ok")); err != nil {
			t.Errorf("a good config %q: %v", good.body, err)
		}
	}
}

func TestLeaseOption(t *testing.T) {
	for _, c := range []struct{ globals, want string }{
		{"lease off", `{"off":true}`},
		{"lease {\n\t\t\tsize 500\n\t\t\tflush 50ms\n\t\t\tmin_balance 0\n\t\t}", `{"size":500,"flush":50000000,"min_balance":0}`},
		{"lease {\n\t\t\tsize auto\n\t\t}", `{}`},
	} {
		js, err := adapt(t, site(c.globals, "respond ok"))
		if err != nil {
			t.Fatalf("%q: %v", c.globals, err)
		}
		var cfg struct {
			Apps struct {
				Tollgate struct {
					Lease json.RawMessage `json:"lease"`
				} `json:"tollgate"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(js, &cfg); err != nil {
			t.Fatal(err)
		}
		if got := string(cfg.Apps.Tollgate.Lease); got != c.want {
			t.Errorf("%q adapts to %s, want %s", c.globals, got, c.want)
		}
	}
}
