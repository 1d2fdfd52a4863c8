package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/cmd/hubbub/app"
)

// backoffCapMS is the most the web UI may wait between two reconnect
// attempts, jitter included (0.5 s doubling to 4 s, equal jitter).
const backoffCapMS = 4000

// waitWithin is waitFor with its own deadline.
func (p *page) waitWithin(what, predicate string, deadline time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(deadline))); err != nil {
		p.t.Fatalf("%s: waiting for %s: %v", p.name, what, err)
	}
}

// watchConn installs a recorder in the page: every reconnect the UI
// schedules (a new data-retry-at on #conn, with its data-delay and
// data-attempt), every entry into the "waiting" state, the largest N ever
// shown as "reconnecting in N s", the most toasts on screen at once, and
// every socket it opens (with the countdown the status showed last when it
// was opened: 0 when none) and every frame it sends.
const watchConn = `(() => {
	const conn = document.getElementById('conn');
	const rc = window.__rc = { schedules: [], waits: 0, maxShown: 0, maxToasts: 0, sockets: 0, shown: 0, openedAt: [], sent: [], lastState: conn.dataset.state, lastRetryAt: conn.dataset.retryAt || '' };
	const look = () => {
		const st = conn.dataset.state || '';
		if (st === 'waiting' && rc.lastState !== 'waiting') rc.waits++;
		rc.lastState = st;
		const at = conn.dataset.retryAt || '';
		if (at && at !== rc.lastRetryAt) {
			rc.lastRetryAt = at;
			rc.schedules.push({ delay: Number(conn.dataset.delay), attempt: Number(conn.dataset.attempt) });
		}
		const m = /reconnecting in (\d+) s/i.exec(conn.textContent);
		if (m) { rc.shown = Number(m[1]); rc.maxShown = Math.max(rc.maxShown, rc.shown); }
		if (st === 'connected') rc.shown = 0;
		rc.maxToasts = Math.max(rc.maxToasts, document.querySelectorAll('#toasts .toast').length);
	};
	new MutationObserver(look).observe(conn, { attributes: true, childList: true, characterData: true, subtree: true });
	new MutationObserver(look).observe(document.getElementById('toasts'), { childList: true });
	const WS = window.WebSocket;
	window.WebSocket = class extends WS {
		constructor(...args) { super(...args); rc.sockets++; rc.openedAt.push(rc.shown); }
	};
	const send = WS.prototype.send;
	WebSocket.prototype.send = function (data) {
		try { rc.sent.push(JSON.parse(data)); } catch (_) { /* not ours */ }
		return send.call(this, data);
	};
})()`

type schedule struct {
	Delay   float64 `json:"delay"`
	Attempt int     `json:"attempt"`
}

type connRecord struct {
	Schedules []schedule       `json:"schedules"`
	Waits     int              `json:"waits"`
	MaxShown  int              `json:"maxShown"`
	MaxToasts int              `json:"maxToasts"`
	Sockets   int              `json:"sockets"`
	OpenedAt  []int            `json:"openedAt"`
	Sent      []map[string]any `json:"sent"`
}

func (p *page) connRecord() connRecord {
	p.t.Helper()
	return eval[connRecord](p, `window.__rc`)
}

// connAttr reads a data attribute of #conn ("" when absent).
func (p *page) connAttr(name string) string {
	p.t.Helper()
	return eval[string](p, `document.getElementById('conn').dataset[`+strconv.Quote(name)+`] || ''`)
}

// showsRetryStatus is a predicate: the status reads "reconnecting in N s ·
// retry now", with "retry now" a visible button.
const showsRetryStatus = `(() => {
	const c = document.getElementById('conn'), b = document.getElementById('conn-retry');
	return c.dataset.state === 'waiting' && /reconnecting in \d+ s\s*·\s*retry now/i.test(c.innerText.replace(/\s+/g, ' ')) &&
		!!b && b.tagName === 'BUTTON' && !b.hidden && b.offsetParent !== null;
})()`

// lastID is the newest message id shown in the visible timeline.
func (p *page) lastID() int {
	p.t.Helper()
	return eval[int](p, `Math.max(0, ...Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg')).map(li => +li.dataset.id || 0))`)
}

func startApp(t *testing.T, cfg app.Config) *app.System {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sys, err := app.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return sys
}

