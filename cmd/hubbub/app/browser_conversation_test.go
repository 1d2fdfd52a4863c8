package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// seenWithin is how soon a change made in one page must show in the other.
const seenWithin = time.Second

// seen waits for a change made in the other page (seenWithin).
func (p *page) seen(what, predicate string) {
	p.t.Helper()
	p.waitWithin(what, predicate, seenWithin)
}

// js runs a statement in the page.
func (p *page) js(what, stmt string) {
	p.t.Helper()
	p.do(what, chromedp.Evaluate[chromedp.Void](stmt))
}

// liByBody is a JavaScript expression: the stored message of the visible
// timeline whose body text is exactly body (undefined when none).
func liByBody(body string) string {
	return `Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg'))
		.find(li => { const b = li.querySelector('.msg-body'); return b && b.textContent === ` + strconv.Quote(body) + `; })`
}

// liByID is a JavaScript expression: the message li with that id in the
// visible timeline.
func liByID(id int) string {
	return `document.querySelector('.timeline:not([hidden]) .messages li.msg[data-id="` + strconv.Itoa(id) + `"]')`
}

// act hovers the message li (a JavaScript expression) and clicks one of
// its actions (reply, react, edit, delete).
func (p *page) act(li, action string) {
	p.t.Helper()
	p.js("hover and "+action, `(() => { const li = `+li+`; li.scrollIntoView({ block: 'center' });
		li.querySelector('.msg-main').dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
		const b = li.querySelector('.msg-actions [data-act="`+action+`"]');
		if (!b || b.hidden) throw new Error('no `+action+` action on the message');
		b.click(); })()`)
}

// save presses Enter in the open message editor. The key is dispatched in
// the page: CDP's Enter would also type its character into whatever has
// the focus next (the composer, once the editor closes).
func (p *page) save() {
	p.t.Helper()
	p.js("Enter in the editor", `document.querySelector('.timeline:not([hidden]) .edit-input').dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }))`)
}

// trap counts alert() calls and forgets window.__xss (a payload that ran
// would set it).
func (p *page) trap() {
	p.t.Helper()
	p.js("trap script", `delete window.__xss; window.__alerts = 0; window.alert = () => { window.__alerts++; };`)
}

// compose types body into the composer and sends it with Enter; the sent
// message then shows as shown (as body when shown is empty).
func (p *page) compose(body string, shown ...string) {
	p.t.Helper()
	want := body
	if len(shown) > 0 {
		want = shown[0]
	}
	p.js("compose", `document.getElementById('composer-input').value = `+strconv.Quote(body))
	p.do("send", chromedp.SendKeys(chromedp.ID("composer-input"), "\r"))
	p.waitFor("sent: "+body, hasBody(want)+` && document.querySelectorAll('.timeline:not([hidden]) .pending-list li').length === 0`)
	// Enter sent it; the key's character event still lands in the box.
	p.js("clear the composer", `(() => { const c = document.getElementById('composer-input'); c.value = ''; c.dispatchEvent(new Event('input')); })()`)
}

