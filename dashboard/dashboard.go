// Package dashboard is the caller's own page: one HTML page, its script and
// its styles, embedded in the binary. The page holds no data: its script
// reads the account API beside it, with the caller's pasted token or the
// browser's own credentials, and shows what it reads as text. It knows
// nothing of Caddy.
package dashboard

import (
	"bytes"
	"embed"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// Policy is the page's Content-Security-Policy: nothing but its own origin,
// no inline script or style, and no framing.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// files are the names the dashboard answers to, by the tail of the path:
// "" is the page.
var files = map[string]string{
	"":         "static/index.html",
	"app.js":   "static/app.js",
	"app.css":  "static/app.css",
	"icon.svg": "static/icon.svg",
}

// started is when the binary started: the assets' modification time.
var started = time.Now()

// Has reports whether the tail of a path names one of the dashboard's
// files.
func Has(tail string) bool {
	_, ok := files[tail]
	return ok
}

// Serve answers a GET or HEAD for the dashboard's file named by the tail
// of the path, as Has says.
func Serve(w http.ResponseWriter, r *http.Request, tail string) {
	body, err := static.ReadFile(files[tail])
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", Policy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(files[tail]), started, bytes.NewReader(body))
}