// TestBrowserReconnectBackoff stops the whole all-in-one under an open page
// and starts it again on the same address and data directory. While it is
// down the page must say "reconnecting in N s · retry now", keep every
// scheduled delay within the 4 s cap (jitter included) however many tries
// fail, and show at most one toast for the outage; once the server is back
// the first try after it succeeds, the toast goes, and the room resumes
// from the last id it had (join with since), gap-free.
func TestBrowserReconnectBackoff(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir, "")
	sys := startApp(t, cfg)
	t.Cleanup(func() {
		if sys != nil {
			if err := sys.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})

	browser := newBrowser(t)
	const room = "general"
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	alice.do("send", chromedp.SendKeys(chromedp.ID("composer-input"), "before the outage\r"))
	alice.waitFor("own message acked", hasBody("before the outage")+` && document.querySelectorAll('.pending-list li').length === 0`)
	before := alice.lastID()
	if before <= 0 {
		t.Fatalf("no message id before the outage")
	}
	alice.do("install the recorder", chromedp.Evaluate[chromedp.Void](watchConn))

	// Down: the edge drains (1012), then nothing listens on the address.
	addr := sys.Addr()
	err := sys.Stop()
	sys = nil
	if err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Enough failed tries for a backoff capped at 10 s to pass 4 s: the
	// fifth wait would be drawn from 4–8 s.
	alice.waitWithin("five reconnect waits", `window.__rc.waits >= 5`, 60*time.Second)
	rec := alice.connRecord()
	t.Logf("while down: %d waits, delays %v, largest countdown %d s, toasts %d", rec.Waits, rec.Schedules, rec.MaxShown, rec.MaxToasts)
	if rec.MaxShown > backoffCapMS/1000 {
		t.Errorf("the status counted down from %d s; the backoff cap is %d ms", rec.MaxShown, backoffCapMS)
	}
	if len(rec.Schedules) < 4 {
		t.Errorf("the UI reported %d scheduled reconnects (data-retry-at/data-delay on #conn) for %d waits", len(rec.Schedules), rec.Waits)
	}
	reachedCap := false
	for i, s := range rec.Schedules {
		if s.Delay <= 0 || s.Delay > backoffCapMS {
			t.Errorf("reconnect %d (backoff level %d) scheduled after %.0f ms; want 0 < delay <= %d", i, s.Attempt, s.Delay, backoffCapMS)
		}
		if s.Delay >= backoffCapMS/2 {
			reachedCap = true
		}
	}
	if len(rec.Schedules) > 0 && !reachedCap {
		t.Errorf("no scheduled delay reached the cap's jitter range (%d–%d ms): %v", backoffCapMS/2, backoffCapMS, rec.Schedules)
	}
	if n := eval[int](alice, `document.querySelectorAll('#toasts .toast').length`); n > 1 || rec.MaxToasts > 1 {
		t.Errorf("%d toasts shown after %d failed tries (at most %d at once); want at most one", n, rec.Waits, rec.MaxToasts)
	}
	alice.waitFor(`"reconnecting in N s · retry now"`, showsRetryStatus)

	// Up again, same address and data.
	cfg.Edge.HTTPAddr = addr
	sys = startApp(t, cfg)
	connects := alice.connRecord().Sockets
	postHTTP(t, sys.BaseURL(), room, "carol", "while alice was away")

	// Back within one scheduled delay (<= the cap): the first socket opened
	// after the server was ready succeeds (one that was already on its way
	// may still have failed).
	alice.waitFor("connected again", `document.body.dataset.conn === 'connected'`)
	after := alice.connRecord().Sockets
	if after-connects > 1 {
		t.Errorf("%d sockets opened after the server was back; want the first one to succeed", after-connects)
	}
	rec = alice.connRecord()
	for i, s := range rec.Schedules {
		if s.Delay > backoffCapMS {
			t.Errorf("reconnect %d scheduled after %.0f ms, over the cap", i, s.Delay)
		}
	}
	alice.waitFor("the outage toast cleared", `document.querySelectorAll('#toasts .toast').length === 0`)

	// Gapless resume: the rejoin carried the last id, and the message sent
	// while alice was away is shown once, in order.
	var since []float64
	for _, f := range rec.Sent {
		if f["type"] == "join" && f["room"] == room {
			if s, ok := f["since"].(float64); ok {
				since = append(since, s)
			}
		}
	}
	if len(since) == 0 || since[0] != float64(before) {
		t.Errorf("rejoin since values %v; want the first to be the last id before the outage, %d", since, before)
	}
	alice.waitFor("the message sent while away", hasBody("while alice was away"))
	if n := eval[int](alice, `Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg .msg-body')).filter(e => e.textContent === 'while alice was away').length`); n != 1 {
		t.Errorf("the message sent while away is shown %d times", n)
	}
	ordered := eval[bool](alice, `(() => { const ids = Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg')).map(li => +li.dataset.id);
		return ids.length > 0 && ids.every((v, i) => i === 0 || v > ids[i - 1]); })()`)
	if !ordered {
		t.Error("the timeline is not in strictly increasing id order after the resume")
	}
	alice.checkErrors()
}

