package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/auth"
	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/meter"
)

// attackReasons is the fixed phrase list a refused token is described by.
var attackReasons = []string{
	auth.ReasonMalformed, auth.ReasonTooLarge, auth.ReasonAlgorithm, auth.ReasonUnknownKey,
	auth.ReasonSignature, auth.ReasonExpired, auth.ReasonNoExpiry, auth.ReasonNotYetValid,
	auth.ReasonIssuer, auth.ReasonAudience, auth.ReasonBadAccount, auth.ReasonInvalidToken,
}

// attackKeys holds the issuer's keys, an attacker's key, and the forms of
// the issuer's RSA public key that the key confusion attack uses as an HMAC
// secret.
type attackKeys struct {
	rsa     *rsa.PrivateKey   // public_key … r1
	ec      *ecdsa.PrivateKey // P-256, public_key … e1
	ed      ed25519.PrivateKey
	evilRSA *rsa.PrivateKey
	rsaPEM  []byte // the PEM file the gateway reads
	rsaDER  []byte // the same key as PKIX DER
	files   map[string]string
}

// attackNewKeys generates the keys and writes the issuer's public keys to PEM
// files in a temporary directory.
func attackNewKeys(t *testing.T) *attackKeys {
	t.Helper()
	k := &attackKeys{files: map[string]string{}}
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa, &k.evilRSA} {
		if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, pub := range map[string]crypto.PublicKey{"rsa": &k.rsa.PublicKey, "ec": &k.ec.PublicKey, "ed": k.ed.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		path := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		k.files[name] = path
		if name == "rsa" {
			k.rsaPEM, k.rsaDER = data, der
		}
	}
	return k
}

