package app_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// linkAttrs is what every link the renderer makes carries after its href.
const linkAttrs = ` target="_blank" rel="noopener noreferrer nofollow"`

// markdownCases are the renderer's cases: a body and the innerHTML of the
// element it is rendered into (so text is shown escaped: &lt; is a literal
// '<' on screen, not an element).
var markdownCases = []struct{ name, in, want string }{
	{"plain", "hello there", "hello there"},
	{"bold", "**bold**", "<strong>bold</strong>"},
	{"bold words", "a **b c** d", "a <strong>b c</strong> d"},
	{"italic star", "*italic*", "<em>italic</em>"},
	{"italic underscore", "_italic_", "<em>italic</em>"},
	{"bold in italic", "_a **b** c_", "<em>a <strong>b</strong> c</em>"},
	{"italic in bold", "**a *b* c**", "<strong>a <em>b</em> c</strong>"},
	{"inline code", "run `go test`", "run <code>go test</code>"},
	{"markers in code", "`**x** _y_ [a](https://example.com/)`", "<code>**x** _y_ [a](https://example.com/)</code>"},
	{"code in bold", "**a `b` c**", "<strong>a <code>b</code> c</strong>"},
	{"bold closed inside code", "**a `b** c`", "**a <code>b** c</code>"},
	{"html in code", "`<b>x</b>`", "<code>&lt;b&gt;x&lt;/b&gt;</code>"},
	{"fence", "```\nfn() { *x* }\n```", "<pre><code>fn() { *x* }</code></pre>"},
	{"fence with language and text around", "before\n```go\nx := `y` // **z**\n```\nafter",
		"before<pre><code>x := `y` // **z**</code></pre>after"},
	{"fence on one line", "```a **b**```", "<pre><code>a **b**</code></pre>"},
	{"fence keeps lines", "```\n<i>1</i>\n  2\n```", "<pre><code>&lt;i&gt;1&lt;/i&gt;\n  2</code></pre>"},
	{"unclosed fence", "```not closed", "```not closed"},
	{"empty fence", "``````", "``````"},
	{"bare URL", "see https://example.com/a?b=1&c=2.",
		`see <a href="https://example.com/a?b=1&amp;c=2"` + linkAttrs + `>https://example.com/a?b=1&amp;c=2</a>.`},
	{"bare http URL", "http://example.com", `<a href="http://example.com/"` + linkAttrs + `>http://example.com</a>`},
	{"URL with parens", "(https://example.com/wiki/Foo_(bar))",
		`(<a href="https://example.com/wiki/Foo_(bar)"` + linkAttrs + `>https://example.com/wiki/Foo_(bar)</a>)`},
	{"URL in bold", "**https://example.com/x**",
		`<strong><a href="https://example.com/x"` + linkAttrs + `>https://example.com/x</a></strong>`},
	{"URL in code", "`https://example.com/`", "<code>https://example.com/</code>"},
	{"URL stops at a quote", `https://example.com/"onmouseover="alert(1)`,
		`<a href="https://example.com/"` + linkAttrs + `>https://example.com/</a>"onmouseover="alert(1)`},
	{"link", "[the docs](https://example.com/docs)", `<a href="https://example.com/docs"` + linkAttrs + `>the docs</a>`},
	{"link with formatting", "[**bold** `c`](https://example.com/)",
		`<a href="https://example.com/"` + linkAttrs + `><strong>bold</strong> <code>c</code></a>`},
	{"link with a quote in the target", `[x](https://example.com/"onclick="alert(1))`,
		`<a href="https://example.com/%22onclick=%22alert(1)"` + linkAttrs + `>x</a>`},
	{"javascript link", "[click](javascript:window.__xss=1)", "[click](javascript:window.__xss=1)"},
	{"javascript link with parens", "[click](javascript:alert(1))", "[click](javascript:alert(1))"},
	{"javascript link mixed case", "[click](JaVaScRiPt:alert(1))", "[click](JaVaScRiPt:alert(1))"},
	{"data link", "[x](data:text/html,<script>alert(1)</script>)", "[x](data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;)"},
	{"vbscript link", "[x](vbscript:msgbox)", "[x](vbscript:msgbox)"},
	{"relative link", "[x](/etc/passwd)", "[x](/etc/passwd)"},
	{"protocol-relative link", "[x](//evil.example/)", "[x](//evil.example/)"},
	{"javascript bare URL", "javascript:window.__xss=1", "javascript:window.__xss=1"},
	{"script tag", "<script>window.__xss=1</script>", "&lt;script&gt;window.__xss=1&lt;/script&gt;"},
	{"img tag", `<img src=x onerror="window.__xss=1">`, `&lt;img src=x onerror="window.__xss=1"&gt;`},
	{"html in bold", "**<b onmouseover=alert(1)>x</b>**", "<strong>&lt;b onmouseover=alert(1)&gt;x&lt;/b&gt;</strong>"},
	{"snake_case stays", "snake_case_name and __init__", "snake_case_name and __init__"},
	{"arithmetic stays", "2 * 3 * 4", "2 * 3 * 4"},
	{"unclosed markers stay", "**open and *also and _this", "**open and *also and _this"},
	{"entities stay text", "&lt;b&gt; &amp;", "&amp;lt;b&amp;gt; &amp;amp;"},
}