// postHTTP posts body to room as user through the HTTP API.
func postHTTP(t *testing.T, base, room, user, body string) {
	t.Helper()
	u := base + "/api/rooms/" + url.PathEscape(room) + "/messages?user=" + url.QueryEscape(user)
	payload := fmt.Sprintf(`{"body":%q,"cid":"http-%d"}`, body, time.Now().UnixNano())
	res, err := http.Post(u, "application/json", bytes.NewBufferString(payload))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("post %s: %s", u, res.Status)
	}
}

// gate is the edge's listener with a switch: while down it cuts every
// connection it handed out and closes new ones as soon as they arrive, so
// the page's sockets fail as they would against a dead server, while the
// system stays up; up again, it serves at once.
type gate struct {
	net.Listener
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func (g *gate) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		if g.down {
			g.mu.Unlock()
			_ = c.Close()
			continue
		}
		g.conns = append(g.conns, c)
		g.mu.Unlock()
		return c, nil
	}
}

// set turns the gate down (cutting what is open) or up.
func (g *gate) set(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
	if !down {
		return
	}
	for _, c := range g.conns {
		// Shut the connection down rather than close it: the edge still owns
		// the descriptor, sees the end and cleans up as for any lost client.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			_ = tc.CloseRead()
		}
	}
	g.conns = nil
}

// TestBrowserReconnectNow cuts the page off, waits until its next try is
// scheduled well in the future, lets connections through again and fires
// one trigger: the "retry now" button, the tab becoming visible, the window
// gaining focus, the browser going online. Each must open a socket at once
// (data-via names the trigger and no other socket was opened) that
// connects, without waiting out the scheduled delay.
func TestBrowserReconnectNow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Listener: ln}
	cfg := testConfig(t.TempDir(), "")
	cfg.Edge.Listener = g
	sys := startApp(t, cfg)
	t.Cleanup(func() {
		if err := sys.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	browser := newBrowser(t)
	alice := openPage(t, browser, sys.BaseURL(), "alice", "general")
	alice.do("install the recorder", chromedp.Evaluate[chromedp.Void](watchConn))

	triggers := []struct {
		via    string
		action chromedp.Action[chromedp.Void]
	}{
		{"retry", chromedp.Click(chromedp.ID("conn-retry"))},
		{"visible", chromedp.Evaluate[chromedp.Void](`document.dispatchEvent(new Event('visibilitychange'))`)},
		{"focus", chromedp.Evaluate[chromedp.Void](`window.dispatchEvent(new Event('focus'))`)},
		{"online", chromedp.Evaluate[chromedp.Void](`window.dispatchEvent(new Event('online'))`)},
	}
	for _, tr := range triggers {
		g.set(true)
		// The next try is more than 2 s away (the backoff grows to it within
		// a few instant failures): a socket opened now is the trigger's.
		alice.waitWithin("a reconnect scheduled over 2 s ahead", `document.body.dataset.conn === 'waiting' &&
			Number((/reconnecting in (\d+) s/i.exec(document.getElementById('conn').textContent) || [0, 0])[1]) >= 3`, 30*time.Second)
		if !eval[bool](alice, showsRetryStatus) {
			t.Errorf("%s: status %q; want \"reconnecting in N s · retry now\"", tr.via, eval[string](alice, `document.getElementById('conn').innerText`))
		}
		if n := eval[int](alice, `document.querySelectorAll('#toasts .toast').length`); n > 1 {
			t.Errorf("%s: %d toasts while disconnected; want at most one", tr.via, n)
		}
		connects := alice.connRecord().Sockets
		g.set(false)
		alice.do(tr.via, tr.action)
		alice.waitFor("connected after "+tr.via, `document.body.dataset.conn === 'connected'`)
		after := alice.connRecord().Sockets
		rec := alice.connRecord()
		if after != connects+1 {
			t.Errorf("%s: %d sockets opened until connected; want exactly one", tr.via, after-connects)
		} else if shown := rec.OpenedAt[connects]; shown < 2 {
			t.Errorf("%s: the socket was opened when the countdown showed %d s; want it opened at once, with 2 s or more still to wait", tr.via, shown)
		}
		if via := alice.connAttr("via"); via != tr.via {
			t.Errorf("%s: #conn data-via = %q after reconnecting; want %q", tr.via, via, tr.via)
		}
		alice.waitFor("room loaded after "+tr.via, `(() => { const t = document.querySelector('.timeline:not([hidden])');
			return !!t && t.dataset.room === 'general' && !t.querySelector('.timeline-top .spinner'); })()`)
	}
	if s := strings.TrimSpace(eval[string](alice, `document.getElementById('conn').innerText`)); s != "Connected" {
		t.Errorf("status %q after reconnecting; want Connected", s)
	}
	alice.checkErrors()
}
