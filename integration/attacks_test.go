package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/internal/jwtattack"
	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// attackReasons is the fixed phrase list a refused token is described by.
var attackReasons = []string{
	auth.ReasonMalformed, auth.ReasonTooLarge, auth.ReasonAlgorithm, auth.ReasonUnknownKey,
	auth.ReasonSignature, auth.ReasonExpired, auth.ReasonNoExpiry, auth.ReasonNotYetValid,
	auth.ReasonIssuer, auth.ReasonAudience, auth.ReasonBadAccount, auth.ReasonInvalidToken,
}

// attackStoreCalls returns the sum of the tollgate_store_duration_seconds
// histogram's counts in a scrape: how many store operations the gateway
// made. It fails the test when the scrape has none of its samples.
func attackStoreCalls(t *testing.T, m map[string]float64) float64 {
	t.Helper()
	sum, found := 0.0, false
	for name, v := range m {
		if strings.HasPrefix(name, "tollgate_store_duration_seconds_count") {
			sum += v
			found = true
		}
	}
	if !found {
		t.Fatal("no tollgate_store_duration_seconds_count sample in the metrics")
	}
	return sum
}

// attackRedisCalls returns how many commands Redis has run, from INFO
// commandstats, leaving out those a client runs to connect or to look
// (info, hello, client, ping, select, auth, command).
func attackRedisCalls(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	return redisCalls(t, srv, func(command string) bool {
		return !slices.Contains([]string{"info", "hello", "client", "ping", "select", "auth", "command"}, command)
	})
}

// redisCalls returns how many times Redis has run the commands that count
// names, from INFO commandstats. A subcommand counts under its command.
func redisCalls(t *testing.T, srv *redistest.Server, count func(command string) bool) int64 {
	t.Helper()
	info, err := srv.Client(t).Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "cmdstat_")), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		if base, _, _ := strings.Cut(name, "|"); !count(base) {
			continue
		}
		for _, f := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				c, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("commandstats line %q: %v", line, err)
				}
				n += c
			}
		}
	}
	return n
}

// attackServer starts the attacker's web server for key: it publishes the
// key as a JWKS and as a certificate, and counts in hits every request it
// gets. It returns the server's URL.
func attackServer(t *testing.T, key *rsa.PrivateKey, hits *atomic.Int64) string {
	t.Helper()
	jwks, err := json.Marshal(map[string]any{"keys": []any{jwtattack.RSAJWK(&key.PublicKey, "evil")}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: jwtattack.Cert(t, key)})
	return "http://" + httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if strings.HasSuffix(r.URL.Path, ".pem") {
			w.Write(certPEM)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	})
}

// attackRequest is a request the gateway must refuse with a 401. reasons
// are the phrases that may describe why (nil: any of the fixed list);
// plain says it has no credentials, so WWW-Authenticate names no error.
type attackRequest struct {
	name    string
	token   string   // sent as the Authorization header's Bearer token
	path    string   // default /x
	header  []string // more headers, name and value pairs
	reasons []string
	plain   bool
	secret  string // what the body must not echo, if not token
}

// attackOne returns the phrase list holding only reason.
func attackOne(reason string) []string { return []string{reason} }