// TestBrowserConversation drives the conversation features of the web UI
// with two people in one room: a reply is quoted, a reaction is counted
// and toggled, an edit and a delete show at the other side within a
// second, script in a message or an edit stays text, system messages
// collapse, presence is one line, and a mention raises the room's badge
// (which survives a reload) while another room is open.
func TestBrowserConversation(t *testing.T) {
	sys := startSystem(t, testConfig(t.TempDir(), ""))
	shots := os.Getenv("HUBBUB_CONVERSATION_SCREENSHOT")
	if shots != "" {
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const room = "team"
	browser := newBrowser(t)
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	bob := openPage(t, browser, sys.BaseURL(), "bob", room)
	for _, p := range []*page{alice, bob} {
		p.trap()
	}

	// Presence is one transient line, never a chat line; the stored "X
	// joined" system messages collapse into one line.
	alice.waitFor("bob in the presence line", `(() => { const p = document.getElementById('presence-line'); return !p.hidden && p.textContent === 'bob is here'; })()`)
	alice.waitFor("joins collapsed", `(() => { const shown = Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg.system')).filter(li => li.offsetParent !== null);
		return shown.length === 1 && shown[0].querySelector('.sys-summary').textContent === 'alice and bob joined'; })()`)
	if n := eval[int](alice, `Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg')).filter(li => /is here|online|offline/.test(li.textContent)).length`); n != 0 {
		t.Errorf("alice: %d presence lines in the timeline", n)
	}

	// A posts, B replies: the quote shows at A.
	const first = "hello from **alice**"
	alice.compose(first, "hello from alice")
	bob.waitFor("alice's message", hasBody("hello from alice"))
	origID := eval[int](bob, liByBody("hello from alice")+`.dataset.id | 0`)
	bob.act(liByBody("hello from alice"), "reply")
	bob.waitFor("replying bar", `!document.getElementById('reply-bar').hidden && document.getElementById('reply-user').textContent === 'alice'`)
	const reply = "hi alice, welcome"
	bob.compose(reply)
	if !eval[bool](bob, `document.getElementById('reply-bar').hidden`) {
		t.Error("bob: the reply bar stayed after sending")
	}
	alice.seen("bob's reply with its quote", `(() => { const li = `+liByBody(reply)+`; if (!li) return false;
		const q = li.querySelector('.msg-quote'); return !!q && q.dataset.target === '`+strconv.Itoa(origID)+`'
		&& q.querySelector('.quote-user').textContent === 'alice' && q.querySelector('.quote-body').textContent === 'hello from alice'; })()`)
	replyID := eval[int](alice, liByBody(reply)+`.dataset.id | 0`)

	// A reacts to the reply: the chip and its count show at B; B's click on
	// the chip adds B's own, a second click takes it back.
	alice.act(liByID(replyID), "react")
	alice.js("pick 👍", `document.querySelector('.emoji-picker .emoji[data-emoji="👍"]').click()`)
	chip := func(n int) string {
		return `(() => { const c = ` + liByID(replyID) + `.querySelector('.reaction[data-emoji="👍"]');
			return !!c && c.querySelector('.reaction-count').textContent === '` + strconv.Itoa(n) + `' && c; })()`
	}
	bob.seen("alice's 👍 on the reply", chip(1)+` && /alice/.test(`+chip(1)+`.title)`)
	bob.js("click the chip", chip(1)+`.click()`)
	alice.seen("bob's 👍 too", chip(2)+` && `+chip(2)+`.title === 'you and bob reacted with 👍'`)
	bob.waitFor("bob's chip pressed", chip(2)+` && `+chip(2)+`.getAttribute('aria-pressed') === 'true'`)
	bob.js("click the chip again", chip(2)+`.click()`)
	alice.seen("bob's 👍 taken back", chip(1))

	// More replies: a thread.
	bob.act(liByID(replyID), "reply")
	bob.compose("and a reply to my own reply")
	alice.act(liByID(replyID), "reply")
	alice.compose("thanks @bob, good to see you")
	bob.waitFor("the thread", hasBody("thanks @bob, good to see you"))
	if !eval[bool](bob, liByBody("thanks @bob, good to see you")+`.classList.contains('mention')`) {
		t.Error("bob: a message mentioning bob is not highlighted")
	}
	if shots != "" {
		bob.js("scroll", `document.querySelector('.timeline:not([hidden])').scrollTop = 1e9`)
		bob.screenshot(filepath.Join(shots, "conversation-thread.png"))
	}

	// A edits the first message: B sees the new text and "edited", and the
	// quote in the reply follows.
	alice.act(liByID(origID), "edit")
	alice.waitFor("editor", `!!document.querySelector('.timeline:not([hidden]) .edit-input')`)
	alice.js("new text", `document.querySelector('.timeline:not([hidden]) .edit-input').value = 'hello from alice (edited to fix a typo)'`)
	alice.save()
	bob.seen("the edit", `(() => { const li = `+liByID(origID)+`; return !!li && li.querySelector('.msg-body').textContent === 'hello from alice (edited to fix a typo)'
		&& !!li.querySelector('.msg-edited'); })()`)
	bob.waitFor("the quote follows the edit", liByID(replyID)+`.querySelector('.quote-body').textContent === 'hello from alice (edited to fix a typo)'`)

	// Esc cancels an edit.
	alice.act(liByID(origID), "edit")
	alice.waitFor("editor", `!!document.querySelector('.timeline:not([hidden]) .edit-input')`)
	alice.js("Esc", `document.querySelector('.timeline:not([hidden]) .edit-input').dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true, cancelable: true }))`)
	alice.waitFor("editor closed", `!document.querySelector('.timeline:not([hidden]) .edit-input')`)

	// Script in a message and in an edit renders as text.
	const payload = `<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>`
	bob.compose(payload)
	alice.seen("bob's payload as text", hasBody(payload))
	payloadID := eval[int](bob, liByBody(payload)+`.dataset.id | 0`)
	const payload2 = `<svg onload="window.__xss=1"></svg> [x](javascript:window.__xss=1) **<b onmouseover=window.__xss=1>b</b>**`
	bob.act(liByID(payloadID), "edit")
	bob.waitFor("editor", `!!document.querySelector('.timeline:not([hidden]) .edit-input')`)
	bob.js("payload edit", `document.querySelector('.timeline:not([hidden]) .edit-input').value = `+strconv.Quote(payload2))
	bob.save()
	alice.seen("the edited payload as text", liByID(payloadID)+` && `+liByID(payloadID)+`.querySelector('.msg-body').textContent === '<svg onload="window.__xss=1"></svg> [x](javascript:window.__xss=1) <b onmouseover=window.__xss=1>b</b>'`)

	// Reactions, "edited" and a tombstone in one view.
	alice.act(liByID(origID), "react")
	alice.js("pick 🎉", `document.querySelector('.emoji-picker .emoji[data-emoji="🎉"]').click()`)
	bob.waitFor("🎉", liByID(origID)+`.querySelector('.reaction[data-emoji="🎉"]')`)
	bob.act(liByID(origID), "react")
	bob.js("pick ❤️", `document.querySelector('.emoji-picker .emoji[data-emoji="❤️"]').click()`)
	alice.waitFor("❤️", liByID(origID)+`.querySelector('.reaction[data-emoji="❤️"]')`)
	bob.compose("this one will go")
	goneID := eval[int](bob, liByBody("this one will go")+`.dataset.id | 0`)
	alice.waitFor("the doomed message", hasBody("this one will go"))

	// B deletes it (after confirming): A sees a tombstone.
	bob.act(liByID(goneID), "delete")
	bob.js("confirm", `document.querySelector('.timeline:not([hidden]) .msg-confirm button.danger').click()`)
	alice.seen("the tombstone", `(() => { const li = `+liByID(goneID)+`; return !!li && li.classList.contains('deleted')
		&& li.querySelector('.msg-body').textContent === 'message deleted'; })()`)
	if shots != "" {
		alice.js("scroll", `document.querySelector('.timeline:not([hidden])').scrollTop = 1e9; document.activeElement.blur();`)
		xy := eval[[]float64](alice, `(() => { const r = `+liByID(replyID)+`.getBoundingClientRect(); return [r.left + r.width / 2, r.top + 12]; })()`)
		alice.do("hover the reply", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0], xy[1]))
		alice.screenshot(filepath.Join(shots, "conversation.png"))
	}

	// The phone layout: actions by a long press.
	if shots != "" {
		alice.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Sleep(500*time.Millisecond)) // let the layout settle (screenshot only)
		alice.js("scroll", `document.querySelector('.timeline:not([hidden])').scrollTop = 1e9`)
		alice.js("long press", liByID(replyID)+`.querySelector('.msg-main').dispatchEvent(new MouseEvent('contextmenu', { bubbles: true, cancelable: true }))`)
		alice.screenshot(filepath.Join(shots, "conversation-phone.png"))
		alice.do("desktop viewport", chromedp.EmulateViewport(1280, 800))
	}

	// A deletes the first message: B sees a tombstone, and the reply's
	// quote says so.
	alice.act(liByID(origID), "delete")
	alice.js("confirm", `document.querySelector('.timeline:not([hidden]) .msg-confirm button.danger').click()`)
	bob.seen("the first message deleted", `(() => { const li = `+liByID(origID)+`; return !!li && li.classList.contains('deleted')
		&& !li.querySelector('.reaction') && li.querySelector('.msg-body').textContent === 'message deleted'; })()`)
	bob.waitFor("the quote of a deleted message", liByID(replyID)+`.querySelector('.quote-body').textContent === 'message deleted'`)

	// A refused change is shown at its message: a reaction the server
	// does not take (not an emoji) answers invalid_emoji for its cid.
	alice.js("a bad chip", `(() => { const c = `+liByID(replyID)+`.querySelector('.reaction[data-emoji="👍"]'); c.dataset.emoji = 'ok'; c.click(); })()`)
	alice.waitFor("the refusal at the message", `(() => { const n = `+liByID(replyID)+`.querySelector('.msg-note'); return !!n && n.dataset.code === 'invalid_emoji' && /can’t be added/.test(n.textContent); })()`)

	// @ offers the room's people; Tab picks one.
	alice.do("type @b", chromedp.SendKeys(chromedp.ID("composer-input"), "@b"))
	alice.waitFor("the autocomplete", `(() => { const p = document.getElementById('mention-pop'); return !p.hidden && Array.from(p.querySelectorAll('li')).map(li => li.dataset.user).join() === 'bob'; })()`)
	alice.js("Tab", `document.getElementById('composer-input').dispatchEvent(new KeyboardEvent('keydown', { key: 'Tab', bubbles: true, cancelable: true }))`)
	if got := eval[string](alice, `document.getElementById('composer-input').value`); got != "@bob " {
		t.Errorf("alice: the autocomplete made %q, want %q", got, "@bob ")
	}
	alice.js("clear the composer", `(() => { const c = document.getElementById('composer-input'); c.value = ''; c.dispatchEvent(new Event('input')); })()`)

	// A mention of B raises B's badge while B has another room open; it
	// survives a reload (it comes from the server).
	bob.js("open another room", `location.hash = '#/elsewhere'`)
	bob.waitFor("the other room", `(() => { const t = document.querySelector('.timeline:not([hidden])'); return !!t && t.dataset.room === 'elsewhere' && !t.querySelector('.timeline-top .spinner'); })()`)
	// B asked for notifications (by a click: never before) and the page
	// is hidden: the mention raises one.
	bob.js("record notifications", `window.__notes = []; window.__asked = 0;
		window.Notification = class { constructor(title, opts) { window.__notes.push({ title, body: opts && opts.body }); } close() {} };
		window.Notification.permission = 'default';
		window.Notification.requestPermission = () => { window.__asked++; window.Notification.permission = 'granted'; return Promise.resolve('granted'); };`)
	if n := eval[int](bob, `window.__asked`); n != 0 {
		t.Errorf("bob: notification permission asked %d times without a click", n)
	}
	bob.js("click the bell", `document.getElementById('notify-toggle').click()`)
	bob.waitFor("the bell on", `window.__asked === 1 && document.getElementById('notify-toggle').getAttribute('aria-pressed') === 'true'`)
	bob.js("hide the page", `Object.defineProperty(document, 'hidden', { configurable: true, get: () => true })`)
	alice.compose("@bob are you there?")
	teamBadge := `(() => { const li = Array.from(document.querySelectorAll('#room-list .room-item')).find(li => li.querySelector('.room-name').textContent === '#team');
		if (!li) return false; const m = li.querySelector('.mention-badge'); return !m.hidden && m.textContent === '@1' && li.classList.contains('mentioned'); })()`
	bob.seen("the mention badge", teamBadge)
	bob.waitFor("the notification", `window.__notes.length === 1 && window.__notes[0].title === 'alice mentioned you in #team' && window.__notes[0].body === '@bob are you there?'`)
	bob.js("show the page", `delete document.hidden`)
	bob.do("reload", chromedp.Reload())
	bob.trap()
	bob.waitFor("connected again", `document.body.dataset.conn === 'connected'`)
	bob.waitFor("the mention badge after a reload", teamBadge)
	if n := eval[int](bob, `document.querySelectorAll('.timeline[data-room="team"] .unread-divider').length`); n != 0 {
		t.Errorf("bob: %d \"new messages\" dividers in a room not opened yet", n)
	}

	// Opening the room shows "New messages" before the mention and clears
	// the badge (a read marker goes to the server).
	bob.js("back to team", `Array.from(document.querySelectorAll('#room-list .room-link')).find(b => b.querySelector('.room-name').textContent === '#team').click()`)
	bob.waitFor("new messages divider", `(() => { const d = document.querySelector('.timeline:not([hidden]) .unread-divider'); if (!d) return false;
		let n = d.nextElementSibling; while (n && !n.classList.contains('msg')) n = n.nextElementSibling;
		return !!n && n.querySelector('.msg-body').textContent === '@bob are you there?'; })()`)
	bob.waitFor("badge cleared", `Array.from(document.querySelectorAll('#room-list .room-item')).every(li => li.querySelector('.badge').hidden && li.querySelector('.mention-badge').hidden)`)
	mentionID := eval[int](bob, liByBody("@bob are you there?")+`.dataset.id | 0`)
	bob.waitFor("the read mark stored", `(() => { const li = Array.from(document.querySelectorAll('#room-list .room-item')).find(li => li.querySelector('.room-name').textContent === '#team');
		return Number(li.dataset.read) >= `+strconv.Itoa(mentionID)+`; })()`)

	// After the reload the page came folded: the edit, the tombstone,
	// the reactions and the quotes are as they were live.
	for _, c := range []struct{ what, pred string }{
		{"tombstone", liByID(origID) + `.classList.contains('deleted') && ` + liByID(origID) + `.querySelector('.msg-body').textContent === 'message deleted'`},
		{"reply quoting a tombstone", liByID(replyID) + `.querySelector('.quote-body').textContent === 'message deleted'`},
		{"reaction", liByID(replyID) + `.querySelector('.reaction[data-emoji="👍"] .reaction-count').textContent === '1'`},
		{"edited payload", `!!` + liByID(payloadID) + `.querySelector('.msg-edited')`},
		{"deleted message", liByID(goneID) + `.classList.contains('deleted')`},
	} {
		if !eval[bool](bob, `(() => { try { return !!(`+c.pred+`); } catch (e) { return false; } })()`) {
			t.Errorf("bob after a reload: no %s", c.what)
		}
	}
	if n := eval[int](bob, `document.querySelectorAll('.timeline:not([hidden]) li.msg').length - new Set(Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg'), li => li.dataset.id)).size`); n != 0 {
		t.Errorf("bob after a reload: %d messages shown twice", n)
	}
	bob.do("reload", chromedp.Reload())
	bob.trap()
	bob.waitFor("connected again", `document.body.dataset.conn === 'connected'`)
	bob.waitFor("history", hasBody("@bob are you there?"))
	bob.js("open another room", `location.hash = '#/elsewhere'`)
	// The badge stays clear: the read marker was stored. Both rooms' joins
	// (and their unread frames) and the lobby are in.
	bob.waitFor("both rooms and the lobby loaded", `document.querySelectorAll('#lobby-list li').length > 0 &&
		Array.from(document.querySelectorAll('.timeline')).every(t => !t.querySelector('.timeline-top .spinner'))`)
	if n := eval[int](bob, `Array.from(document.querySelectorAll('#room-list .room-item')).filter(li => !li.querySelector('.badge').hidden || !li.querySelector('.mention-badge').hidden).length`); n != 0 {
		t.Errorf("bob: %d rooms with an unread badge after reading and reloading", n)
	}

	for _, p := range []*page{alice, bob} {
		if xss := eval[string](p, `typeof window.__xss`); xss != "undefined" {
			t.Errorf("%s: a payload ran (window.__xss is %s)", p.name, xss)
		}
		if n := eval[int](p, `document.querySelectorAll('#timelines script, #timelines img, #timelines svg, #timelines iframe, .msg-body b').length`); n != 0 {
			t.Errorf("%s: %d elements made from message text", p.name, n)
		}
		if n := eval[int](p, `window.__alerts`); n != 0 {
			t.Errorf("%s: alert ran %d times", p.name, n)
		}
		p.checkErrors()
	}
}

