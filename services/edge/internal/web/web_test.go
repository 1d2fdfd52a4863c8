package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, method, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res, string(body)
}

func TestHandlerServesFiles(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		name        string
		method      string
		path        string
		status      int
		contentType string
		cache       string
		contains    string
	}{
		{"root is index", "GET", "/", 200, "text/html; charset=utf-8", "no-cache", "<title>Hubbub</title>"},
		{"index by name", "GET", "/index.html", 200, "text/html; charset=utf-8", "no-cache", `src="/app.js"`},
		{"script", "GET", "/app.js", 200, "text/javascript; charset=utf-8", "", "'use strict'"},
		{"stylesheet", "GET", "/style.css", 200, "text/css; charset=utf-8", "", "prefers-color-scheme"},
		{"icon", "GET", "/favicon.svg", 200, "image/svg+xml", "", "<svg"},
		{"head", "HEAD", "/app.js", 200, "text/javascript; charset=utf-8", "", ""},
		{"unknown", "GET", "/nope.js", 404, "", "", ""},
		{"unknown nested", "GET", "/static/app.js", 404, "", "", ""},
		{"directory walk", "GET", "/../web.go", 404, "", "", ""},
		{"api path", "GET", "/api/lobby", 404, "", "", ""},
		{"post refused", "POST", "/", 405, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, srv, tt.method, tt.path, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.status)
			}
			if tt.contentType != "" && res.Header.Get("Content-Type") != tt.contentType {
				t.Fatalf("Content-Type = %q, want %q", res.Header.Get("Content-Type"), tt.contentType)
			}
			if tt.cache != "" && res.Header.Get("Cache-Control") != tt.cache {
				t.Fatalf("Cache-Control = %q, want %q", res.Header.Get("Cache-Control"), tt.cache)
			}
			if tt.contains != "" && !strings.Contains(body, tt.contains) {
				t.Fatalf("body does not contain %q", tt.contains)
			}
			if tt.status == 200 && res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatalf("missing nosniff")
			}
		})
	}
}

func TestIndexHeaders(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	res, _ := get(t, srv, "GET", "/", nil)
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	res, body := get(t, srv, "GET", "/", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("revalidation: status %d, %d bytes; want 304 and no body", res.StatusCode, len(body))
	}
}

// staticFiles returns every embedded file by name.
func staticFiles(t *testing.T) map[string]string {
	t.Helper()
	files := make(map[string]string)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"static/index.html", "static/app.js", "static/style.css"} {
		if _, ok := files[want]; !ok {
			t.Fatalf("%s not embedded", want)
		}
	}
	return files
}

func TestStaticFilesStayOnOrigin(t *testing.T) {
	// Anything that would make the browser fetch from another origin.
	external := []*regexp.Regexp{
		regexp.MustCompile(`(?i)\b(src|href|action|srcset|poster|data)\s*=\s*["']?\s*(https?:)?//`),
		regexp.MustCompile(`(?i)url\(\s*["']?\s*(https?:)?//`),
		regexp.MustCompile(`(?i)@import\s+(url\()?\s*["']?\s*(https?:)?//`),
		regexp.MustCompile(`(?i)\bimport\s*(\(|[^;]*\bfrom\b)\s*["'](https?:)?//`),
		regexp.MustCompile(`(?i)//cdn`),
		regexp.MustCompile(`(?i)\bfetch\(\s*["'](https?:)?//`),
		regexp.MustCompile(`(?i)new\s+WebSocket\(\s*["']`),
	}
	// The SVG namespace is an identifier, not something that is fetched.
	namespace := strings.NewReplacer(`xmlns="http://www.w3.org/2000/svg"`, "")
	for name, src := range staticFiles(t) {
		for _, re := range external {
			if loc := re.FindStringIndex(src); loc != nil {
				t.Errorf("%s references another origin: %q", name, src[loc[0]:min(len(src), loc[1]+40)])
			}
		}
		rest := namespace.Replace(src)
		for _, scheme := range []string{"http://", "https://"} {
			if i := strings.Index(rest, scheme); i >= 0 {
				t.Errorf("%s contains an absolute URL: %q", name, rest[i:min(len(rest), i+60)])
			}
		}
	}
}

func TestScriptNeverParsesHTML(t *testing.T) {
	sinks := regexp.MustCompile(`\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser)\b|\beval\s*\(|new\s+Function\s*\(`)
	files := staticFiles(t)
	n := 0
	for name, src := range files {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		n++
		for i, line := range strings.Split(src, "\n") {
			if loc := sinks.FindStringIndex(line); loc != nil {
				t.Errorf("%s:%d uses %q", name, i+1, line[loc[0]:loc[1]])
			}
		}
	}
	if n == 0 {
		t.Fatal("no JavaScript files embedded")
	}
	// Inline handlers and inline scripts would need 'unsafe-inline' under the CSP.
	html := files["static/index.html"]
	if m := regexp.MustCompile(`(?i)\son[a-z]+\s*=`).FindString(html); m != "" {
		t.Errorf("index.html has an inline event handler: %q", m)
	}
	if m := regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`).FindString(html); m != "" {
		t.Errorf("index.html has an inline script: %q", m)
	}
	if m := regexp.MustCompile(`(?i)\sstyle\s*=`).FindString(html); m != "" {
		t.Errorf("index.html has an inline style attribute: %q", m)
	}
}