// markdownMessages are posted to the room, once through the HTTP API before
// the page opens (so they come from history) and once through the composer
// (live, after a pending copy); each is found by its tag, the first word.
var markdownMessages = []struct{ tag, body, want string }{
	{"m1", "m1 **bold** and *italic* and _under_", "m1 <strong>bold</strong> and <em>italic</em> and <em>under</em>"},
	{"m2", "m2 `code **not bold**`", "m2 <code>code **not bold**</code>"},
	{"m3", "m3 block:\n```\nline 1 **x**\n<b>y</b>\n```", "m3 block:<pre><code>line 1 **x**\n&lt;b&gt;y&lt;/b&gt;</code></pre>"},
	{"m4", "m4 https://example.com/page and [the docs](https://example.com/docs)",
		`m4 <a href="https://example.com/page"` + linkAttrs + `>https://example.com/page</a> and <a href="https://example.com/docs"` + linkAttrs + `>the docs</a>`},
	{"m5", "m5 <script>window.__xss=1</script>", "m5 &lt;script&gt;window.__xss=1&lt;/script&gt;"},
	{"m6", `m6 <img src=x onerror="window.__xss=1">`, `m6 &lt;img src=x onerror="window.__xss=1"&gt;`},
	{"m7", "m7 [click](javascript:window.__xss=1)", "m7 [click](javascript:window.__xss=1)"},
	{"m8", "m8 **<b onmouseover=alert(1)>x</b>**", "m8 <strong>&lt;b onmouseover=alert(1)&gt;x&lt;/b&gt;</strong>"},
	{"m9", "m9 javascript:window.__xss=1", "m9 javascript:window.__xss=1"},
}

// msgBody is a JavaScript expression: the .msg-body of the stored message
// in the visible timeline whose text starts with tag and a space or newline.
func msgBody(tag string) string {
	return `Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg .msg-body'))
		.find(e => /^` + tag + `[ \n]/.test(e.textContent))`
}

