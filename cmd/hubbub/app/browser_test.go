package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/cmd/hubbub/app"
)

// chromiumPath finds the browser: $HUBBUB_CHROMIUM, else /usr/bin/chromium
// (Debian's package), else chromium or google-chrome on $PATH. A missing
// browser fails the test: it is a dependency of the suite, not optional.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HUBBUB_CHROMIUM"); p != "" {
		return p
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install it (apt-get install -y chromium) or set HUBBUB_CHROMIUM to the browser binary")
	return ""
}

// page is one browser tab in its own browser context (separate storage, so
// each has its own display name).
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors
}

// newBrowser starts headless Chromium with a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	bin := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	return bctx
}

// openPage opens base/#/room in a new browser context and signs in as name.
func openPage(t *testing.T, browser context.Context, base, name, room string) *page {
	t.Helper()
	p := &page{t: t, name: name}
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext(), chromedp.WithListener(p.onEvent))
	t.Cleanup(cancel)
	p.ctx = ctx
	p.do("open the page",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/#/"+room),
		chromedp.WaitVisible(chromedp.ID("login-name")),
		// alert() would block the page; count calls instead.
		chromedp.Evaluate[chromedp.Void](`window.__alerts = 0; window.alert = () => { window.__alerts++; };`),
		chromedp.SendKeys(chromedp.ID("login-name"), name+"\r"),
	)
	p.waitFor("connected", `document.body.dataset.conn === 'connected'`)
	p.waitFor("room "+room+" loaded", `(() => { const t = document.querySelector('.timeline:not([hidden])');
		return !!t && t.dataset.room === `+strconv.Quote(room)+` && !t.querySelector('.timeline-top .spinner'); })()`)
	return p
}

func (p *page) onEvent(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		p.errors = append(p.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, msg))
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			var s string
			for _, a := range e.Args {
				s += " " + string(a.Value)
			}
			p.errors = append(p.errors, "console.error:"+s)
		}
	}
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// waitFor polls a JavaScript predicate until it holds (deadline 15 s).
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

func (p *page) checkErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errors {
		p.t.Errorf("%s: page reported %s", p.name, e)
	}
}

func (p *page) screenshot(path string) {
	p.t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("%s: screenshot written to %s", p.name, path)
}

// hasBody is a predicate: the visible timeline shows a stored (not pending)
// message whose text is exactly body.
func hasBody(body string) string {
	return `Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg .msg-body'))
		.some(e => e.textContent === ` + strconv.Quote(body) + `)`
}

// TestBrowserChat drives the web UI in headless Chromium against the
// all-in-one: two people in one room see each other type and talk, markup
// in a message stays text, and a reload shows the history again.
func TestBrowserChat(t *testing.T) {
	var cfg app.Config
	cfg.DataDir = t.TempDir()
	cfg.NATSListen = "127.0.0.1:0"
	cfg.Edge.HTTPAddr = "127.0.0.1:0"
	cfg.Edge.DrainPeriod = 200 * time.Millisecond
	cfg.Log = slog.New(slog.DiscardHandler)
	sys, err := app.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := sys.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	browser := newBrowser(t)
	const room = "general"
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	bob := openPage(t, browser, sys.BaseURL(), "bob", room)

	// Presence: each sees the other in the roster.
	alice.waitFor("bob in the roster", `Array.from(document.querySelectorAll('#roster-list .roster-name')).some(e => e.textContent === 'bob')`)
	bob.waitFor("alice in the roster", `Array.from(document.querySelectorAll('#roster-list .roster-name')).some(e => e.textContent === 'alice')`)

	// Typing: alice types, bob is told; alice is never told about herself.
	alice.do("type", chromedp.SendKeys(chromedp.ID("composer-input"), "hello bob"))
	bob.waitFor("typing indicator", `document.getElementById('typing').textContent === 'alice is typing…'`)
	if got := eval[string](alice, `document.getElementById('typing').textContent`); got != "" {
		t.Errorf("alice sees typing %q about herself", got)
	}

	// Sending: Enter sends; bob gets the text, alice gets it acked, and the
	// typing indicator goes away.
	alice.do("send", chromedp.KeyEvent("\r"))
	bob.waitFor("alice's message", hasBody("hello bob"))
	alice.waitFor("own message acked", hasBody("hello bob")+` && document.querySelectorAll('.pending-list li').length === 0`)
	bob.waitFor("typing indicator cleared", `document.getElementById('typing').textContent === ''`)
	if user := eval[string](bob, `(() => { const b = Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg'))
		.find(li => li.querySelector('.msg-body') && li.querySelector('.msg-body').textContent === 'hello bob'); return b ? b.dataset.user : ''; })()`); user != "alice" {
		t.Errorf("message attributed to %q, want alice", user)
	}

	// Markup in a message is shown as literal text: no element is created.
	const markup = `<img src=x onerror=alert(1)>`
	bob.do("clear composer", chromedp.Evaluate[chromedp.Void](`document.getElementById('composer-input').value = ''`))
	bob.do("send markup", chromedp.SendKeys(chromedp.ID("composer-input"), markup+"\r"))
	for _, p := range []*page{alice, bob} {
		p.waitFor("markup message", hasBody(markup))
		if n := eval[int](p, `document.querySelectorAll('#timelines img, #timelines script, .msg-body *:not(a)').length`); n != 0 {
			t.Errorf("%s: %d elements created from message text", p.name, n)
		}
		if n := eval[int](p, `window.__alerts`); n != 0 {
			t.Errorf("%s: alert ran %d times", p.name, n)
		}
	}

	if path := os.Getenv("HUBBUB_UI_SCREENSHOT"); path != "" {
		alice.screenshot(path)
		// The same page on a 390-px-wide phone, beside it (ui.png → ui-phone.png).
		alice.do("phone viewport", chromedp.EmulateViewport(390, 844), chromedp.Sleep(time.Second)) // let the layout settle (screenshot only)
		alice.screenshot(strings.TrimSuffix(path, ".png") + "-phone.png")
		alice.do("desktop viewport", chromedp.EmulateViewport(1280, 800))
	}

	// Reload: the history comes back (from the history service), in order.
	bob.do("reload", chromedp.Reload(), chromedp.Evaluate[chromedp.Void](`window.__alerts = 0; window.alert = () => { window.__alerts++; };`))
	bob.waitFor("connected again", `document.body.dataset.conn === 'connected'`)
	bob.waitFor("history after reload", hasBody("hello bob")+` && `+hasBody(markup))
	ordered := eval[bool](bob, `(() => { const ids = Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg')).map(li => +li.dataset.id);
		return ids.length > 0 && ids.every((v, i) => i === 0 || v > ids[i - 1]); })()`)
	if !ordered {
		t.Error("history after reload is not in id order")
	}
	if n := eval[int](bob, `document.querySelectorAll('#timelines img').length + window.__alerts`); n != 0 {
		t.Errorf("bob after reload: %d images/alerts from message text", n)
	}
	if got := eval[string](bob, `document.querySelector('.timeline:not([hidden]) .timeline-top').textContent`); got == "" {
		t.Error("no timeline header after reload")
	}

	alice.checkErrors()
	bob.checkErrors()
}
