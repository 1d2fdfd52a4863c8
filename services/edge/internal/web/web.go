// Package web serves Hubbub's browser client: a dependency-free, single page
// application embedded in the binary that speaks client protocol v1 over
// /ws and reads the lobby from /api/lobby.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentSecurityPolicy keeps the page to its own origin: scripts, styles,
// images and connections (including the WebSocket) all come from the host
// that served it, and nothing may frame it.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// contentType maps the extensions shipped in static/ to their media types,
// so the answer never depends on the host's mime tables.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".json":
		return "application/json"
	case ".webmanifest":
		return "application/manifest+json"
	case ".txt":
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// asset is one embedded file ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the embedded assets by exact path.
type handler struct {
	assets map[string]asset
}

// Handler returns the http.Handler for the web UI, meant to be mounted at
// "/". It answers GET and HEAD for the embedded files, "/" with index.html,
// and 404 for every other path.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embed directive guarantees the directory exists.
		panic("web: embedded static directory missing: " + err.Error())
	}
	h := &handler{assets: make(map[string]asset)}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		h.assets["/"+p] = asset{body: body, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: reading embedded static files: " + err.Error())
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a, ok := h.assets[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Assets are not fingerprinted, so every response is revalidated (cheap
	// with the ETag) and a deploy is picked up on the next load.
	hdr.Set("Cache-Control", "no-cache")
	if strings.HasSuffix(p, ".html") {
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("X-Frame-Options", "DENY")
	}
	// ServeContent handles If-None-Match / If-Modified-Since and ranges.
	http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(a.body))
}