// TestAttackGateway sends every known JWT attack through a real Caddy with
// Tollgate on Redis, configured with an RSA, an ECDSA and an Ed25519 public
// key, RS256 the only RSA algorithm allowed. Each is a 401 with the right
// WWW-Authenticate and a problem+json body that does not echo the token,
// reaches neither the upstream nor the attacker's URLs, and the whole list
// makes no store call: the store duration histogram and Redis's own command
// counts do not move.
func TestAttackGateway(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t)
	k := jwtattack.NewKeys(t)
	var evilHits atomic.Int64
	evil := attackServer(t, k.EvilRSA, &evilHits)
	g := startGatewayWith(t, srv, fmt.Sprintf(`jwt {
			public_key %s r1
			public_key %s e1
			public_key %s ed
			algorithms RS256 ES256 EdDSA
			issuer https://issuer.test/
			audience https://api.test/
		}`, k.Files["rsa"], k.Files["ec"], k.Files["ed"]),
		`handle /metrics {
		metrics
	}
	@api not path /metrics
	tollgate @api 1
	reverse_proxy `+up.Listener.Addr().String(), "")
	g.credit(t, "alice", 100)

	rs := func(kid string, claims map[string]any, header ...func(map[string]any)) string {
		return jwtattack.Sign(t, jwt.SigningMethodRS256, k.RSA, jwtattack.Header(jwt.SigningMethodRS256, kid, header...), claims)
	}
	evilRS := func(kid string, header ...func(map[string]any)) string {
		return jwtattack.Sign(t, jwt.SigningMethodRS256, k.EvilRSA, jwtattack.Header(jwt.SigningMethodRS256, kid, header...), jwtattack.Claims())
	}
	hs := func(key []byte, kid string) string {
		return jwtattack.Sign(t, jwt.SigningMethodHS256, key, jwtattack.Header(jwt.SigningMethodHS256, kid), jwtattack.Claims())
	}
	claim := func(edit ...func(map[string]any)) string { return rs("r1", jwtattack.Claims(edit...)) }
	now := time.Now()

	// The valid tokens next to the attacks are paid and forwarded: the
	// gateway refuses the attacks for the attack, and the store metric
	// counts the store calls they make.
	calls0, redis0 := attackStoreCalls(t, scrape(t, g)), attackRedisCalls(t, srv)
	for _, c := range []struct{ name, token string }{
		{"RS256", claim()},
		{"ES256", jwtattack.Sign(t, jwt.SigningMethodES256, k.EC, jwtattack.Header(jwt.SigningMethodES256, "e1"), jwtattack.Claims())},
		{"EdDSA", jwtattack.Sign(t, jwt.SigningMethodEdDSA, k.Ed, jwtattack.Header(jwt.SigningMethodEdDSA, "ed"), jwtattack.Claims())},
		{"exp fractional, in the future", claim(jwtattack.Set("exp", float64(now.Add(time.Hour).Unix())+0.5))},
		{"exactly 8 KiB", jwtattack.Sized(t, k.RSA, "r1", auth.MaxTokenSize)},
	} {
		resp, body := g.do(t, "GET", "/x", c.token)
		expectStatus(t, c.name, resp, body, http.StatusOK)
		if body != "alice" {
			t.Errorf("%s: the upstream saw account %q, want alice", c.name, body)
		}
	}
	calls1, redis1 := attackStoreCalls(t, scrape(t, g)), attackRedisCalls(t, srv)
	if calls1-calls0 < 5 || redis1 == redis0 {
		t.Fatalf("5 paid requests moved the store metric by %v and Redis's commands by %d: neither can show an attack's store call", calls1-calls0, redis1-redis0)
	}
	hits1 := up.hits.Load()

	var cases []attackRequest
	add := func(name, token string, reasons []string) {
		cases = append(cases, attackRequest{name: name, token: token, reasons: reasons})
	}
	for _, alg := range []string{"none", "None", "NONE"} {
		for _, sig := range []string{"", "junk", base64.RawURLEncoding.EncodeToString([]byte("signature"))} {
			add(fmt.Sprintf("alg %s, signature %q", alg, sig), jwtattack.Unsigned(t, alg, sig), attackOne(auth.ReasonAlgorithm))
		}
	}
	for form, key := range map[string][]byte{"PEM": k.RSAPEM, "DER": k.RSADER} {
		add("HS256 with the public key's "+form, hs(key, "r1"), attackOne(auth.ReasonAlgorithm))
		add("HS256 with the public key's "+form+", no kid", hs(key, ""), attackOne(auth.ReasonAlgorithm))
	}
	add("RS256, empty signature", jwtattack.StripSignature(claim()), attackOne(auth.ReasonSignature))
	es := jwtattack.Sign(t, jwt.SigningMethodES256, k.EC, jwtattack.Header(jwt.SigningMethodES256, "e1"), jwtattack.Claims())
	add("ES256, empty signature", jwtattack.StripSignature(es), attackOne(auth.ReasonSignature))
	add("EdDSA, empty signature", jwtattack.StripSignature(jwtattack.Sign(t, jwt.SigningMethodEdDSA, k.Ed, jwtattack.Header(jwt.SigningMethodEdDSA, "ed"), jwtattack.Claims())), attackOne(auth.ReasonSignature))
	esInput := es[:strings.LastIndexByte(es, '.')]
	digest := sha256.Sum256([]byte(esInput))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, k.EC, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	add("ES256, DER (ASN.1) signature", esInput+"."+base64.RawURLEncoding.EncodeToString(asn1Sig), attackOne(auth.ReasonSignature))
	add("PS256 when only RS256 is allowed", jwtattack.Sign(t, jwt.SigningMethodPS256, k.RSA, jwtattack.Header(jwt.SigningMethodPS256, "r1"), jwtattack.Claims()), attackOne(auth.ReasonAlgorithm))

	add("kid path-like", rs("../../etc/passwd", jwtattack.Claims()), attackOne(auth.ReasonUnknownKey))
	add("kid SQL-like", rs("' OR 1=1 --", jwtattack.Claims()), attackOne(auth.ReasonUnknownKey))
	add("kid 10 KB long", rs(strings.Repeat("k", 10_000), jwtattack.Claims()), attackOne(auth.ReasonTooLarge))
	add("kid a JSON number", rs("", jwtattack.Claims(), jwtattack.Set("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid null", rs("", jwtattack.Claims(), jwtattack.Set("kid", nil)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})

	add("jku to the attacker's JWKS, its kid", evilRS("evil", jwtattack.Set("jku", evil+"/jwks.json")), attackOne(auth.ReasonUnknownKey))
	add("jku to the attacker's JWKS, no kid", evilRS("", jwtattack.Set("jku", evil+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("x5u to the attacker's certificate", evilRS("", jwtattack.Set("x5u", evil+"/cert.pem")), attackOne(auth.ReasonSignature))
	add("embedded jwk", evilRS("", jwtattack.Set("jwk", jwtattack.RSAJWK(&k.EvilRSA.PublicKey, ""))), attackOne(auth.ReasonSignature))
	add("embedded jwk, the issuer's kid", evilRS("r1", jwtattack.Set("jwk", jwtattack.RSAJWK(&k.EvilRSA.PublicKey, "r1"))), attackOne(auth.ReasonSignature))
	add("embedded x5c", evilRS("", jwtattack.Set("x5c", []string{base64.StdEncoding.EncodeToString(jwtattack.Cert(t, k.EvilRSA))})), attackOne(auth.ReasonSignature))

	add("crit with an unknown name", rs("r1", jwtattack.Claims(), jwtattack.Set("crit", []string{"urn:attack:unknown"}), jwtattack.Set("urn:attack:unknown", true)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})

	add("exp a string", claim(jwtattack.Set("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp negative", claim(jwtattack.Set("exp", -1)), attackOne(auth.ReasonExpired))
	add("exp 2^63", claim(jwtattack.Set("exp", json.Number("9223372036854775808"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("nbf beyond the leeway", claim(jwtattack.Set("nbf", now.Add(5*time.Minute).Unix())), attackOne(auth.ReasonNotYetValid))
	add("aud missing", claim(jwtattack.Drop("aud")), attackOne(auth.ReasonAudience))
	add("aud wrong", claim(jwtattack.Set("aud", "https://evil.test/")), attackOne(auth.ReasonAudience))
	add("aud an empty array", claim(jwtattack.Set("aud", []string{})), attackOne(auth.ReasonAudience))
	add("iss without its trailing slash", claim(jwtattack.Set("iss", "https://issuer.test")), attackOne(auth.ReasonIssuer))
	add("iss with a second trailing slash", claim(jwtattack.Set("iss", "https://issuer.test//")), attackOne(auth.ReasonIssuer))

	for name, sub := range map[string]any{
		"empty": "", "129 bytes": strings.Repeat("a", 129), "a NUL": "ali\x00ce", "a newline": "alice\n",
		"a tab": "\talice", "DEL": "alice\x7f", "a space": "al ice",
	} {
		add("sub "+name, claim(jwtattack.Set("sub", sub)), attackOne(auth.ReasonBadAccount))
	}

	hdr := jwtattack.Header(jwt.SigningMethodRS256, "r1")
	payload := jwtattack.Segment(t, jwtattack.Claims())
	add("header with '+' and '/'", jwtattack.RS256Over(t, k.RSA, jwtattack.StdSegment(t, jwtattack.Header(jwt.SigningMethodRS256, "r1"))+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '+' and '/'", jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+jwtattack.StdSegment(t, jwtattack.Claims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '=' padding", jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+jwtattack.PaddedSegment(t, jwtattack.Claims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '=' padding", jwtattack.RS256Over(t, k.RSA, jwtattack.Segment(t, hdr)+"."+payload, base64.URLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '+' or '/'", jwtattack.StdSignature(t, k.RSA, "r1"), attackOne(auth.ReasonMalformed))

	add("8 KiB + 1 byte", jwtattack.Sized(t, k.RSA, "r1", auth.MaxTokenSize+1), attackOne(auth.ReasonTooLarge))

	valid := claim()
	cases = append(cases,
		attackRequest{name: "two Authorization headers", token: valid, header: []string{"Authorization", "Bearer " + claim(jwtattack.Set("jti", "2"))}, reasons: attackOne(auth.ReasonMalformed)},
		attackRequest{name: "token in ?access_token= only", path: "/x?access_token=" + valid, plain: true, secret: valid},
		attackRequest{name: "token in ?token= only", path: "/x?token=" + valid, plain: true, secret: valid},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := c.path
			if path == "" {
				path = "/x"
			}
			before, hits := attackStoreCalls(t, scrape(t, g)), up.hits.Load()
			resp, body := g.do(t, "GET", path, c.token, c.header...)
			if after := attackStoreCalls(t, scrape(t, g)); after != before {
				t.Errorf("%v store calls", after-before)
			}
			if up.hits.Load() != hits {
				t.Error("the upstream got the request")
			}
			expectStatus(t, c.name, resp, body, http.StatusUnauthorized)
			got := resp.Header.Get("WWW-Authenticate")
			if c.plain {
				if got != `Bearer realm="tollgate"` {
					t.Errorf("WWW-Authenticate %q, want a plain Bearer realm", got)
				}
			} else {
				desc, ok := strings.CutPrefix(got, `Bearer realm="tollgate", error="invalid_token", error_description="`)
				desc, ok2 := strings.CutSuffix(desc, `"`)
				switch {
				case !ok || !ok2:
					t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\" and a description", got)
				case !slices.Contains(attackReasons, desc):
					t.Errorf("description %q is not a fixed phrase", desc)
				case c.reasons != nil && !slices.Contains(c.reasons, desc):
					t.Errorf("description %q, want one of %q", desc, c.reasons)
				}
			}
			if p := decodeProblem(t, resp, body); p.Type != "urn:tollgate:problem:invalid-token" || p.Status != http.StatusUnauthorized {
				t.Errorf("problem %s", body)
			}
			secret := c.secret
			if secret == "" {
				secret = c.token
			}
			for _, s := range append(strings.Split(secret, "."), secret) {
				if len(s) >= 16 && strings.Contains(body, s) {
					t.Error("the body echoes the token")
				}
			}
		})
	}

	if calls2 := attackStoreCalls(t, scrape(t, g)); calls2 != calls1 {
		t.Errorf("%d refused requests made %v store calls, want none", len(cases), calls2-calls1)
	}
	if redis2 := attackRedisCalls(t, srv); redis2 != redis1 {
		t.Errorf("%d refused requests ran %d Redis commands, want none", len(cases), redis2-redis1)
	}
	if n := up.hits.Load() - hits1; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
	if n := evilHits.Load(); n != 0 {
		t.Errorf("the gateway fetched the attacker's URLs %d times", n)
	}
}