// TestBrowserMarkdown checks the safe Markdown subset of the web UI: the
// renderer itself case by case in the page, then messages from history and
// live ones: bold, italic, code, code blocks and http(s) links become
// elements, while HTML, javascript: links and other script payloads stay
// literal text that runs nothing, even when hovered or clicked.
func TestBrowserMarkdown(t *testing.T) {
	sys := startSystem(t, testConfig(t.TempDir(), ""))
	const room = "markdown"
	for _, m := range markdownMessages {
		postHTTP(t, sys.BaseURL(), room, "bob", m.body)
	}

	browser := newBrowser(t)
	alice := openPage(t, browser, sys.BaseURL(), "alice", room)
	alice.do("trap __xss", chromedp.Evaluate[chromedp.Void](`delete window.__xss;`))

	// The renderer, case by case, into a detached element.
	ins := make([]string, len(markdownCases))
	for i, c := range markdownCases {
		ins[i] = c.in
	}
	js, _ := json.Marshal(ins)
	got := eval[[]string](alice, `(() => {
		if (!window.hubbubMarkdown) return [];
		return `+string(js)+`.map(s => { const d = document.createElement('div'); window.hubbubMarkdown.render(d, s); return d.innerHTML; });
	})()`)
	if len(got) != len(markdownCases) {
		t.Errorf("the page has no Markdown renderer (window.hubbubMarkdown): got %d results for %d cases", len(got), len(markdownCases))
	} else {
		for i, c := range markdownCases {
			if got[i] != c.want {
				t.Errorf("%s: render(%q)\n got %s\nwant %s", c.name, c.in, got[i], c.want)
			}
		}
	}

	// The same bodies again, live: typed into the composer (Enter sends).
	for _, m := range markdownMessages {
		alice.do("compose "+m.tag, chromedp.Evaluate[chromedp.Void](`document.getElementById('composer-input').value = `+strconv.Quote(m.body)))
		alice.do("send "+m.tag, chromedp.SendKeys(chromedp.ID("composer-input"), "\r"))
		alice.waitFor(m.tag+" acked", `document.querySelectorAll('.pending-list li').length === 0 && Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg'))
			.filter(li => li.dataset.user === 'alice' && /^`+m.tag+`[ \n]/.test(li.querySelector('.msg-body').textContent)).length === 1`)
	}

	// Each message twice (bob's from history, alice's live), rendered as expected.
	type shown struct {
		User string `json:"user"`
		HTML string `json:"html"`
		Text string `json:"text"`
	}
	for _, m := range markdownMessages {
		list := eval[[]shown](alice, `Array.from(document.querySelectorAll('.timeline:not([hidden]) .messages li.msg'))
			.filter(li => /^`+m.tag+`[ \n]/.test(li.querySelector('.msg-body').textContent))
			.map(li => ({ user: li.dataset.user, html: li.querySelector('.msg-body').innerHTML, text: li.querySelector('.msg-body').innerText }))`)
		users := map[string]bool{}
		for _, s := range list {
			users[s.User] = true
			if s.HTML != m.want {
				t.Errorf("%s from %s:\n got %s\nwant %s", m.tag, s.User, s.HTML, m.want)
			}
		}
		if len(list) != 2 || !users["alice"] || !users["bob"] {
			t.Errorf("%s: shown %d times (%v); want once from bob (history) and once from alice (live)", m.tag, len(list), users)
		}
	}

	// The elements, by what they contain.
	for _, c := range []struct{ what, expr, want string }{
		{"strong", msgBody("m1") + `.querySelector('strong').textContent`, "bold"},
		{"em (star)", msgBody("m1") + `.querySelectorAll('em')[0].textContent`, "italic"},
		{"em (underscore)", msgBody("m1") + `.querySelectorAll('em')[1].textContent`, "under"},
		{"code", msgBody("m2") + `.querySelector('code').textContent`, "code **not bold**"},
		{"pre", msgBody("m3") + `.querySelector('pre > code').textContent`, "line 1 **x**\n<b>y</b>"},
		{"bare link href", msgBody("m4") + `.querySelectorAll('a')[0].href`, "https://example.com/page"},
		{"bare link rel", msgBody("m4") + `.querySelectorAll('a')[0].rel`, "noopener noreferrer nofollow"},
		{"bare link target", msgBody("m4") + `.querySelectorAll('a')[0].target`, "_blank"},
		{"link text", msgBody("m4") + `.querySelectorAll('a')[1].textContent`, "the docs"},
		{"link href", msgBody("m4") + `.querySelectorAll('a')[1].href`, "https://example.com/docs"},
		{"link rel", msgBody("m4") + `.querySelectorAll('a')[1].rel`, "noopener noreferrer nofollow"},
		{"html in bold", msgBody("m8") + `.querySelector('strong').textContent`, "<b onmouseover=alert(1)>x</b>"},
	} {
		if got := eval[string](alice, `(() => { try { return String(`+c.expr+`); } catch (e) { return 'error: ' + e.message; } })()`); got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, got, c.want)
		}
	}

	// The payloads are visible as the text that was sent.
	for _, m := range markdownMessages[4:] {
		payload := strings.TrimPrefix(m.body, m.tag+" ")
		if m.tag == "m8" {
			payload = "<b onmouseover=alert(1)>x</b>"
		}
		if got := eval[string](alice, msgBody(m.tag)+`.innerText`); !strings.Contains(got, payload) {
			t.Errorf("%s: shown as %q, want the literal %q", m.tag, got, payload)
		}
	}

	if path := os.Getenv("HUBBUB_MARKDOWN_SCREENSHOT"); path != "" {
		alice.do("scroll to m1", chromedp.Evaluate[chromedp.Void](msgBody("m1")+`.scrollIntoView({ block: 'start' })`))
		alice.screenshot(path)
	}

	// Hover and click what a payload would hide behind, with the real mouse
	// and with events on every element in every message body.
	before := eval[string](alice, `location.href`)
	for _, tag := range []string{"m5", "m6", "m7", "m8", "m9"} {
		xy := eval[[]float64](alice, `(() => { const b = `+msgBody(tag)+`; const e = b.querySelector('strong') || b;
			e.scrollIntoView({ block: 'center' }); const r = e.getBoundingClientRect();
			return [r.left + Math.min(r.width / 2, 40), r.top + r.height / 2]; })()`)
		alice.do("hover and click "+tag,
			chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, xy[0], xy[1]),
			chromedp.MouseClickXY(xy[0], xy[1]))
	}
	alice.do("events on every body element", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('.msg-body, .msg-body *:not(a)').forEach(e => {
		for (const type of ['mouseover', 'mouseenter', 'mousemove', 'click', 'dblclick']) e.dispatchEvent(new MouseEvent(type, { bubbles: true }));
	})`))

	for _, c := range []struct{ what, expr string }{
		{"script or img elements in the timeline", `document.querySelectorAll('#timelines script, #timelines img, #timelines iframe, #timelines object').length`},
		{"elements in a body outside strong, em, code, pre, a", `document.querySelectorAll('.msg-body *:not(strong, em, code, pre, a)').length`},
		{"links that are not http(s)", `Array.from(document.querySelectorAll('#timelines a')).filter(a => !/^https?:\/\//.test(a.getAttribute('href'))).length`},
		{"javascript: links", `document.querySelectorAll('a[href^="javascript:" i]').length`},
		{"links without rel/target", `Array.from(document.querySelectorAll('.msg-body a')).filter(a => a.rel !== 'noopener noreferrer nofollow' || a.target !== '_blank').length`},
		{"attributes on formatting elements", `Array.from(document.querySelectorAll('.msg-body strong, .msg-body em, .msg-body code, .msg-body pre')).filter(e => e.attributes.length > 0).length`},
		{"alerts", `window.__alerts`},
	} {
		if n := eval[int](alice, c.expr); n != 0 {
			t.Errorf("%s: %d", c.what, n)
		}
	}
	if n := eval[int](alice, `document.querySelectorAll('.msg-body a').length`); n != 4 {
		t.Errorf("%d links in the bodies, want 4 (m4's two, from history and live)", n)
	}
	if xss := eval[string](alice, `typeof window.__xss`); xss != "undefined" {
		t.Errorf("a payload ran: typeof window.__xss = %s", xss)
	}
	if after := eval[string](alice, `location.href`); after != before {
		t.Errorf("the page navigated from %s to %s", before, after)
	}
	alice.checkErrors()
}
