package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"testing"
	"time"
)

// The examples of RFC 7515, appendices A.1 to A.3: one payload signed with
// HS256, RS256 and ES256, and the keys published with them.
const (
	rfc7515Payload = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
	rfc7515HS256   = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." + rfc7515Payload + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfc7515RS256   = "eyJhbGciOiJSUzI1NiJ9." + rfc7515Payload + ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
	rfc7515ES256   = "eyJhbGciOiJFUzI1NiJ9." + rfc7515Payload + ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"

	rfc7515HMACKey = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
	rfc7515RSAN    = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
	rfc7515ECX     = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
	rfc7515ECY     = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
)

// TestRFC7515Examples verifies the RFC's signatures with its keys. The
// examples name no audience and no account, so a verifier whose clock is set
// before their expiry gets past the signature and stops at the audience; one
// changed bit of the signature stops it there instead.
func TestRFC7515Examples(t *testing.T) {
	big64 := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	secret, err := base64.RawURLEncoding.DecodeString(rfc7515HMACKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := &rsa.PublicKey{N: big64(rfc7515RSAN), E: 65537}
	ecKey := &ecdsa.PublicKey{Curve: elliptic.P256(), X: big64(rfc7515ECX), Y: big64(rfc7515ECY)}
	for _, c := range []struct {
		name, token string
		cfg         Config
	}{
		{"A.1 HS256", rfc7515HS256, Config{HMACSecret: secret, Issuer: "joe", Audience: "https://api.test/"}},
		{"A.2 RS256", rfc7515RS256, Config{PublicKeys: []PublicKey{{Key: rsaKey}}, Issuer: "joe", Audience: "https://api.test/"}},
		{"A.3 ES256", rfc7515ES256, Config{PublicKeys: []PublicKey{{Key: ecKey}}, Issuer: "joe", Audience: "https://api.test/"}},
	} {
		v, err := New(c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		v.now = func() time.Time { return time.Unix(1300819380-60, 0) }
		if _, err := v.Verify(c.token); !isReason(err, ReasonAudience) {
			t.Errorf("%s: %v, want the signature accepted and the missing audience refused", c.name, err)
		}
		tampered := []byte(c.token)
		tampered[len(tampered)-2] ^= 0x01 // a bit of the signature, not its padding
		if _, err := v.Verify(string(tampered)); !isReason(err, ReasonSignature) {
			t.Errorf("%s with one bit changed: %v, want an invalid signature", c.name, err)
		}
	}
}

// isReason reports a refusal with the given phrase.
func isReason(err error, reason string) bool {
	var e *Error
	return errors.As(err, &e) && e.Description == reason
}
