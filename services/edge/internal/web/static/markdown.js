// Hubbub web client: the safe Markdown subset shown in message bodies.
// Bodies are plain text on the wire; this renders **bold**, *italic* and
// _italic_, `inline code`, ```fenced code``` and links (bare http(s) URLs
// and [text](url)). It builds DOM nodes with createElement and text nodes
// only and never parses HTML, so markup in a body is always literal text.
// A link target must parse as an absolute http: or https: URL; anything
// else (javascript:, data:, relative, protocol-relative) stays plain text.
// Markers inside code are literal. It runs for every history item, so it
// is one left-to-right pass of two regular expressions, inline tokens never
// span a line, and a body without any marker character is one text node
// (a 2000-character body of adversarial markers costs about a millisecond).
'use strict';

(() => {
  // A fence: ``` with an optional info word ending its line (dropped, no
  // highlighting), the code, and the closing ```.
  const FENCE = /```([\w+#.-]*\n)?([\s\S]*?)```/g;
  // Inline tokens, tried left to right; at one position the first
  // alternative wins, so code beats links beats emphasis.
  //   1 code   2,3 [text](url)   4 bare URL   5 **bold**   6 *italic*   7 _italic_
  const INLINE = new RegExp([
    '`([^`\\n]+)`',
    '\\[([^\\[\\]\\n]+)\\]\\(((?:[^()\\s]|\\([^()\\s]*\\))+)\\)',
    '\\b(https?:\\/\\/[^\\s<>"\'`]+)',
    '\\*\\*(?=[^\\s*])([^\\n]*?[^\\s*])\\*\\*',
    '\\*(?=[^\\s*])([^*\\n]*?[^\\s*])\\*',
    '(?<![\\p{L}\\p{N}_])_(?=[^\\s_])([^_\\n]*?[^\\s_])_(?![\\p{L}\\p{N}_])',
  ].join('|'), 'giu');

  /** safeHref returns the normalised URL if it is absolute http(s), else null. */
  function safeHref(s) {
    if (!/^https?:\/\//i.test(s)) return null;
    let u;
    try { u = new URL(s); } catch (_) { return null; }
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  }

  /**
   * trimURL drops trailing punctuation that ends the sentence rather than
   * the URL; a ')' stays when it closes a '(' inside the URL.
   */
  function trimURL(u) {
    let open = 0;
    for (const c of u) if (c === '(') open++; else if (c === ')') open--;
    let end = u.length;
    for (; end > 0; end--) {
      const c = u[end - 1];
      if (c === ')' && open < 0) open++;
      else if (!".,;:!?*]}'\"".includes(c)) break;
    }
    return u.slice(0, end);
  }

  function link(href) {
    const a = document.createElement('a');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    return a;
  }

  function wrap(tag, text) {
    const e = document.createElement(tag);
    e.textContent = text;
    return e;
  }

  /** inline appends s to parent; links is false inside a link's text. */
  function inline(parent, s, links) {
    // One shared regex: every branch below sets lastIndex again after
    // recursing, and a finished exec loop leaves it at 0.
    const re = INLINE;
    re.lastIndex = 0;
    let last = 0;
    let m;
    while ((m = re.exec(s)) !== null) {
      let node = null;
      let end = re.lastIndex;
      if (m[1] !== undefined) {
        node = wrap('code', m[1]);
      } else if (m[2] !== undefined) {
        const href = links ? safeHref(m[3]) : null;
        if (href) {
          node = link(href);
          inline(node, m[2], false);
        }
      } else if (m[4] !== undefined) {
        const url = trimURL(m[4]);
        const href = links ? safeHref(url) : null;
        if (href) {
          node = link(href);
          node.textContent = url;
          end = m.index + url.length;
        }
      } else {
        const inner = m[5] !== undefined ? m[5] : m[6] !== undefined ? m[6] : m[7];
        // An odd number of backticks: the closing marker is inside code.
        if (inner.split('`').length % 2 === 1) {
          node = document.createElement(m[5] !== undefined ? 'strong' : 'em');
          inline(node, inner, links);
        }
      }
      if (!node) {
        // Not a token after all (an unsafe link, emphasis closed inside
        // code): keep its first character as text and look again from the
        // next one.
        re.lastIndex = m.index + 1;
        continue;
      }
      if (m.index > last) parent.append(s.slice(last, m.index));
      parent.append(node);
      last = end;
      re.lastIndex = end;
    }
    if (last < s.length) parent.append(s.slice(last));
  }

  /**
   * render appends the body text to parent as text nodes and the elements
   * strong, em, code, pre>code and a (http(s) only). It never parses HTML.
   */
  function render(parent, text) {
    const s = String(text);
    if (s.indexOf('`') < 0 && s.indexOf('*') < 0 && s.indexOf('_') < 0 && s.indexOf(':') < 0 && s.indexOf('[') < 0) {
      parent.append(s); // the common case: nothing to format
      return;
    }
    FENCE.lastIndex = 0;
    let last = 0;
    let m;
    while ((m = FENCE.exec(s)) !== null) {
      let code = m[2] || (m[1] || '').replace(/\n$/, '');
      code = code.replace(/^\n/, '').replace(/\n$/, '');
      if (!code.trim()) continue; // an empty fence is text
      // The block is its own line: drop one newline on either side of it.
      const before = s.slice(last, m.index).replace(/\n$/, '');
      if (before) inline(parent, before, true);
      const pre = document.createElement('pre');
      pre.append(wrap('code', code));
      parent.append(pre);
      last = FENCE.lastIndex;
      if (s[last] === '\n') last++;
    }
    if (last < s.length) inline(parent, s.slice(last), true);
  }

  window.hubbubMarkdown = Object.freeze({ render });
})();