// postReply posts body to room as user through the HTTP API (a reply to
// replyTo when it is not 0) and returns the stored id.
func postReply(t *testing.T, base, room, user, body string, replyTo uint64) uint64 {
	t.Helper()
	u := base + "/api/rooms/" + url.PathEscape(room) + "/messages?user=" + url.QueryEscape(user)
	payload, err := json.Marshal(map[string]any{"body": body, "cid": fmt.Sprintf("http-%d", time.Now().UnixNano()), "reply_to": replyTo})
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post(u, "application/json", bytes.NewReader(payload))
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer res.Body.Close()
	var reply wire.PostReply
	if err := json.NewDecoder(res.Body).Decode(&reply); err != nil || res.StatusCode/100 != 2 || reply.ID == 0 {
		t.Fatalf("post %s: %s (%v, id %d)", u, res.Status, err, reply.ID)
	}
	return reply.ID
}

// TestBrowserReplyJump: clicking the quote of a reply whose original is
// far back in the room pages back (history frames with before) until the
// original is shown, then scrolls to it and highlights it.
func TestBrowserReplyJump(t *testing.T) {
	sys := startSystem(t, testConfig(t.TempDir(), ""))
	const room = "longroom"
	orig := postReply(t, sys.BaseURL(), room, "carol", "the *original* question", 0)
	for i := range 120 {
		postReply(t, sys.BaseURL(), room, fmt.Sprintf("user%d", i%10), fmt.Sprintf("filler %d", i), 0) // ten authors: each stays within its burst
	}
	postReply(t, sys.BaseURL(), room, "carol", "the answer, at last", orig)
	postReply(t, sys.BaseURL(), room, "carol", "**bold** _and_ `code` [link](https://example.com/)", 0)

	browser := newBrowser(t)
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	// The room list previews the last message as plain text.
	alice.waitFor("the lobby preview without Markdown", `Array.from(document.querySelectorAll('#lobby-list .lobby-preview')).some(p => p.textContent === 'carol: bold and code link')`)

	reply := liByBody("the answer, at last")
	alice.waitFor("the reply with its quote", `(() => { const li = `+reply+`; if (!li) return false; const q = li.querySelector('.msg-quote');
		return !!q && q.querySelector('.quote-user').textContent === 'carol' && q.querySelector('.quote-body').textContent === 'the original question'; })()`)
	if eval[bool](alice, `!!`+liByID(int(orig))) {
		t.Fatal("the original is on the first page: the test would not page back")
	}
	alice.js("click the quote", reply+`.querySelector('.msg-quote').click()`)
	alice.waitFor("the original, shown and highlighted", `(() => { const li = `+liByID(int(orig))+`; if (!li || !li.classList.contains('highlight')) return false;
		const r = li.getBoundingClientRect(), t = li.closest('.timeline').getBoundingClientRect(); return r.top >= t.top - 1 && r.bottom <= t.bottom + 1; })()`)
	ordered := eval[bool](alice, `(() => { const ids = Array.from(document.querySelectorAll('.timeline:not([hidden]) li.msg')).map(li => +li.dataset.id);
		return ids.length > 100 && ids.every((v, i) => i === 0 || v > ids[i - 1]); })()`)
	if !ordered {
		t.Error("after paging back the timeline is not complete and in id order")
	}
	alice.checkErrors()
}

