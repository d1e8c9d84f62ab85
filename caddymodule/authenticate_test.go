package caddymodule

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/tollgate-dev/tollgate/auth"
)

// FuzzAuthenticate feeds arbitrary Authorization headers to the token
// extraction: it never panics, answers no credentials or a refused token
// with a fixed phrase, and takes nothing from the query string.
func FuzzAuthenticate(f *testing.F) {
	for _, s := range []string{"", "Bearer", "Bearer ", "bearer x.y.z", "BEARER a.b.c", "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
		"Bearer  a.b.c ", "Bearer a.b.c, Bearer d.e.f", "Bearer\ta.b.c", "Token a.b.c"} {
		f.Add(s, "", "access_token=a.b.c")
	}
	f.Add("Bearer a.b.c", "Bearer d.e.f", "")
	v, err := auth.New(auth.Config{HMACSecret: []byte("fuzz-secret-0123456789-0123456789-abc")})
	if err != nil {
		f.Fatal(err)
	}
	a := &App{verifier: v}
	f.Fuzz(func(t *testing.T, first, second, query string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = query
		if first != "" {
			r.Header.Add("Authorization", first)
		}
		if second != "" {
			r.Header.Add("Authorization", second)
		}
		account, err := a.authenticate(r)
		var refused *auth.Error
		if err == nil || (!errors.Is(err, errNoCredentials) && !errors.As(err, &refused)) {
			t.Fatalf("Authorization %q, %q, query %q: account %q, error %v", first, second, query, account, err)
		}
		if first == "" && second == "" && !errors.Is(err, errNoCredentials) {
			t.Fatalf("a token was taken from the query %q", query)
		}
	})
}