// attackStartGateway is startGateway with jwtBlock as the body of the jwt
// global option instead of the HMAC secret.
func attackStartGateway(t *testing.T, srv *redistest.Server, jwtBlock, site string) *gateway {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	prefix := fmt.Sprintf("it%d", prefixes.Add(1))
	cfg := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	tollgate {
		store redis {
			url %s
			prefix %s
		}
		jwt {
			%s
		}
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	%s
}
`, adminPort, srv.URL(), prefix, jwtBlock, port, site)
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", cfg, err)
	}
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("loading:\n%s\n%v", js, err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	store, err := meter.NewRedis(meter.RedisOptions{URL: srv.URL(), Prefix: prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &gateway{
		prefix: prefix,
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Admin:  fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		store:  store,
		redis:  srv,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}},
	}
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
		base, _, _ := strings.Cut(name, "|")
		if slices.Contains([]string{"info", "hello", "client", "ping", "select", "auth", "command"}, base) {
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

// attackClaims returns valid claims for alice, edited by edit.
func attackClaims(edit ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"sub": "alice",
		"iss": "https://issuer.test/",
		"aud": "https://api.test/",
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for _, e := range edit {
		e(c)
	}
	return c
}

// attackSet returns an edit that sets a claim or header field.
func attackSet(name string, value any) func(map[string]any) {
	return func(m map[string]any) { m[name] = value }
}

// attackDrop returns an edit that removes a claim or header field.
func attackDrop(name string) func(map[string]any) {
	return func(m map[string]any) { delete(m, name) }
}

// attackSegment encodes a JSON value as a base64url segment without padding.
func attackSegment(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// attackSignature signs the text of a token's first two segments with m and
// key, and fails the test if it cannot.
func attackSignature(t *testing.T, m jwt.SigningMethod, key any, input string) []byte {
	t.Helper()
	sig, err := m.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// attackHeader returns the header of a token signed with m, with typ JWT and
// kid when kid is set, edited by edit.
func attackHeader(m jwt.SigningMethod, kid string, edit ...func(map[string]any)) map[string]any {
	h := map[string]any{"alg": m.Alg(), "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	for _, e := range edit {
		e(h)
	}
	return h
}

// attackSign builds a token by hand from header and claims and signs it with
// m and key. The header's alg is whatever header says.
func attackSign(t *testing.T, m jwt.SigningMethod, key any, header, claims any) string {
	t.Helper()
	input := attackSegment(t, header) + "." + attackSegment(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(attackSignature(t, m, key, input))
}

// attackUnsigned builds a token whose header names alg, with valid claims,
// followed by sig as its signature segment.
func attackUnsigned(t *testing.T, alg, sig string) string {
	t.Helper()
	return attackSegment(t, map[string]any{"alg": alg, "typ": "JWT"}) + "." + attackSegment(t, attackClaims()) + "." + sig
}

// attackStripSignature returns token with an empty signature segment.
func attackStripSignature(token string) string {
	return token[:strings.LastIndexByte(token, '.')+1]
}

// attackSized returns an RS256 token by key with kid, exactly size bytes
// long, padded by a claim. It fails the test when no padding fits.
func attackSized(t *testing.T, key *rsa.PrivateKey, kid string, size int) string {
	t.Helper()
	sigLen := base64.RawURLEncoding.EncodedLen(key.Size())
	for _, extra := range []string{"", "x", "xy", "xyz"} {
		header := attackHeader(jwt.SigningMethodRS256, kid, attackSet("x", extra))
		hlen := len(attackSegment(t, header))
		for n := 0; ; n++ {
			claims := attackClaims(attackSet("pad", strings.Repeat("p", n)))
			l := hlen + 1 + len(attackSegment(t, claims)) + 1 + sigLen
			if l > size {
				break
			}
			if l == size {
				token := attackSign(t, jwt.SigningMethodRS256, key, header, claims)
				if len(token) != size {
					t.Fatalf("sized token of %d bytes, want %d", len(token), size)
				}
				return token
			}
		}
	}
	t.Fatalf("no token of exactly %d bytes", size)
	return ""
}

// attackStdSegment returns a JSON object encoded as standard (not URL-safe)
// base64, padded by a field so that the encoding holds both '+' and '/'.
func attackStdSegment(t *testing.T, obj map[string]any) string {
	t.Helper()
	for n := range 3 {
		// '~' and '?' end in the bits of '+' and '/' (json.Marshal
		// escapes '>'), so one of three of each lands on a group's end.
		obj["x"] = strings.Repeat("a", n) + "~~~???"
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if s := base64.RawStdEncoding.EncodeToString(data); strings.Contains(s, "+") && strings.Contains(s, "/") {
			return s
		}
	}
	t.Fatal("no standard base64 segment with '+' and '/'")
	return ""
}

// attackPaddedSegment returns a JSON object encoded as base64url with '='
// padding, padded by a field so that the padding is there.
func attackPaddedSegment(t *testing.T, obj map[string]any) string {
	t.Helper()
	for n := range 3 {
		obj["x"] = strings.Repeat("a", n)
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if s := base64.URLEncoding.EncodeToString(data); strings.HasSuffix(s, "=") {
			return s
		}
	}
	t.Fatal("no padded base64url segment")
	return ""
}

// attackRS256Over signs input with key and returns the whole token, the
// signature encoded by enc.
func attackRS256Over(t *testing.T, key *rsa.PrivateKey, input string, enc *base64.Encoding) string {
	t.Helper()
	return input + "." + enc.EncodeToString(attackSignature(t, jwt.SigningMethodRS256, key, input))
}

// attackStdSignature returns an RS256 token by key whose signature is
// encoded with the standard alphabet, so that it holds a '+' or a '/'.
func attackStdSignature(t *testing.T, key *rsa.PrivateKey, kid string) string {
	t.Helper()
	for i := range 20 {
		input := attackSegment(t, attackHeader(jwt.SigningMethodRS256, kid)) + "." + attackSegment(t, attackClaims(attackSet("jti", fmt.Sprint(i))))
		sig := base64.RawStdEncoding.EncodeToString(attackSignature(t, jwt.SigningMethodRS256, key, input))
		if strings.ContainsAny(sig, "+/") {
			return input + "." + sig
		}
	}
	t.Fatal("no signature with '+' or '/'")
	return ""
}

// attackRSAJWK returns an RSA public key as a JWK.
func attackRSAJWK(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

// attackCert returns a self-signed certificate for key, in DER.
func attackCert(t *testing.T, key *rsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// attackServer starts the attacker's web server for key: it publishes the
// key as a JWKS and as a certificate, and counts in hits every request it
// gets. It returns the server's URL.
func attackServer(t *testing.T, key *rsa.PrivateKey, hits *atomic.Int64) string {
	t.Helper()
	jwks, err := json.Marshal(map[string]any{"keys": []any{attackRSAJWK(&key.PublicKey, "evil")}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: attackCert(t, key)})
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
	k := attackNewKeys(t)
	var evilHits atomic.Int64
	evil := attackServer(t, k.evilRSA, &evilHits)
	g := attackStartGateway(t, srv, fmt.Sprintf(`public_key %s r1
			public_key %s e1
			public_key %s ed
			algorithms RS256 ES256 EdDSA
			issuer https://issuer.test/
			audience https://api.test/`, k.files["rsa"], k.files["ec"], k.files["ed"]),
		`handle /metrics {
		metrics
	}
	@api not path /metrics
	tollgate @api 1
	reverse_proxy `+up.Listener.Addr().String())
	g.credit(t, "alice", 100)

	rs := func(kid string, claims map[string]any, header ...func(map[string]any)) string {
		return attackSign(t, jwt.SigningMethodRS256, k.rsa, attackHeader(jwt.SigningMethodRS256, kid, header...), claims)
	}
	evilRS := func(kid string, header ...func(map[string]any)) string {
		return attackSign(t, jwt.SigningMethodRS256, k.evilRSA, attackHeader(jwt.SigningMethodRS256, kid, header...), attackClaims())
	}
	hs := func(key []byte, kid string) string {
		return attackSign(t, jwt.SigningMethodHS256, key, attackHeader(jwt.SigningMethodHS256, kid), attackClaims())
	}
	claim := func(edit ...func(map[string]any)) string { return rs("r1", attackClaims(edit...)) }
	now := time.Now()

	// The valid tokens next to the attacks are paid and forwarded: the
	// gateway refuses the attacks for the attack, and the store metric
	// counts the store calls they make.
	calls0, redis0 := attackStoreCalls(t, scrape(t, g)), attackRedisCalls(t, srv)
	for _, c := range []struct{ name, token string }{
		{"RS256", claim()},
		{"ES256", attackSign(t, jwt.SigningMethodES256, k.ec, attackHeader(jwt.SigningMethodES256, "e1"), attackClaims())},
		{"EdDSA", attackSign(t, jwt.SigningMethodEdDSA, k.ed, attackHeader(jwt.SigningMethodEdDSA, "ed"), attackClaims())},
		{"exp fractional, in the future", claim(attackSet("exp", float64(now.Add(time.Hour).Unix())+0.5))},
		{"exactly 8 KiB", attackSized(t, k.rsa, "r1", auth.MaxTokenSize)},
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
			add(fmt.Sprintf("alg %s, signature %q", alg, sig), attackUnsigned(t, alg, sig), attackOne(auth.ReasonAlgorithm))
		}
	}
	for form, key := range map[string][]byte{"PEM": k.rsaPEM, "DER": k.rsaDER} {
		add("HS256 with the public key's "+form, hs(key, "r1"), attackOne(auth.ReasonAlgorithm))
		add("HS256 with the public key's "+form+", no kid", hs(key, ""), attackOne(auth.ReasonAlgorithm))
	}
	add("RS256, empty signature", attackStripSignature(claim()), attackOne(auth.ReasonSignature))
	es := attackSign(t, jwt.SigningMethodES256, k.ec, attackHeader(jwt.SigningMethodES256, "e1"), attackClaims())
	add("ES256, empty signature", attackStripSignature(es), attackOne(auth.ReasonSignature))
	add("EdDSA, empty signature", attackStripSignature(attackSign(t, jwt.SigningMethodEdDSA, k.ed, attackHeader(jwt.SigningMethodEdDSA, "ed"), attackClaims())), attackOne(auth.ReasonSignature))
	esInput := es[:strings.LastIndexByte(es, '.')]
	digest := sha256.Sum256([]byte(esInput))
	asn1Sig, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	add("ES256, DER (ASN.1) signature", esInput+"."+base64.RawURLEncoding.EncodeToString(asn1Sig), attackOne(auth.ReasonSignature))
	add("PS256 when only RS256 is allowed", attackSign(t, jwt.SigningMethodPS256, k.rsa, attackHeader(jwt.SigningMethodPS256, "r1"), attackClaims()), attackOne(auth.ReasonAlgorithm))

	add("kid path-like", rs("../../etc/passwd", attackClaims()), attackOne(auth.ReasonUnknownKey))
	add("kid SQL-like", rs("' OR 1=1 --", attackClaims()), attackOne(auth.ReasonUnknownKey))
	add("kid 10 KB long", rs(strings.Repeat("k", 10_000), attackClaims()), attackOne(auth.ReasonTooLarge))
	add("kid a JSON number", rs("", attackClaims(), attackSet("kid", 1)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})
	add("kid null", rs("", attackClaims(), attackSet("kid", nil)), []string{auth.ReasonMalformed, auth.ReasonUnknownKey})

	add("jku to the attacker's JWKS, its kid", evilRS("evil", attackSet("jku", evil+"/jwks.json")), attackOne(auth.ReasonUnknownKey))
	add("jku to the attacker's JWKS, no kid", evilRS("", attackSet("jku", evil+"/jwks.json")), attackOne(auth.ReasonSignature))
	add("x5u to the attacker's certificate", evilRS("", attackSet("x5u", evil+"/cert.pem")), attackOne(auth.ReasonSignature))
	add("embedded jwk", evilRS("", attackSet("jwk", attackRSAJWK(&k.evilRSA.PublicKey, ""))), attackOne(auth.ReasonSignature))
	add("embedded jwk, the issuer's kid", evilRS("r1", attackSet("jwk", attackRSAJWK(&k.evilRSA.PublicKey, "r1"))), attackOne(auth.ReasonSignature))
	add("embedded x5c", evilRS("", attackSet("x5c", []string{base64.StdEncoding.EncodeToString(attackCert(t, k.evilRSA))})), attackOne(auth.ReasonSignature))

	add("crit with an unknown name", rs("r1", attackClaims(), attackSet("crit", []string{"urn:attack:unknown"}), attackSet("urn:attack:unknown", true)), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})

	add("exp a string", claim(attackSet("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("exp negative", claim(attackSet("exp", -1)), attackOne(auth.ReasonExpired))
	add("exp 2^63", claim(attackSet("exp", json.Number("9223372036854775808"))), []string{auth.ReasonMalformed, auth.ReasonInvalidToken})
	add("nbf beyond the leeway", claim(attackSet("nbf", now.Add(5*time.Minute).Unix())), attackOne(auth.ReasonNotYetValid))
	add("aud missing", claim(attackDrop("aud")), attackOne(auth.ReasonAudience))
	add("aud wrong", claim(attackSet("aud", "https://evil.test/")), attackOne(auth.ReasonAudience))
	add("aud an empty array", claim(attackSet("aud", []string{})), attackOne(auth.ReasonAudience))
	add("iss without its trailing slash", claim(attackSet("iss", "https://issuer.test")), attackOne(auth.ReasonIssuer))
	add("iss with a second trailing slash", claim(attackSet("iss", "https://issuer.test//")), attackOne(auth.ReasonIssuer))

	for name, sub := range map[string]any{
		"empty": "", "129 bytes": strings.Repeat("a", 129), "a NUL": "ali\x00ce", "a newline": "alice\n",
		"a tab": "\talice", "DEL": "alice\x7f", "a space": "al ice",
	} {
		add("sub "+name, claim(attackSet("sub", sub)), attackOne(auth.ReasonBadAccount))
	}

	hdr := attackHeader(jwt.SigningMethodRS256, "r1")
	payload := attackSegment(t, attackClaims())
	add("header with '+' and '/'", attackRS256Over(t, k.rsa, attackStdSegment(t, attackHeader(jwt.SigningMethodRS256, "r1"))+"."+payload, base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '+' and '/'", attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+attackStdSegment(t, attackClaims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("payload with '=' padding", attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+attackPaddedSegment(t, attackClaims()), base64.RawURLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '=' padding", attackRS256Over(t, k.rsa, attackSegment(t, hdr)+"."+payload, base64.URLEncoding), attackOne(auth.ReasonMalformed))
	add("signature with '+' or '/'", attackStdSignature(t, k.rsa, "r1"), attackOne(auth.ReasonMalformed))

	add("8 KiB + 1 byte", attackSized(t, k.rsa, "r1", auth.MaxTokenSize+1), attackOne(auth.ReasonTooLarge))

	valid := claim()
	cases = append(cases,
		attackRequest{name: "two Authorization headers", token: valid, header: []string{"Authorization", "Bearer " + claim(attackSet("jti", "2"))}, reasons: attackOne(auth.ReasonMalformed)},
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