// offlineHook wraps the page's WebSocket so a test can cut it off: every
// socket is kept in __socks (those opened before by their next send), every
// frame sent in __sent,
// __goOffline closes them all and points new ones at a closed port until
// __offline is false again.
const offlineHook = `(() => {
	window.__offline = false; window.__socks = []; window.__sent = [];
	const WS = window.WebSocket, send = WS.prototype.send;
	WS.prototype.send = function (d) { if (!window.__socks.includes(this)) window.__socks.push(this); window.__sent.push(JSON.parse(d)); return send.call(this, d); };
	window.WebSocket = function (url, protocols) { const s = new WS(window.__offline ? 'ws://127.0.0.1:9/' : url, protocols); window.__socks.push(s); return s; };
	Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
	window.WebSocket.prototype = WS.prototype;
	window.__goOffline = () => { window.__offline = true; window.__socks.forEach(s => s.close()); window.__socks = []; };
})()`

// TestBrowserConversationResume: changes made while a page is offline
// (an edit, a reaction, a delete) come back with the since resume as raw
// events; the page applies them to the messages they change and shows
// none of them as a message.
func TestBrowserConversationResume(t *testing.T) {
	sys := startSystem(t, testConfig(t.TempDir(), ""))
	const room = "resume"
	browser := newBrowser(t)
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	bob := openPage(t, browser, sys.BaseURL(), "bob", room)
	alice.compose("first, to be edited")
	alice.compose("second, to be deleted")
	alice.compose("third, to be reacted to")
	bob.waitFor("alice's messages", hasBody("third, to be reacted to"))
	ids := eval[[]int](bob, `["first, to be edited", "second, to be deleted", "third, to be reacted to"].map(b => (`+
		`Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg')).find(li => li.querySelector('.msg-body').textContent === b) || {dataset: {}}).dataset.id | 0)`)
	shown := eval[int](bob, `document.querySelectorAll('.timeline:not([hidden]) .messages li.msg').length`)

	bob.js("hook the socket", offlineHook)
	bob.do("type (a typing frame shows the socket)", chromedp.SendKeys(chromedp.ID("composer-input"), "x"))
	bob.waitFor("the socket seen", `window.__socks.length > 0`)
	bob.js("clear the composer", `(() => { const c = document.getElementById('composer-input'); c.value = ''; c.dispatchEvent(new Event('input')); })()`)
	bob.js("go offline", `window.__goOffline()`)
	bob.waitFor("offline", `document.body.dataset.conn !== 'connected'`)

	alice.act(liByID(ids[0]), "edit")
	alice.waitFor("editor", `!!document.querySelector('.timeline:not([hidden]) .edit-input')`)
	alice.js("new text", `document.querySelector('.timeline:not([hidden]) .edit-input').value = 'first, edited while bob was away'`)
	alice.save()
	alice.waitFor("edited", liByID(ids[0])+`.querySelector('.msg-body').textContent === 'first, edited while bob was away'`)
	alice.act(liByID(ids[1]), "delete")
	alice.js("confirm", `document.querySelector('.timeline:not([hidden]) .msg-confirm button.danger').click()`)
	alice.waitFor("deleted", liByID(ids[1])+`.classList.contains('deleted')`)
	alice.act(liByID(ids[2]), "react")
	alice.js("pick 🎉", `document.querySelector('.emoji-picker .emoji[data-emoji="🎉"]').click()`)
	alice.waitFor("reacted", liByID(ids[2])+`.querySelector('.reaction[data-emoji="🎉"]')`)
	alice.compose("fourth, while bob was away")

	bob.js("back online", `window.__offline = false; window.dispatchEvent(new Event('online'))`)
	bob.waitFor("connected again", `document.body.dataset.conn === 'connected'`)
	bob.waitFor("the new message", hasBody("fourth, while bob was away"))
	bob.waitFor("the edit, the delete and the reaction applied", `(() => {
		const a = `+liByID(ids[0])+`, b = `+liByID(ids[1])+`, c = `+liByID(ids[2])+`;
		return a.querySelector('.msg-body').textContent === 'first, edited while bob was away' && !!a.querySelector('.msg-edited')
			&& b.classList.contains('deleted') && !!c.querySelector('.reaction[data-emoji="🎉"]'); })()`)
	if !eval[bool](bob, `window.__sent.some(f => f.type === 'join' && f.room === '`+room+`' && f.since > 0)`) {
		t.Error("bob rejoined without since: the resume was not tested")
	}
	if n := eval[int](bob, `document.querySelectorAll('.timeline:not([hidden]) .messages li.msg').length`); n != shown+1 {
		t.Errorf("bob shows %d messages after the resume, want %d (the %d before and one new): a change event shown as a message?", n, shown+1, shown)
	}
	alice.checkErrors()
	bob.checkErrors()
}
