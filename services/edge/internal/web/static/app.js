// Hubbub web client: protocol v1 over /ws, no framework, no build step.
// Every piece of user-provided text is rendered with textContent or as a
// text node; this file never parses HTML. Message bodies go through
// markdown.js (hubbubMarkdown.render), which keeps the same rule: it only
// creates strong, em, code, pre and a elements (href absolute http(s) only,
// rel="noopener noreferrer nofollow") and puts the user's text in them as
// text nodes.
'use strict';

(() => {
  // ---------- constants ----------

  const MAX_BODY = 2000;             // characters, as the server counts them
  const PAGE = 50;                   // history page size
  const TYPING_RENEW_MS = 2000;      // resend "on" at most this often while typing
  const TYPING_IDLE_MS = 3000;       // send "off" after this long without a key
  const TYPING_WATCHDOG_MS = 6000;   // forget a typist not renewed for this long
  const LOBBY_REFRESH_MS = 15000;
  // Reconnect backoff: 0.5 s doubling to a 4 s ceiling, with equal jitter
  // (a delay is drawn from [ceiling/2, ceiling]), so the page is back at
  // most 4 s after the server is, and a fleet of tabs does not reconnect in
  // step. A connection that stayed up STABLE_MS resets it.
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 4000;
  const STABLE_MS = 10000;
  const CONN_TOAST_AFTER = 2;        // failed attempts in a row before the "can't reach" toast
  const TOAST_MS = 6000;
  const GROUP_WINDOW_MS = 5 * 60 * 1000;
  const CONNECT_TIMEOUT_MS = 10000;  // give up on a socket without a welcome
  const SINCE_MORE_WAIT_MS = 1500;   // wait for further since-pages before asking again
  const AUTH_CLOSE = { 4001: 'Sign-in is required to chat here.', 4002: 'Your sign-in is invalid or has expired.', 4003: 'You are not allowed to use this chat.' };
  const STORE_NAME = 'hubbub.name';
  const STORE_ROOMS = 'hubbub.rooms';
  const STORE_ACTIVE = 'hubbub.active';
  const STORE_TOKEN = 'hubbub.token';
  const STORE_ROSTER = 'hubbub.roster';
  const STORE_NOTIFY = 'hubbub.notify';
  // Conversation (DESIGN §3a).
  const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀']; // the reaction picker
  const MAX_REACTION_KINDS = 20;     // wire.MaxReactionKinds
  const MAX_UNREAD = 1000;           // wire.MaxUnread: "1000 or more"
  const READ_DEBOUNCE_MS = 400;      // a read marker at most this often per room
  const READ_WAIT_MS = 2000;         // wait this long for the join's unread frame before marking read
  const PRESENCE_LINE_MS = 8000;     // how long the "… are here" line stays after a change
  const NOTE_MS = 8000;              // an error shown at a message
  const HIGHLIGHT_MS = 2200;         // a message jumped to from a quote
  const OP_FORGET_MS = 60000;        // forget an unanswered edit/delete/react cid
  const MENTION_MAX = 8;             // names offered by the @ autocomplete

  // ---------- small helpers ----------

  const $ = (id) => document.getElementById(id);

  /** el creates an element with an optional class and text (as textContent). */
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  const storage = {
    get(k, area) {
      try { return (area || localStorage).getItem(k); } catch (_) { return null; }
    },
    set(k, v, area) {
      try { (area || localStorage).setItem(k, v); } catch (_) { /* private mode or full */ }
    },
    del(k, area) {
      try { (area || localStorage).removeItem(k); } catch (_) { /* ignore */ }
    },
  };

  /** normaliseRoom mirrors the server: trim, drop one leading '#', lowercase. */
  function normaliseRoom(s) {
    let r = String(s).trim();
    if (r.startsWith('#')) r = r.slice(1);
    return r.toLowerCase();
  }

  /** isChange reports whether kind is a change event (wire.IsChange). */
  const isChange = (kind) => kind === 'edit' || kind === 'delete' || kind === 'reaction';

  /**
   * plainText is s without the Markdown markers markdown.js renders (for
   * previews, quotes and notifications), on one line.
   */
  function plainText(s) {
    return String(s)
      .replace(/```[\w+#.-]*\n?/g, '')
      .replace(/`([^`\n]+)`/g, '$1')
      .replace(/\[([^\[\]\n]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/g, '$1')
      .replace(/\*\*(?=[^\s*])([^\n]*?[^\s*])\*\*/g, '$1')
      .replace(/\*(?=[^\s*])([^*\n]*?[^\s*])\*/g, '$1')
      .replace(/(^|[^\p{L}\p{N}_])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\p{L}\p{N}_])/gu, '$1$2')
      .replace(/\s+/g, ' ')
      .trim();
  }

  // An @user token, as wire.Mentions reads one: after the start or a
  // character that is not a letter, digit or '_'; a trailing '.' or '-' is
  // not part of the name.
  const MENTION_RE = /(^|[^\p{L}\p{N}_])@([\p{L}\p{N}_.-]+)/gu;
  const trimName = (n) => n.replace(/[.-]+$/, '');

  /** mentionsOf lists the names @mentioned in body (wire.Mentions). */
  function mentionsOf(body) {
    const out = [];
    for (const m of String(body).matchAll(MENTION_RE)) {
      const n = trimName(m[2]);
      if (n && !out.includes(n)) out.push(n);
    }
    return out;
  }

  /** mentionable reports whether @name can name user (wire.Mentions' rule). */
  const mentionable = (user) => /^[\p{L}\p{N}_.-]+$/u.test(user) && trimName(user) === user;

  /** names is "a", "a and b", "a, b and c" or "a, b and N others". */
  function names(list, total) {
    const n = Math.max(total || 0, list.length);
    if (n === 0) return '';
    if (n === 1) return list[0];
    if (n === 2 && list.length >= 2) return list[0] + ' and ' + list[1];
    if (n === 3 && list.length >= 3) return list[0] + ', ' + list[1] + ' and ' + list[2];
    const shown = list.slice(0, 2);
    const rest = n - shown.length;
    return shown.join(', ') + ' and ' + rest + (rest === 1 ? ' other' : ' others');
  }

  /** chars counts code points, as the server counts runes. */
  const chars = (s) => Array.from(s).length;

  function randomCid() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(36).padStart(2, '0')).join('').slice(0, 20);
  }

  function hue(s) {
    let h = 0;
    for (const c of s) h = (h * 31 + c.codePointAt(0)) >>> 0;
    return h % 360;
  }

  function avatar(user, size) {
    const a = el('span', 'avatar' + (size ? ' avatar-' + size : ''));
    a.setAttribute('aria-hidden', 'true');
    a.textContent = (Array.from(user)[0] || '?').toUpperCase();
    a.style.setProperty('--hue', String(hue(user)));
    return a;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  const relFmt = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

  /** shortTime is the time without a day period, for the narrow gutter. */
  function shortTime(d) {
    return timeFmt.formatToParts(d).filter((p) => p.type !== 'dayPeriod').map((p) => p.value).join('').trim();
  }

  function timeEl(ts, className, short) {
    const d = new Date(ts);
    const t = el('time', className, short ? shortTime(d) : timeFmt.format(d));
    t.dateTime = d.toISOString();
    t.title = fullFmt.format(d);
    return t;
  }

  function dayKey(ts) {
    const d = new Date(ts);
    return d.getFullYear() * 10000 + d.getMonth() * 100 + d.getDate();
  }

  function dayLabel(ts) {
    const d = new Date(ts);
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(ts) === dayKey(today.getTime())) return 'Today';
    if (dayKey(ts) === dayKey(yesterday.getTime())) return 'Yesterday';
    const opts = { weekday: 'long', month: 'long', day: 'numeric' };
    if (d.getFullYear() !== today.getFullYear()) opts.year = 'numeric';
    return d.toLocaleDateString(undefined, opts);
  }

  function relativeTime(ts) {
    if (!ts) return '';
    if (ts < 1e12) ts *= 1000; // tolerate seconds
    const diff = (ts - Date.now()) / 1000;
    const abs = Math.abs(diff);
    if (abs < 45) return 'just now';
    if (abs < 3600) return relFmt.format(Math.round(diff / 60), 'minute');
    if (abs < 86400) return relFmt.format(Math.round(diff / 3600), 'hour');
    if (abs < 86400 * 30) return relFmt.format(Math.round(diff / 86400), 'day');
    return new Date(ts).toLocaleDateString();
  }

  /**
   * renderBody appends a message body to parent with the safe Markdown
   * subset of markdown.js; were that script missing, as plain text.
   */
  const renderBody = (window.hubbubMarkdown && window.hubbubMarkdown.render) || ((parent, text) => parent.append(String(text)));

  // ---------- DOM references ----------

  const ui = {
    app: $('app'),
    conn: $('conn'), connText: $('conn-text'), connSep: $('conn-sep'), connRetry: $('conn-retry'),
    me: $('me'), meName: $('me-name'), meAvatar: $('me-avatar'), changeName: $('change-name'),
    sidebar: $('sidebar'), sidebarToggle: $('sidebar-toggle'),
    joinForm: $('join-form'), joinInput: $('join-input'), joinError: $('join-error'),
    roomList: $('room-list'), roomListEmpty: $('room-list-empty'),
    lobbyList: $('lobby-list'), lobbyEmpty: $('lobby-empty'), lobbyRefresh: $('lobby-refresh'),
    main: $('main'), emptyState: $('empty-state'), quickRooms: $('quick-rooms'),
    roomView: $('room-view'), roomTitle: $('room-title'), roomOnline: $('room-online'),
    rosterToggle: $('roster-toggle'), leaveRoom: $('leave-room'),
    timelines: $('timelines'), jump: $('jump-latest'),
    roster: $('roster'), rosterHeading: $('roster-heading'), rosterList: $('roster-list'), rosterMore: $('roster-more'),
    typing: $('typing'),
    composer: $('composer'), input: $('composer-input'), count: $('composer-count'), send: $('send-btn'),
    composerLabel: $('composer-label'),
    replyBar: $('reply-bar'), replyUser: $('reply-user'), replyPreview: $('reply-preview'), replyCancel: $('reply-cancel'),
    mentionPop: $('mention-pop'), presenceLine: $('presence-line'),
    notify: $('notify-toggle'), notifyLabel: $('notify-label'),
    login: $('login'), loginForm: $('login-form'), loginName: $('login-name'), loginError: $('login-error'), loginCancel: $('login-cancel'),
    authError: $('auth-error'), authText: $('auth-text'), authRetry: $('auth-retry'),
    toasts: $('toasts'),
  };

  // ---------- state ----------

  const state = {
    token: null,          // JWT mode when set
    name: null,           // chosen display name (auth mode none)
    me: null,             // user id announced by welcome
    ws: null,
    welcomed: false,
    attempt: 0,           // backoff level: grows per failed attempt, reset by a stable connection
    failures: 0,          // attempts in a row that never got a welcome
    connects: 0,          // sockets opened so far
    reconnectTimer: 0,
    countdownTimer: 0,
    stableTimer: 0,
    reconnectAt: 0,
    stopped: false,
    rooms: new Map(),     // name -> Room, in sidebar order
    active: null,         // active room name
    cids: new Map(),      // cid -> room name, for acks
    ops: new Map(),       // cid -> {room, id, type}: edits, deletes and reactions awaiting their ack
    mention: null,        // the open @ autocomplete: {start, items, index}
    notify: storage.get(STORE_NOTIFY) === 'on',
    typing: { room: null, sentAt: 0, idle: 0 },
    lobby: [],
    lobbyTimer: 0,
    lobbyRender: 0,
    lobbySoon: 0,
    rosterHidden: storage.get(STORE_ROSTER) === 'hidden' || window.matchMedia('(max-width: 1000px)').matches,
  };

  const toasts = new Map(); // key -> {el, timer}: the toasts on screen

  class Room {
    constructor(name) {
      this.name = name;
      this.msgs = new Map();      // id -> {m, li, provisional}
      this.lastId = 0;            // end of the gap-free chain
      this.ahead = new Map();     // prev -> message received beyond a gap
      this.synced = false;        // the join history arrived on this connection
      this.everSynced = false;
      this.buffer = [];           // live messages that arrived before the join history
      this.expect = [];           // FIFO of 'join' | 'older' history replies
      this.sinceSent = null;      // since value of the join in flight (null: fresh join)
      this.olderBefore = 0;       // before value of the page request in flight
      this.hasMore = false;
      this.sinceMoreTimer = 0;
      this.retryTimer = 0;
      this.gapStrikes = 0;
      this.roster = new Set();
      this.online = 0;
      this.rosterMore = false;
      this.typists = new Map();   // user -> watchdog timer
      this.unread = 0;            // messages after the read mark by others (server, plus live ones)
      this.mentions = 0;          // of them, those mentioning me
      this.unreadAt = 0;          // when unread/mentions last changed here (a lobby older than that is stale)
      this.read = 0;              // the read mark (unread frames)
      this.readKnown = false;     // the join's unread frame arrived (or we stopped waiting)
      this.readWait = 0;
      this.readTimer = 0;
      this.sentRead = 0;          // the last read id sent on this connection
      this.dividerRead = null;    // the read mark the "new messages" divider follows
      this.dividerArmed = true;   // place the divider from the next join's unread frame
      this.replyTo = null;        // {id, user, body}: the composer's reply
      this.seek = 0;              // a message id being looked for in older pages
      this.presenceUntil = 0;
      this.presenceTimer = 0;
      this.presenceFirst = '';    // who the last presence change was about
      this.pending = new Map();   // cid -> {cid, body, ts, li, state, replyTo}
      this.draft = '';
      this.atBottom = true;
      this.buildDom();
    }

    buildDom() {
      this.timeline = el('div', 'timeline');
      this.timeline.setAttribute('role', 'log');
      this.timeline.setAttribute('aria-live', 'polite');
      this.timeline.setAttribute('aria-label', 'Messages in #' + this.name);
      this.timeline.tabIndex = 0;
      this.timeline.hidden = true;
      this.timeline.dataset.room = this.name;
      this.top = el('div', 'timeline-top');
      this.list = el('ol', 'messages');
      this.pendingList = el('ol', 'pending-list');
      this.pendingList.setAttribute('aria-label', 'Messages being sent');
      this.timeline.append(this.top, this.list, this.pendingList);
      this.timeline.addEventListener('scroll', () => onTimelineScroll(this), { passive: true });
      wireTimeline(this);
      ui.timelines.append(this.timeline);

      this.item = el('li', 'room-item');
      this.link = el('button', 'room-link');
      this.link.type = 'button';
      this.nameEl = el('span', 'room-name', '#' + this.name);
      this.badge = el('span', 'badge');
      this.badge.hidden = true;
      this.mentionBadge = el('span', 'badge mention-badge');
      this.mentionBadge.hidden = true;
      this.link.append(this.nameEl, this.mentionBadge, this.badge);
      this.link.addEventListener('click', () => { setActive(this.name); closeSidebar(); });
      const leave = el('button', 'room-leave', '×');
      leave.type = 'button';
      leave.title = 'Leave #' + this.name;
      leave.setAttribute('aria-label', 'Leave #' + this.name);
      leave.addEventListener('click', () => leaveRoom(this.name));
      this.item.append(this.link, leave);
      ui.roomList.append(this.item);
      this.renderTop();
    }

    destroy() {
      this.timeline.remove();
      this.item.remove();
      for (const t of this.typists.values()) clearTimeout(t);
      clearTimeout(this.sinceMoreTimer);
      clearTimeout(this.retryTimer);
      clearTimeout(this.readWait);
      clearTimeout(this.readTimer);
      this.readTimer = 0;
      clearTimeout(this.presenceTimer);
      for (const cid of this.pending.keys()) state.cids.delete(cid);
    }

    /** newestId is the id of the newest message shown (0: none). */
    newestId() {
      for (let li = this.list.lastElementChild; li; li = li.previousElementSibling) {
        if (li.classList.contains('msg')) return Number(li.dataset.id);
      }
      return 0;
    }

    oldestId() {
      const first = this.list.querySelector('li.msg');
      return first ? Number(first.dataset.id) : 0;
    }

    renderTop() {
      const top = this.top;
      top.replaceChildren();
      top.className = 'timeline-top';
      if (this.olderBefore) {
        top.append(el('span', 'spinner'), document.createTextNode('Loading older messages…'));
      } else if (!this.synced && !this.everSynced) {
        top.append(el('span', 'spinner'), document.createTextNode('Loading #' + this.name + '…'));
      } else if (!this.hasMore) {
        top.classList.add('beginning');
        top.append(el('strong', null, 'This is the beginning of #' + this.name + '.'),
          document.createTextNode('Everything said here is kept for everyone who joins later.'));
      } else {
        top.append(document.createTextNode('Scroll up for older messages'));
      }
    }

    updateBadge() {
      // The room being read (shown, newest message in view) has no badge:
      // its read marker is on its way.
      const reading = state.active === this.name && !document.hidden && this.atBottom && this.synced;
      const n = reading ? 0 : this.unread;
      const k = reading ? 0 : this.mentions;
      const cap = (x) => (x >= MAX_UNREAD ? MAX_UNREAD + '+' : x > 99 ? '99+' : String(x));
      this.badge.hidden = n === 0;
      this.badge.textContent = cap(n);
      this.mentionBadge.hidden = k === 0;
      this.mentionBadge.textContent = '@' + cap(k);
      this.mentionBadge.title = k + (k === 1 ? ' mention' : ' mentions') + ' of you';
      this.item.classList.toggle('unread', n > 0 || k > 0);
      this.item.classList.toggle('mentioned', k > 0);
      const parts = [];
      if (n) parts.push(cap(n) + ' unread');
      if (k) parts.push(cap(k) + (k === 1 ? ' mention' : ' mentions'));
      this.link.setAttribute('aria-label', '#' + this.name + (parts.length ? ', ' + parts.join(', ') : ''));
      updateTitle();
    }

    /** resetView forgets every message (recovered:false). */
    resetView() {
      this.msgs.clear();
      this.ahead.clear();
      this.lastId = 0;
      detachToolbar();
      this.list.replaceChildren();
      this.top.after(this.noticeEl('You were away for a while, so some messages are no longer available. Showing the latest ones.'));
    }

    noticeEl(text) {
      this.timeline.querySelectorAll('.notice').forEach((n) => n.remove());
      return el('div', 'notice', text);
    }
  }

  // ---------- connection ----------

  function readToken() {
    const params = new URLSearchParams(location.search);
    const fromURL = params.get('token');
    if (fromURL) {
      storage.set(STORE_TOKEN, fromURL, sessionStorage);
      params.delete('token');
      const q = params.toString();
      history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
      return fromURL;
    }
    for (const part of document.cookie.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === 'hubbub_token') {
        const v = decodeURIComponent(part.slice(i + 1).trim());
        if (v) return v;
      }
    }
    return storage.get(STORE_TOKEN, sessionStorage);
  }

  function wsURL() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = state.token ? 'token=' + encodeURIComponent(state.token) : 'user=' + encodeURIComponent(state.name);
    return proto + '//' + location.host + '/ws?' + q;
  }

  function setConn(kind, text) {
    ui.conn.dataset.state = kind;
    document.body.dataset.conn = kind;
    ui.connText.textContent = text;
    const waiting = kind === 'waiting';
    ui.connSep.hidden = !waiting;
    ui.connRetry.hidden = !waiting;
  }

  /**
   * connect opens a socket now. via says what started it (start, timer,
   * retry, online, visible, focus, login) and is shown on #conn as
   * data-via, with data-connects counting the sockets opened.
   */
  function connect(via) {
    clearReconnect();
    if (state.stopped) return;
    if (!state.token && !state.name) { showLogin(); return; }
    state.connects++;
    ui.conn.dataset.connects = String(state.connects);
    ui.conn.dataset.via = via || 'start';
    setConn('connecting', state.attempt || state.failures ? 'Reconnecting…' : 'Connecting…');
    let sock;
    try {
      sock = new WebSocket(wsURL());
    } catch (err) {
      state.failures++;
      scheduleReconnect(false);
      return;
    }
    state.ws = sock;
    state.welcomed = false;
    // A server that accepts the socket but never greets us is as good as down.
    setTimeout(() => { if (sock === state.ws && !state.welcomed) sock.close(); }, CONNECT_TIMEOUT_MS);
    sock.addEventListener('message', (ev) => {
      if (sock !== state.ws || typeof ev.data !== 'string') return;
      let f;
      try { f = JSON.parse(ev.data); } catch (_) { return; }
      if (f && typeof f === 'object') handleFrame(f);
    });
    sock.addEventListener('close', (ev) => {
      if (sock !== state.ws) return;
      const wasWelcomed = state.welcomed;
      state.ws = null;
      state.welcomed = false;
      clearTimeout(state.stableTimer);
      if (!wasWelcomed) state.failures++;
      onDisconnected();
      onClose(ev.code, ev.reason, wasWelcomed);
    });
  }

  function send(frame) {
    if (!state.ws || !state.welcomed || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function onClose(code, reason, wasWelcomed) {
    if (AUTH_CLOSE[code]) {
      state.stopped = true;
      dismissToast('conn');
      setConn('failed', 'Not signed in');
      if (!state.token && code === 4002) {
        showLogin('The server refused that name' + (reason ? ' (' + reason + ')' : '') + '. Try another one.');
      } else {
        ui.authText.textContent = AUTH_CLOSE[code] + (reason ? ' (' + reason + ')' : '');
        ui.authError.hidden = false;
      }
      return;
    }
    if (code === 1007 || code === 1008 || code === 1009) {
      toast('The server closed the connection' + (reason ? ': ' + reason : '') + ' (' + code + ').', null, 'conn-close:' + code);
    }
    scheduleReconnect(wasWelcomed && (code === 1012 || code === 1001));
  }

  /** backoffDelay is the wait before the next try at a backoff level. */
  function backoffDelay(level) {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(level, 16));
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  /**
   * scheduleReconnect waits, then connects. The delay is shown on #conn
   * (data-delay in ms, data-attempt the backoff level, data-retry-at the
   * epoch ms of the try) and counted down in the status.
   */
  function scheduleReconnect(quick) {
    clearReconnect();
    let delay;
    if (quick) {
      // A drain (1012) or going-away of a working connection: spread the
      // herd over a short window and come back fast.
      delay = 150 + Math.random() * 1350;
      state.attempt = Math.max(state.attempt, 1);
    } else {
      delay = backoffDelay(state.attempt);
      state.attempt = Math.min(state.attempt + 1, 16);
    }
    delay = Math.round(delay);
    state.reconnectAt = Date.now() + delay;
    ui.conn.dataset.delay = String(delay);
    ui.conn.dataset.attempt = String(state.attempt);
    ui.conn.dataset.retryAt = String(state.reconnectAt);
    state.reconnectTimer = setTimeout(() => connect('timer'), delay);
    countdown();
    if (state.failures >= CONN_TOAST_AFTER) {
      toast('Can’t reach the server. Reconnecting by itself — messages you write are sent once it’s back.', null, 'conn', true);
    }
  }

  /** countdown shows "Reconnecting in N s" and ticks on each whole second. */
  function countdown() {
    clearTimeout(state.countdownTimer);
    const left = state.reconnectAt - Date.now();
    if (left <= 0) { setConn('waiting', 'Reconnecting…'); return; }
    setConn('waiting', 'Reconnecting in ' + Math.ceil(left / 1000) + ' s');
    state.countdownTimer = setTimeout(countdown, (left % 1000) || 1000);
  }

  function clearReconnect() {
    clearTimeout(state.reconnectTimer);
    clearTimeout(state.countdownTimer);
    state.reconnectTimer = 0;
    state.reconnectAt = 0;
  }

  /**
   * reconnectNow tries at once instead of waiting out the backoff: the
   * "retry now" button, the network coming back (online), the tab becoming
   * visible or focused. It does nothing while connected or already trying,
   * except that "online" replaces a socket still trying over the old
   * network. A try started here does not raise the backoff level; "online"
   * starts it over.
   */
  function reconnectNow(via) {
    if (state.stopped || (!state.token && !state.name)) return;
    if (state.ws) {
      if (state.welcomed || via !== 'online') return;
      const old = state.ws;
      state.ws = null;
      old.close();
    }
    state.attempt = via === 'online' ? 0 : Math.max(0, state.attempt - 1);
    connect(via);
  }

  function onDisconnected() {
    stopTypingTimers();
    for (const room of state.rooms.values()) {
      room.synced = false;
      room.expect = [];
      room.sinceSent = null;
      room.olderBefore = 0;
      room.buffer = [];
      clearTimeout(room.sinceMoreTimer);
      clearTimeout(room.retryTimer);
      for (const t of room.typists.values()) clearTimeout(t);
      room.typists.clear();
      for (const p of room.pending.values()) if (p.state === 'sending') setPendingState(room, p, 'queued');
    }
    renderTyping();
  }

  // ---------- frames from the server ----------

  function handleFrame(f) {
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'history': onHistory(f); break;
      case 'message': onMessageFrame(f); break;
      case 'ack': onAck(f); break;
      case 'typing': onTyping(f); break;
      case 'roster': onRoster(f); break;
      case 'presence': onPresence(f); break;
      case 'error': onError(f); break;
      case 'unread': onUnread(f); break;
      default: break; // newer server: ignore unknown frames
    }
  }

  function onWelcome(f) {
    state.welcomed = true;
    state.failures = 0;
    // The backoff starts over only once this connection has stayed up: a
    // server that greets and then drops us does not get a tight loop.
    clearTimeout(state.stableTimer);
    state.stableTimer = setTimeout(() => {
      state.attempt = 0;
      ui.conn.dataset.attempt = '0';
    }, STABLE_MS);
    for (const k of Array.from(toasts.keys())) if (k === 'conn' || k.startsWith('conn-close:')) dismissToast(k);
    state.me = typeof f.user === 'string' ? f.user : state.name;
    showMe();
    setConn('connected', 'Connected');
    for (const room of state.rooms.values()) sendJoin(room);
  }

  function sendJoin(room) {
    const frame = { type: 'join', room: room.name };
    if (room.everSynced && room.lastId > 0) frame.since = room.lastId;
    room.synced = false;
    room.sinceSent = frame.since === undefined ? null : frame.since;
    // The join answers with an unread frame: mark nothing read before it
    // (it places the "new messages" divider), unless it does not come.
    room.readKnown = false;
    room.sentRead = 0;
    clearTimeout(room.readWait);
    room.readWait = setTimeout(() => { room.readKnown = true; scheduleRead(room); }, READ_WAIT_MS);
    if (send(frame)) room.expect.push('join');
    room.renderTop();
  }

  /** resync asks for everything after the chain's end to fill a gap. */
  function resync(room) {
    if (!room.synced || !state.welcomed) return; // a join is already in flight
    room.gapStrikes++;
    if (room.gapStrikes > 2) {
      // The server keeps answering with the same hole: accept its view.
      acceptAhead(room);
      return;
    }
    sendJoin(room);
  }

  function acceptAhead(room) {
    let max = room.lastId;
    for (const m of room.ahead.values()) max = Math.max(max, m.id);
    room.ahead.clear();
    room.lastId = max;
    room.gapStrikes = 0;
  }

  function onHistory(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    const items = Array.isArray(f.items) ? f.items.filter(validMessage) : [];
    let kind = room.expect.shift() || 'extra';
    if (kind === 'older' && items.length && room.synced && room.lastId > 0 && items[0].prev === room.lastId) {
      // A continuation of a long since-catch-up (it extends the chain's
      // end), not the older page asked for: that one is still to come.
      room.expect.unshift('older');
      kind = 'extra';
    }
    if (kind === 'older' && items.length && room.olderBefore && items[items.length - 1].id >= room.olderBefore) {
      // Replies came back in another order than asked: this one is the join.
      const i = room.expect.indexOf('join');
      if (i >= 0) { room.expect.splice(i, 1); room.expect.unshift('older'); kind = 'join'; }
    }
    if (kind === 'older') onOlderPage(room, items, !!f.has_more);
    else onJoinHistory(room, items, f, kind === 'extra');
  }

  function onJoinHistory(room, items, f, extra) {
    const since = room.sinceSent;
    const first = !room.everSynced;
    const fresh = !extra && (!room.everSynced || since === null);
    const keepScroll = room.atBottom;
    clearTimeout(room.sinceMoreTimer);
    if (!extra && since !== null && f.recovered === false) {
      room.resetView();
      room.hasMore = !!f.has_more;
    } else if (!extra && fresh) {
      room.hasMore = !!f.has_more;
    }
    room.timeline.setAttribute('aria-busy', 'true');
    const last = Number.isFinite(f.last) && f.last > 0 ? f.last : 0;
    const folded = fresh || (!extra && since !== null && f.recovered === false);
    if (folded) {
      // A page: messages with their changes folded in (a page read from
      // the stream may still hold raw change events: apply them). The
      // chain goes on from the page's last, not from its last item, whose
      // prev skips the folded changes.
      const upto = Math.max(last, room.lastId);
      for (const m of items) if (!isChange(m.kind)) insertMessage(room, m, false, upto);
      for (const m of items) if (isChange(m.kind)) applyChange(room, m);
      let newest = last;
      for (const m of items) newest = Math.max(newest, m.id);
      if (newest > room.lastId) room.lastId = newest;
      room.ahead.clear();
    } else {
      // since: the raw events after our cursor, a chain.
      for (const m of items) {
        if (isChange(m.kind)) applyChange(room, m);
        else insertMessage(room, m, false, m.id);
        if (m.id > room.lastId) {
          if (m.prev === room.lastId || room.lastId === 0) room.lastId = m.id;
          else room.ahead.set(m.prev, m);
        }
      }
      drainAhead(room);
      if (last > room.lastId && room.ahead.size === 0) room.lastId = last;
    }
    drainAhead(room);
    room.synced = true;
    room.everSynced = true;
    room.sinceSent = null;
    dismissToast('unavailable:' + room.name);
    room.timeline.setAttribute('aria-busy', 'false');
    const buffered = room.buffer;
    room.buffer = [];
    for (const m of buffered) onLiveMessage(room, m, false);
    // Messages written while away go out once the room is joined again; the
    // same cid makes a resend of an already stored message harmless.
    for (const p of room.pending.values()) if (p.state === 'queued') transmit(room, p);
    if (room.ahead.size > 0) resync(room);
    else room.gapStrikes = 0;
    if (since !== null && f.has_more && f.recovered !== false) {
      // More newer messages exist: the edge may still be sending them; if
      // it is not, ask again from where the chain now ends.
      room.sinceMoreTimer = setTimeout(() => { if (room.synced) sendJoin(room); }, SINCE_MORE_WAIT_MS);
    }
    room.renderTop();
    renderDivider(room);
    persistRooms();
    if (first) setTimeout(loadLobby, 500); // the room may be new: refresh the list
    if (keepScroll) scrollToBottom(room);
    maybeFillUp(room);
    if (state.active === room.name) renderRoomHeader();
    scheduleRead(room);
  }

  function onOlderPage(room, items, hasMore) {
    const tl = room.timeline;
    const fromBottom = tl.scrollHeight - tl.scrollTop;
    room.timeline.setAttribute('aria-busy', 'true');
    for (let i = items.length - 1; i >= 0; i--) if (!isChange(items[i].kind)) insertMessage(room, items[i], false, room.lastId);
    for (const m of items) if (isChange(m.kind)) applyChange(room, m);
    room.timeline.setAttribute('aria-busy', 'false');
    room.hasMore = hasMore && items.length > 0;
    room.olderBefore = 0;
    room.renderTop();
    renderDivider(room);
    tl.scrollTop = tl.scrollHeight - fromBottom; // keep what the reader was looking at
    if (room.seek) continueSeek(room);
    maybeFillUp(room);
  }

  function validMessage(m) {
    return m && typeof m === 'object' && Number.isFinite(m.id) && m.id > 0;
  }

  function onMessageFrame(f) {
    const m = f.message;
    if (!validMessage(m)) return;
    const room = state.rooms.get(f.room || m.room);
    if (!room) return;
    if (!room.synced) { room.buffer.push(m); return; }
    onLiveMessage(room, m, true);
  }

  /** advanceChain moves the chain's end over m, or notes a gap before it. */
  function advanceChain(room, m) {
    if (m.id <= room.lastId) return;
    if (m.prev === room.lastId) {
      room.lastId = m.id;
      drainAhead(room);
    } else if (m.prev > room.lastId || room.lastId === 0) {
      room.ahead.set(m.prev, m);
      resync(room); // a gap: fetch what we missed
    } else {
      room.lastId = m.id; // prev older than our end: trust the server's chain
    }
  }

  function onLiveMessage(room, m, live) {
    if (isChange(m.kind)) {
      // An edit, delete or reaction: applied to the message it changes,
      // never shown as a message. One at or below the chain's end is
      // already folded into what we show.
      if (m.id <= room.lastId) return;
      const wasBottom = room.atBottom;
      applyChange(room, m);
      advanceChain(room, m);
      if (wasBottom) scrollToBottom(room);
      return;
    }
    if (m.id <= room.lastId && room.msgs.has(m.id) && !room.msgs.get(m.id).provisional) return; // duplicate
    const wasBottom = room.atBottom;
    const isNew = insertMessage(room, m, false, m.id);
    advanceChain(room, m);
    if (m.kind !== 'system' && room.typists.has(m.user)) {
      clearTimeout(room.typists.get(m.user));
      room.typists.delete(m.user);
      if (state.active === room.name) renderTyping();
    }
    scheduleRead(room);
    if (!live || !isNew) return;
    const mine = m.user === state.me;
    if (mine || wasBottom) scrollToBottom(room);
    const visible = state.active === room.name && !document.hidden;
    const entry = room.msgs.get(m.id);
    const forMe = !mine && m.kind !== 'system' && entry && mentionsMe(entry.m);
    if (!mine && m.kind !== 'system' && (!visible || !room.atBottom)) {
      // Counted here until the server says otherwise: a mention is
      // followed by an unread frame with the server's counts.
      room.unread = Math.min(room.unread + 1, MAX_UNREAD);
      if (forMe) room.mentions = Math.min(room.mentions + 1, MAX_UNREAD);
      room.unreadAt = Date.now();
      room.updateBadge();
    }
    if (forMe) notifyMention(room, entry.m);
    if (entry) touchLobby(room.name, entry.m, true);
    if (mine && room.dividerRead !== null) {
      room.dividerRead = null; // answering: the reader has caught up
      renderDivider(room);
    }
    if (state.active === room.name && !room.atBottom) ui.jump.hidden = false;
  }

  function drainAhead(room) {
    while (room.ahead.has(room.lastId)) {
      const m = room.ahead.get(room.lastId);
      room.ahead.delete(room.lastId);
      if (m.id <= room.lastId) break;
      room.lastId = m.id;
    }
    // drop anything the chain has already passed
    for (const [prev, m] of room.ahead) if (m.id <= room.lastId) room.ahead.delete(prev);
  }

  function onAck(f) {
    if (state.ops.has(f.cid)) { state.ops.delete(f.cid); return; } // the event follows as a message frame
    const roomName = state.cids.get(f.cid);
    const room = roomName && state.rooms.get(roomName);
    if (!room) return;
    const p = room.pending.get(f.cid);
    state.cids.delete(f.cid);
    if (!p) return;
    removePending(room, p);
    if (Number.isFinite(f.id) && f.id > 0 && !room.msgs.has(f.id)) {
      // The live echo is on its way; show the message in its final place now.
      insertMessage(room, { id: f.id, prev: -1, room: room.name, user: state.me, body: p.body, kind: 'message', ts: p.ts, cid: p.cid, reply_to: p.replyTo || 0, mentions: mentionsOf(p.body) }, true, f.id);
      scrollToBottom(room);
    }
  }

  function onTyping(f) {
    const room = state.rooms.get(f.room);
    if (!room || typeof f.user !== 'string' || f.user === state.me) return;
    clearTimeout(room.typists.get(f.user));
    if (f.state === 'on') {
      room.typists.set(f.user, setTimeout(() => {
        room.typists.delete(f.user);
        if (state.active === room.name) renderTyping();
      }, TYPING_WATCHDOG_MS));
    } else {
      room.typists.delete(f.user);
    }
    if (state.active === room.name) renderTyping();
  }

  function onRoster(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    room.roster = new Set((Array.isArray(f.users) ? f.users : []).filter((u) => typeof u === 'string'));
    room.online = Number.isFinite(f.online) ? f.online : room.roster.size;
    room.rosterMore = !!f.more;
    if (state.active === room.name) { renderRoster(); renderRoomHeader(); }
  }

  function onPresence(f) {
    const room = state.rooms.get(f.room);
    if (!room || typeof f.user !== 'string') return;
    if (f.event === 'join') room.roster.add(f.user);
    else if (f.event === 'leave') {
      room.roster.delete(f.user);
      if (room.typists.has(f.user)) { clearTimeout(room.typists.get(f.user)); room.typists.delete(f.user); }
    }
    if (Number.isFinite(f.online)) room.online = f.online;
    if (f.user !== state.me) {
      // Presence is not conversation: one line per room, updated in place,
      // that goes away by itself.
      room.presenceFirst = f.event === 'join' ? f.user : '';
      room.presenceUntil = Date.now() + PRESENCE_LINE_MS;
      clearTimeout(room.presenceTimer);
      room.presenceTimer = setTimeout(() => { if (state.active === room.name) renderPresence(); }, PRESENCE_LINE_MS + 50);
    }
    if (state.active === room.name) { renderRoster(); renderRoomHeader(); renderTyping(); renderPresence(); }
  }

  function onError(f) {
    const code = String(f.code || 'error');
    const message = typeof f.message === 'string' ? f.message : '';
    if (f.cid && state.ops.has(f.cid)) {
      const op = state.ops.get(f.cid);
      state.ops.delete(f.cid);
      const room = state.rooms.get(op.room);
      if (room) opFailed(room, op, code, message);
      return;
    }
    if (f.cid && state.cids.has(f.cid)) {
      const room = state.rooms.get(state.cids.get(f.cid));
      const p = room && room.pending.get(f.cid);
      if (p) {
        p.error = { code, message };
        setPendingState(room, p, 'failed');
        return;
      }
    }
    const room = f.room ? state.rooms.get(f.room) : null;
    switch (code) {
      case 'invalid_room':
      case 'too_many_rooms':
      case 'forbidden': {
        const target = room || joiningRoom();
        const shown = target ? target.name : (f.room || '');
        if (target && !target.everSynced) dropRoom(target.name);
        if (code === 'invalid_room') {
          showJoinError('“#' + shown + '” isn’t a valid room name. Use up to 64 lowercase letters, digits, “-” or “_”, starting with a letter or digit.');
        } else if (code === 'too_many_rooms') {
          showJoinError('You’re in too many rooms. Leave one before joining another.');
        } else {
          showJoinError('You’re not allowed in #' + shown + '.');
        }
        return;
      }
      case 'not_joined':
        if (room && room.synced) sendJoin(room);
        return;
      case 'unavailable':
        if (room && room.expect[0] === 'join') {
          // The join (or its history) failed: try again shortly, keeping
          // whatever live messages arrive meanwhile in the buffer.
          room.expect.shift();
          clearTimeout(room.retryTimer);
          room.retryTimer = setTimeout(() => {
            if (state.rooms.get(room.name) === room && !room.synced && state.welcomed) sendJoin(room);
          }, 1500 + Math.random() * 2500);
          toast('#' + room.name + ': ' + (message || 'temporarily unavailable') + ' — retrying…', 'info', 'unavailable:' + room.name);
          return;
        }
        if (room && room.expect[0] === 'older') {
          room.expect.shift();
          room.olderBefore = 0;
          room.renderTop();
        }
        toast(message || 'The service is temporarily unavailable.', null, 'unavailable');
        return;
      case 'rate_limited':
        toast('Slow down a little — you’re sending too fast.', null, 'rate_limited');
        return;
      default:
        toast(message ? message : 'Something went wrong (' + code + ').', null, 'error:' + code);
    }
  }

  function joiningRoom() {
    let last = null;
    for (const r of state.rooms.values()) if (!r.everSynced) last = r;
    return last;
  }

  // ---------- rendering messages ----------

  /**
   * normalise copies a message from the wire into the shape the view keeps
   * (and folds changes into): known fields only, with their types checked.
   */
  function normalise(m) {
    const str = (v) => (typeof v === 'string' ? v : '');
    const out = {
      id: m.id,
      prev: Number.isFinite(m.prev) ? m.prev : 0,
      room: str(m.room),
      user: str(m.user),
      body: str(m.body),
      kind: m.kind === 'system' ? 'system' : 'message',
      ts: Number.isFinite(m.ts) ? m.ts : Date.now(),
      cid: str(m.cid),
      reply_to: Number.isFinite(m.reply_to) && m.reply_to > 0 ? m.reply_to : 0,
      mentions: Array.isArray(m.mentions) ? m.mentions.filter((u) => typeof u === 'string') : null,
      edited: Number.isFinite(m.edited) && m.edited > 0 ? m.edited : 0,
      deleted: m.deleted === true,
      reactions: [],
      reply: null,
    };
    if (Array.isArray(m.reactions)) {
      for (const r of m.reactions) {
        if (!r || typeof r.emoji !== 'string' || !r.emoji) continue;
        const users = Array.isArray(r.users) ? r.users.filter((u) => typeof u === 'string') : [];
        const count = Number.isFinite(r.count) ? Math.max(r.count, users.length) : users.length;
        if (count > 0) out.reactions.push({ emoji: r.emoji, count, users });
      }
    }
    if (m.reply && typeof m.reply === 'object' && Number.isFinite(m.reply.id)) {
      out.reply = { id: m.reply.id, user: str(m.reply.user), body: str(m.reply.body), deleted: m.reply.deleted === true };
    }
    if (out.deleted) { out.body = ''; out.reactions = []; out.reply = null; }
    return out;
  }

  /**
   * insertMessage renders m in id order; returns true when it was not shown
   * before. upto is the newest event id its folded state accounts for: a
   * change event at or below it is not applied again.
   */
  function insertMessage(room, raw, provisional, upto) {
    const m = normalise(raw);
    const existing = room.msgs.get(m.id);
    if (existing) {
      if (existing.provisional && !provisional) {
        if (existing.editing) {
          // Being edited: the shown copy is the same message; keep the editor.
          Object.assign(existing, { m, provisional: false, upto: Math.max(existing.upto, upto || 0) });
          return false;
        }
        const li = renderMessage(room, m);
        swapLi(existing.li, li);
        room.msgs.set(m.id, { m, li, provisional: false, upto: Math.max(existing.upto, upto || 0) });
        afterInsert(room, li);
      }
      return false;
    }
    if (!provisional && m.cid && m.user === state.me && room.pending.has(m.cid)) {
      removePending(room, room.pending.get(m.cid)); // the echo beat the ack
    }
    const li = renderMessage(room, m);
    const before = findSuccessor(room, m.id);
    if (before) {
      const prevSib = before.previousElementSibling;
      room.list.insertBefore(li, prevSib && prevSib.classList.contains('day-divider') ? prevSib : before);
    } else {
      room.list.append(li);
    }
    room.msgs.set(m.id, { m, li, provisional: !!provisional, upto: upto || m.id });
    afterInsert(room, li);
    if (room.msgs.size > 1) refreshQuotes(room, m.id); // replies shown before the message they answer
    return true;
  }

  function afterInsert(room, li) {
    regroup(li);
    const next = nextMsg(li);
    regroup(next);
    collapseAround(li);
  }

  /** swapLi replaces a message's element, keeping the action toolbar on it. */
  function swapLi(old, li) {
    if (ui.toolbar && ui.toolbar.parentNode === old) detachToolbar();
    if (old.classList.contains('highlight')) li.classList.add('highlight');
    old.replaceWith(li);
  }

  function findSuccessor(room, id) {
    const lastLi = room.list.lastElementChild;
    if (!lastLi || Number(lastLi.dataset.id) < id) return null; // append: the common case
    const first = room.list.querySelector('li.msg');
    if (first && Number(first.dataset.id) > id) return first;
    for (let li = lastLi; li; li = li.previousElementSibling) {
      if (!li.classList.contains('msg')) continue;
      if (Number(li.dataset.id) < id) return nextMsg(li);
    }
    return first;
  }

  function prevMsg(li) {
    let p = li.previousElementSibling;
    while (p && !p.classList.contains('msg')) p = p.previousElementSibling;
    return p;
  }

  function nextMsg(li) {
    let n = li && li.nextElementSibling;
    while (n && !n.classList.contains('msg')) n = n.nextElementSibling;
    return n;
  }

  /** regroup sets the day divider and "continued" look of li from its predecessor. */
  function regroup(li) {
    if (!li) return;
    const prev = prevMsg(li);
    const ts = Number(li.dataset.ts);
    const needDivider = !prev || dayKey(Number(prev.dataset.ts)) !== dayKey(ts);
    const sib = li.previousElementSibling;
    const hasDivider = sib && sib.classList.contains('day-divider');
    if (needDivider) {
      const label = dayLabel(ts);
      if (hasDivider) {
        sib.textContent = label;
        sib.setAttribute('aria-label', label);
      } else {
        const d = el('li', 'day-divider', label);
        d.setAttribute('role', 'separator');
        d.setAttribute('aria-label', label);
        li.before(d);
      }
    } else if (hasDivider) {
      sib.remove();
    }
    const continued = !!prev && !needDivider &&
      li.dataset.kind === 'message' && prev.dataset.kind === 'message' &&
      prev.dataset.user === li.dataset.user && ts - Number(prev.dataset.ts) < GROUP_WINDOW_MS;
    li.classList.toggle('continued', continued);
  }

  /** mentionsMe reports whether m mentions the signed-in user. */
  function mentionsMe(m) {
    if (!state.me || m.user === state.me || m.deleted) return false;
    return (m.mentions || mentionsOf(m.body)).includes(state.me);
  }

  /**
   * markMentions wraps each @name of mentioned in the rendered body p in a
   * span (text nodes only; not inside code or links).
   */
  function markMentions(p, mentioned) {
    if (!mentioned.length || p.textContent.indexOf('@') < 0) return;
    const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
    const nodes = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (n.nodeValue.indexOf('@') >= 0 && !n.parentNode.closest('code, pre, a')) nodes.push(n);
    }
    for (const n of nodes) {
      const s = n.nodeValue;
      const parts = [];
      let last = 0;
      for (const m of s.matchAll(MENTION_RE)) {
        const name = trimName(m[2]);
        if (!mentioned.includes(name)) continue;
        const at = m.index + m[1].length;
        if (at > last) parts.push(s.slice(last, at));
        parts.push(el('span', 'mention-token' + (name === state.me ? ' mention-self' : ''), '@' + name));
        last = at + 1 + name.length;
      }
      if (!parts.length) continue;
      if (last < s.length) parts.push(s.slice(last));
      n.replaceWith(...parts);
    }
  }

  /** quoteOf is the preview of the message m answers: from the view if shown, else m.reply. */
  function quoteOf(room, m) {
    const t = room.msgs.get(m.reply_to);
    if (t) return { id: t.m.id, user: t.m.user, body: t.m.body, deleted: t.m.deleted };
    return m.reply;
  }

  function quoteEl(room, m) {
    const q = quoteOf(room, m);
    const b = el('button', 'msg-quote');
    b.type = 'button';
    b.dataset.target = String(m.reply_to);
    b.title = 'Show the message this answers';
    b.append(el('span', 'quote-user', q ? q.user : 'Reply'));
    let text = 'to an earlier message';
    if (q && q.deleted) text = 'message deleted';
    else if (q) text = plainText(q.body).slice(0, 140) || '…';
    b.append(el('span', 'quote-body' + (q && q.deleted ? ' deleted' : ''), text));
    return b;
  }

  /** refreshQuotes redraws the quotes of the shown replies to id. */
  function refreshQuotes(room, id) {
    for (const q of room.list.querySelectorAll('.msg-quote[data-target="' + id + '"]')) {
      const li = q.closest('li.msg');
      const e = li && room.msgs.get(Number(li.dataset.id));
      if (e) q.replaceWith(quoteEl(room, e.m));
    }
  }

  function whoReacted(r) {
    const users = r.users.map((u) => (u === state.me ? 'you' : u));
    return names(users, r.count) + ' reacted with ' + r.emoji;
  }

  function reactionsEl(m) {
    if (!m.reactions.length) return null;
    const row = el('div', 'reactions');
    for (const r of m.reactions) {
      const mine = r.users.includes(state.me);
      const b = el('button', 'reaction' + (mine ? ' mine' : ''));
      b.type = 'button';
      b.dataset.emoji = r.emoji;
      b.setAttribute('aria-pressed', String(mine));
      b.title = whoReacted(r);
      b.setAttribute('aria-label', b.title + (mine ? ' (click to take yours back)' : ' (click to add yours)'));
      b.append(el('span', 'reaction-emoji', r.emoji), el('span', 'reaction-count', String(r.count)));
      row.append(b);
    }
    const add = el('button', 'reaction reaction-add', '+');
    add.type = 'button';
    add.dataset.act = 'react';
    add.title = 'Add a reaction';
    add.setAttribute('aria-label', 'Add a reaction');
    row.append(add);
    return row;
  }

  /** renderReactions redraws the reaction chips of a shown message. */
  function renderReactions(entry) {
    const main = entry.li.querySelector('.msg-main');
    if (!main) return;
    const old = main.querySelector(':scope > .reactions');
    const row = reactionsEl(entry.m);
    if (old && row) old.replaceWith(row);
    else if (old) old.remove();
    else if (row) {
      const note = main.querySelector(':scope > .msg-note');
      if (note) note.before(row); else main.append(row);
    }
  }

  /** parseSystem reads "X joined" / "X left" (presence's announcements). */
  function parseSystem(text) {
    const m = /^(.+) (joined|left)$/.exec(text);
    return m ? { user: m[1], verb: m[2] } : { user: '', verb: '' };
  }

  function renderMessage(room, m) {
    const user = m.user;
    const body = m.body;
    const ts = m.ts;
    const li = el('li', 'msg');
    li.dataset.id = String(m.id);
    li.dataset.user = user;
    li.dataset.ts = String(ts);
    li.dataset.kind = m.kind;
    if (m.kind === 'system') {
      li.classList.add('system');
      const text = body || (user + ' joined');
      const sys = parseSystem(text);
      if (sys.verb === 'left') li.classList.add('leave');
      li.dataset.sysUser = sys.user;
      li.dataset.sysVerb = sys.verb;
      const summary = el('button', 'sys-summary');
      summary.type = 'button';
      summary.hidden = true;
      li.append(el('span', 'msg-body', text), summary, timeEl(ts, 'msg-time'));
      return li;
    }
    if (user === state.me) li.classList.add('mine');
    else if (mentionsMe(m)) li.classList.add('mention');
    if (m.reply_to) li.dataset.replyTo = String(m.reply_to);
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-user', user), timeEl(ts, 'msg-time'));
    const main = el('div', 'msg-main');
    if (m.deleted) {
      li.classList.add('deleted');
      main.append(el('div', 'msg-text', null));
      main.firstChild.append(el('span', 'msg-body tombstone', 'message deleted'));
    } else {
      if (m.reply_to) main.append(quoteEl(room, m));
      const text = el('div', 'msg-text');
      const p = el('div', 'msg-body');
      renderBody(p, body);
      markMentions(p, m.mentions || mentionsOf(body));
      text.append(p);
      if (m.edited) {
        const e = el('span', 'msg-edited', '(edited)');
        e.title = 'Edited ' + fullFmt.format(new Date(m.edited));
        text.append(e);
      }
      main.append(text);
      const rx = reactionsEl(m);
      if (rx) main.append(rx);
    }
    li.append(avatar(user), head, timeEl(ts, 'msg-side-time', true), main);
    return li;
  }

  // ---------- change events (edit, delete, reaction) ----------

  /**
   * fold changes t by ev and reports whether it did: the rule of
   * roomlog.Apply, so the view shows what a page would. Only the author
   * edits or deletes a chat message; a tombstone takes no change; a
   * reaction toggles its user in the emoji's entry.
   */
  function fold(t, ev) {
    if (ev.target !== t.id || t.deleted) return false;
    switch (ev.kind) {
      case 'edit':
        if (t.kind !== 'message' || ev.user !== t.user) return false;
        if (t.edited && Number(ev.ts) < t.edited) return false; // an older edit, replayed
        t.body = typeof ev.body === 'string' ? ev.body : '';
        t.edited = Number.isFinite(ev.ts) ? ev.ts : Date.now();
        t.mentions = Array.isArray(ev.mentions) ? ev.mentions.filter((u) => typeof u === 'string') : null;
        return true;
      case 'delete':
        if (t.kind !== 'message' || ev.user !== t.user) return false;
        t.deleted = true;
        t.body = '';
        t.mentions = [];
        t.reactions = [];
        t.reply = null;
        return true;
      case 'reaction': {
        if (typeof ev.on !== 'boolean' || typeof ev.emoji !== 'string' || !ev.emoji || typeof ev.user !== 'string') return false;
        const rs = t.reactions;
        const i = rs.findIndex((r) => r.emoji === ev.emoji);
        if (i < 0) {
          if (!ev.on || rs.length >= MAX_REACTION_KINDS) return false;
          rs.push({ emoji: ev.emoji, count: 1, users: [ev.user] });
          return true;
        }
        const r = rs[i];
        const j = r.users.indexOf(ev.user);
        if (ev.on && j < 0) r.users.push(ev.user);
        else if (!ev.on && j >= 0) r.users.splice(j, 1);
        else return false;
        r.count = r.users.length;
        if (r.count === 0) rs.splice(i, 1);
        return true;
      }
      default:
        return false;
    }
  }

  /** applyChange folds a change event into the shown message it targets. */
  function applyChange(room, ev) {
    const target = Number(ev.target);
    const entry = room.msgs.get(target);
    if (!entry || ev.id <= entry.upto) return false; // not shown, or already folded in
    if (!fold(entry.m, { ...ev, target })) return false;
    if (ev.kind === 'reaction') {
      renderReactions(entry);
      return true;
    }
    if (ev.user === state.me) closeEditor(room, entry, true);
    const li = renderMessage(room, entry.m);
    swapLi(entry.li, li);
    entry.li = li;
    afterInsert(room, li);
    refreshQuotes(room, target);
    touchLobby(room.name, entry.m, false);
    return true;
  }

  /** sendOp sends an edit, delete or react frame with a fresh cid. */
  function sendOp(room, frame, id) {
    const cid = randomCid();
    if (!room.synced || !send({ ...frame, room: room.name, id, cid })) {
      showNote(room, id, 'You’re offline: try again once the connection is back.');
      return false;
    }
    state.ops.set(cid, { room: room.name, id, type: frame.type, at: Date.now() });
    setTimeout(() => state.ops.delete(cid), OP_FORGET_MS);
    return true;
  }

  function opFailed(room, op, code, message) {
    const entry = room.msgs.get(op.id);
    if (entry) entry.li.classList.remove('saving');
    const what = op.type === 'edit' ? 'edit' : op.type === 'delete' ? 'delete' : 'react to';
    let text;
    switch (code) {
      case 'forbidden': text = 'You can’t ' + what + ' this message.'; break;
      case 'not_found': text = 'That message no longer exists.'; break;
      case 'invalid_emoji': text = 'That reaction can’t be added (not an emoji, or too many different ones).'; break;
      case 'rate_limited': text = 'Slow down a little — you’re sending too fast.'; break;
      default: text = 'Couldn’t ' + what + ' the message: ' + (message || code) + '.';
    }
    showNote(room, op.id, text, code);
  }

  /** showNote shows an error at a message (a toast when it is not shown). */
  function showNote(room, id, text, code) {
    const entry = room.msgs.get(id);
    const main = entry && entry.li.querySelector('.msg-main');
    if (!main) { toast(text); return; }
    main.querySelectorAll(':scope > .msg-note').forEach((n) => n.remove());
    const note = el('div', 'msg-note');
    note.setAttribute('role', 'alert');
    if (code) note.dataset.code = code;
    note.append(el('span', null, text));
    const x = actionButton('×', () => note.remove());
    x.className = 'note-close';
    x.title = 'Dismiss';
    x.setAttribute('aria-label', 'Dismiss');
    note.append(x);
    main.append(note);
    setTimeout(() => note.remove(), NOTE_MS);
  }

  function toggleReaction(room, id, emoji) {
    const entry = room.msgs.get(id);
    if (!entry || entry.m.deleted) return;
    const r = entry.m.reactions.find((x) => x.emoji === emoji);
    const on = !(r && r.users.includes(state.me));
    sendOp(room, { type: 'react', emoji, on }, id);
  }

  // ---------- message actions: toolbar, picker, editor ----------

  function buildToolbar() {
    const bar = el('div', 'msg-actions');
    bar.setAttribute('role', 'toolbar');
    bar.setAttribute('aria-label', 'Message actions');
    const mk = (act, icon, label) => {
      const b = el('button', 'act act-' + act);
      b.type = 'button';
      b.dataset.act = act;
      b.title = label;
      b.setAttribute('aria-label', label);
      b.append(el('span', null, icon));
      b.firstChild.setAttribute('aria-hidden', 'true');
      return b;
    };
    bar.append(mk('react', '☺', 'Add a reaction'), mk('reply', '↩', 'Reply'), mk('edit', '✎', 'Edit'), mk('delete', '🗑', 'Delete'));
    bar.addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-act]');
      const li = bar.parentNode;
      if (!b || !li) return;
      ev.stopPropagation();
      messageAction(li, b.dataset.act, b);
    });
    ui.toolbar = bar;
    return bar;
  }

  /** attachToolbar puts the one action toolbar on li (own messages get edit and delete). */
  function attachToolbar(li) {
    if (!li || !li.classList.contains('msg') || li.classList.contains('system') || li.classList.contains('deleted') || !li.dataset.id) return;
    const bar = ui.toolbar || buildToolbar();
    if (bar.parentNode === li) return;
    const mine = li.dataset.user === state.me;
    bar.querySelector('.act-edit').hidden = !mine;
    bar.querySelector('.act-delete').hidden = !mine;
    li.append(bar);
  }

  function detachToolbar() {
    if (ui.toolbar && ui.toolbar.parentNode) {
      ui.toolbar.parentNode.classList.remove('show-actions');
      ui.toolbar.remove();
    }
  }

  function roomOf(li) {
    const tl = li.closest('.timeline');
    return tl ? state.rooms.get(tl.dataset.room) : null;
  }

  function messageAction(li, act, anchor) {
    const room = roomOf(li);
    const id = Number(li.dataset.id);
    const entry = room && room.msgs.get(id);
    if (!entry) return;
    switch (act) {
      case 'reply': startReply(room, entry); break;
      case 'react': openPicker(room, entry, anchor); break;
      case 'edit': openEditor(room, entry); break;
      case 'delete': confirmDelete(room, entry); break;
      default: break;
    }
  }

  /** wireTimeline handles the clicks and hovers of a room's messages (delegated). */
  function wireTimeline(room) {
    const list = room.list;
    list.addEventListener('mouseover', (ev) => {
      const li = ev.target.closest('li.msg');
      if (li && !ev.target.closest('.msg-editor')) attachToolbar(li);
    });
    list.addEventListener('focusin', (ev) => {
      const li = ev.target.closest('li.msg');
      if (li && !ev.target.closest('.msg-editor')) attachToolbar(li);
    });
    // A long press on a phone shows the actions: contextmenu where the
    // browser fires it for a long press, a timer where it does not.
    let press = 0;
    list.addEventListener('touchstart', (ev) => {
      clearTimeout(press);
      const li = ev.target.closest('li.msg');
      if (!li || ev.target.closest('a, button, textarea') || ev.touches.length > 1) return;
      press = setTimeout(() => showActions(li), 550);
    }, { passive: true });
    for (const type of ['touchend', 'touchmove', 'touchcancel']) list.addEventListener(type, () => clearTimeout(press), { passive: true });
    list.addEventListener('contextmenu', (ev) => {
      const li = ev.target.closest('li.msg');
      if (!li || ev.target.closest('a, textarea') || li.classList.contains('system') || li.classList.contains('deleted')) return;
      ev.preventDefault();
      showActions(li);
    });
    list.addEventListener('click', (ev) => {
      const quote = ev.target.closest('.msg-quote');
      if (quote) { seekMessage(room, Number(quote.dataset.target)); return; }
      const chip = ev.target.closest('.reaction');
      if (chip) {
        const li = chip.closest('li.msg');
        if (chip.dataset.act === 'react') openPicker(room, room.msgs.get(Number(li.dataset.id)), chip);
        else toggleReaction(room, Number(li.dataset.id), chip.dataset.emoji);
        return;
      }
      const sum = ev.target.closest('.sys-summary');
      if (sum) { toggleRun(sum.closest('li.msg')); return; }
      // A tap on a touch screen shows (or hides) the actions.
      if (window.matchMedia('(hover: none)').matches && !ev.target.closest('a, button, textarea, input')) {
        const li = ev.target.closest('li.msg');
        if (li && li.classList.contains('show-actions')) detachToolbar();
        else if (li) showActions(li);
      }
    });
  }

  function showActions(li) {
    detachToolbar();
    attachToolbar(li);
    if (ui.toolbar && ui.toolbar.parentNode === li) li.classList.add('show-actions');
  }

  function closePicker() {
    if (ui.picker && ui.picker.parentNode) {
      const li = ui.picker.closest('li.msg');
      if (li) li.classList.remove('picking');
      ui.picker.remove();
    }
  }

  function openPicker(room, entry, anchor) {
    if (!entry || entry.m.deleted) return;
    if (!ui.picker) {
      const p = el('div', 'emoji-picker');
      p.setAttribute('role', 'menu');
      p.setAttribute('aria-label', 'Pick a reaction');
      for (const e of EMOJI) {
        const b = el('button', 'emoji', e);
        b.type = 'button';
        b.dataset.emoji = e;
        b.setAttribute('role', 'menuitem');
        p.append(b);
      }
      p.addEventListener('click', (ev) => {
        const b = ev.target.closest('button[data-emoji]');
        const li = p.closest('li.msg');
        if (!b || !li) return;
        ev.stopPropagation();
        const r = roomOf(li);
        if (r) toggleReaction(r, Number(li.dataset.id), b.dataset.emoji);
        closePicker();
        detachToolbar();
      });
      p.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.stopPropagation(); closePicker(); } });
      ui.picker = p;
    }
    const p = ui.picker;
    for (const b of p.children) {
      const r = entry.m.reactions.find((x) => x.emoji === b.dataset.emoji);
      b.classList.toggle('mine', !!(r && r.users.includes(state.me)));
    }
    closePicker();
    entry.li.classList.add('picking');
    const below = anchor && anchor.classList.contains('reaction-add');
    p.classList.toggle('below', !!below);
    entry.li.append(p);
    p.firstChild.focus({ preventScroll: true });
  }

  function openEditor(room, entry) {
    if (!entry || entry.m.user !== state.me || entry.m.deleted || entry.m.kind !== 'message') return;
    closePicker();
    detachToolbar();
    if (entry.editing) { entry.editing.querySelector('textarea').focus(); return; }
    const text = entry.li.querySelector('.msg-text');
    if (!text) return;
    const box = el('div', 'msg-editor');
    const ta = el('textarea', 'edit-input');
    ta.value = entry.m.body;
    ta.rows = 1;
    ta.maxLength = 4000;
    ta.setAttribute('aria-label', 'Edit your message');
    const hint = el('div', 'edit-hint');
    const save = () => {
      const body = ta.value.trim();
      if (!body) { showNote(room, entry.m.id, 'A message can’t be empty: delete it instead.'); return; }
      if (chars(body) > MAX_BODY) { showNote(room, entry.m.id, 'That is ' + chars(body) + ' characters; the limit is ' + MAX_BODY + '.'); return; }
      if (body === entry.m.body) { closeEditor(room, entry); return; }
      if (sendOp(room, { type: 'edit', body }, entry.m.id)) {
        closeEditor(room, entry);
        entry.li.classList.add('saving');
      }
    };
    hint.append(document.createTextNode('Enter to save · Esc to cancel'),
      actionButton('Save', save), actionButton('Cancel', () => closeEditor(room, entry)));
    box.append(ta, hint);
    ta.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); save(); }
      else if (ev.key === 'Escape') { ev.preventDefault(); ev.stopPropagation(); closeEditor(room, entry); }
    });
    const grow = () => { ta.style.height = 'auto'; ta.style.height = Math.min(ta.scrollHeight, 240) + 'px'; };
    ta.addEventListener('input', grow);
    text.hidden = true;
    text.after(box);
    entry.editing = box;
    entry.li.classList.add('editing');
    grow();
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
  }

  function closeEditor(room, entry, quiet) {
    if (!entry.editing) return;
    entry.editing.remove();
    entry.editing = null;
    entry.li.classList.remove('editing');
    const text = entry.li.querySelector('.msg-text');
    if (text) text.hidden = false;
    if (!quiet && state.active === room.name) ui.input.focus({ preventScroll: true });
  }

  function confirmDelete(room, entry) {
    if (!entry || entry.m.user !== state.me || entry.m.deleted) return;
    closePicker();
    detachToolbar();
    const main = entry.li.querySelector('.msg-main');
    if (!main || main.querySelector(':scope > .msg-confirm')) return;
    const box = el('div', 'msg-confirm');
    box.setAttribute('role', 'alertdialog');
    box.setAttribute('aria-label', 'Delete this message?');
    const yes = actionButton('Delete', () => {
      box.remove();
      if (sendOp(room, { type: 'delete' }, entry.m.id)) entry.li.classList.add('saving');
    });
    yes.className = 'danger';
    const no = actionButton('Cancel', () => box.remove());
    box.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.stopPropagation(); box.remove(); } });
    box.append(el('span', null, 'Delete this message for everyone?'), yes, no);
    main.append(box);
    no.focus({ preventScroll: true });
  }

  // ---------- replies ----------

  function startReply(room, entry) {
    if (!entry || entry.m.deleted) return;
    room.replyTo = { id: entry.m.id, user: entry.m.user, body: entry.m.body };
    detachToolbar();
    renderReplyBar();
    ui.input.focus();
  }

  function cancelReply() {
    const room = activeRoom();
    if (room) room.replyTo = null;
    renderReplyBar();
  }

  function renderReplyBar() {
    const room = activeRoom();
    const r = room && room.replyTo;
    ui.replyBar.hidden = !r;
    ui.composer.classList.toggle('replying', !!r);
    if (!r) return;
    ui.replyUser.textContent = r.user;
    ui.replyPreview.textContent = plainText(r.body).slice(0, 140);
  }

  /** seekMessage scrolls to message id and highlights it, paging back until it is found. */
  function seekMessage(room, id) {
    if (!id) return;
    const e = room.msgs.get(id);
    if (e) { room.seek = 0; highlight(e.li); return; }
    const oldest = room.oldestId();
    if (!room.hasMore || (oldest && id > oldest)) {
      toast('That message is no longer available.', 'info');
      return;
    }
    room.seek = id;
    if (!room.olderBefore) requestOlder(room);
  }

  function continueSeek(room) {
    const e = room.msgs.get(room.seek);
    if (e) { room.seek = 0; highlight(e.li); return; }
    if (room.hasMore) { requestOlder(room); return; }
    room.seek = 0;
    toast('That message is no longer available.', 'info');
  }

  function highlight(li) {
    li.scrollIntoView({ block: 'center', behavior: 'smooth' });
    li.classList.remove('highlight');
    void li.offsetWidth; // restart the animation
    li.classList.add('highlight');
    setTimeout(() => li.classList.remove('highlight'), HIGHLIGHT_MS);
  }

  // ---------- system messages: consecutive ones collapse ----------

  /** systemRun is the run of consecutive system messages li is in. */
  function systemRun(li) {
    const run = [li];
    for (let p = li.previousElementSibling; p && p.classList.contains('system'); p = p.previousElementSibling) run.unshift(p);
    for (let n = li.nextElementSibling; n && n.classList.contains('system'); n = n.nextElementSibling) run.push(n);
    return run;
  }

  function collapseAround(li) {
    for (const x of [li.previousElementSibling, li, li.nextElementSibling]) {
      if (x && x.classList.contains('system')) collapseRun(systemRun(x));
    }
  }

  function collapseRun(run) {
    const lastLi = run[run.length - 1];
    const expanded = run.some((x) => x.dataset.expanded === 'true');
    for (const x of run) {
      x.classList.remove('run-hidden', 'run-end');
      x.querySelector('.sys-summary').hidden = true;
    }
    if (run.length < 2) return;
    const joined = [];
    const left = [];
    const other = [];
    for (const x of run) {
      const u = x.dataset.sysUser;
      if (x.dataset.sysVerb === 'joined') { if (!joined.includes(u)) joined.push(u); }
      else if (x.dataset.sysVerb === 'left') { if (!left.includes(u)) left.push(u); }
      else other.push(x.querySelector('.msg-body').textContent);
    }
    const parts = [];
    if (joined.length) parts.push(names(joined) + ' joined');
    if (left.length) parts.push(names(left) + ' left');
    if (other.length) parts.push(other.length === 1 ? other[0] : other.length + ' more updates');
    const sum = lastLi.querySelector('.sys-summary');
    sum.textContent = parts.join(' · ');
    sum.title = expanded ? 'Show less' : 'Show each';
    sum.setAttribute('aria-expanded', String(expanded));
    sum.hidden = false;
    lastLi.classList.add('run-end');
    if (!expanded) for (const x of run) if (x !== lastLi) x.classList.add('run-hidden');
  }

  function toggleRun(li) {
    const run = systemRun(li);
    const open = !run.some((x) => x.dataset.expanded === 'true');
    for (const x of run) x.dataset.expanded = String(open);
    collapseRun(run);
  }

  // ---------- read state ----------

  function onUnread(f) {
    const room = state.rooms.get(f.room);
    if (!room) return;
    const read = Number.isFinite(f.read) ? f.read : 0;
    const count = Number.isFinite(f.count) ? Math.max(0, f.count) : 0;
    const mentions = Number.isFinite(f.mentions) ? Math.max(0, f.mentions) : 0;
    if (!room.readKnown) {
      room.readKnown = true;
      clearTimeout(room.readWait);
      if (room.dividerArmed && state.active === room.name) {
        room.dividerArmed = false;
        room.dividerRead = count > 0 ? read : null;
        renderDivider(room);
      }
    }
    room.read = Math.max(room.read, read);
    room.item.dataset.read = String(read); // the server's read mark, as last pushed
    room.unread = count;
    room.mentions = mentions;
    room.unreadAt = Date.now();
    room.updateBadge();
    scheduleRead(room);
  }

  /** scheduleRead sends a read marker soon if the newest message of the active room is in view. */
  function scheduleRead(room) {
    // At most one marker per READ_DEBOUNCE_MS, however busy the room: a
    // pending timer is not pushed back by later events.
    if (room.readTimer) return;
    room.readTimer = setTimeout(() => { room.readTimer = 0; sendRead(room); }, READ_DEBOUNCE_MS);
  }

  function sendRead(room) {
    if (state.rooms.get(room.name) !== room || !room.synced || !room.readKnown) return;
    if (state.active !== room.name || document.hidden || room.timeline.hidden) return;
    const id = room.newestId();
    if (!id || (id <= room.read && room.unread === 0) || id === room.sentRead) return;
    // The newest message must be in view (at least its top line).
    const li = room.msgs.get(id).li;
    const r = li.getBoundingClientRect();
    const t = room.timeline.getBoundingClientRect();
    if (r.top + Math.min(r.height, 20) > t.bottom || r.bottom < t.top) return;
    if (send({ type: 'read', room: room.name, id })) {
      room.sentRead = id;
      room.read = Math.max(room.read, id);
      room.unread = 0;
      room.mentions = 0;
      room.unreadAt = Date.now();
      room.updateBadge();
    }
  }

  /** renderDivider puts "New messages" before the first message after dividerRead by someone else. */
  function renderDivider(room) {
    room.list.querySelectorAll('.unread-divider').forEach((d) => d.remove());
    if (room.dividerRead === null) return;
    for (const li of room.list.children) {
      if (!li.classList.contains('msg') || li.dataset.kind !== 'message' || li.dataset.user === state.me) continue;
      if (Number(li.dataset.id) <= room.dividerRead) continue;
      const d = el('li', 'unread-divider');
      d.setAttribute('role', 'separator');
      d.setAttribute('aria-label', 'New messages');
      d.append(el('span', null, 'New messages'));
      const sib = li.previousElementSibling;
      (sib && sib.classList.contains('day-divider') ? sib : li).before(d);
      return;
    }
  }

  // ---------- presence line, notifications ----------

  function renderPresence() {
    const room = activeRoom();
    if (!room || Date.now() >= room.presenceUntil) { ui.presenceLine.hidden = true; return; }
    const others = Array.from(room.roster).filter((u) => u !== state.me).sort((a, b) => a.localeCompare(b));
    if (room.presenceFirst && others.includes(room.presenceFirst)) {
      others.splice(others.indexOf(room.presenceFirst), 1);
      others.unshift(room.presenceFirst);
    }
    const total = Math.max(others.length, (room.online || 0) - (room.roster.has(state.me) ? 1 : 0));
    let text;
    if (total === 0) text = 'Only you are here';
    else text = names(others, total) + (total === 1 ? ' is here' : ' are here');
    ui.presenceLine.textContent = text;
    ui.presenceLine.hidden = false;
  }

  function notifySupported() {
    return 'Notification' in window;
  }

  function renderNotify() {
    if (!notifySupported()) { ui.notify.hidden = true; return; }
    ui.notify.hidden = false;
    const perm = Notification.permission;
    const on = state.notify && perm === 'granted';
    ui.notify.classList.toggle('on', on);
    ui.notify.setAttribute('aria-pressed', String(on));
    const label = perm === 'denied' ? 'Notifications are blocked in your browser settings'
      : on ? 'Notifying you of mentions while this tab is hidden (click to stop)' : 'Notify me of mentions while this tab is hidden';
    ui.notify.title = label;
    ui.notifyLabel.textContent = label;
  }

  /** onNotifyToggle runs from a click: the only place permission is asked. */
  function onNotifyToggle() {
    if (!notifySupported()) return;
    const perm = Notification.permission;
    if (perm === 'denied') { toast('Notifications are blocked for this site in your browser settings.', 'info'); renderNotify(); return; }
    if (perm === 'granted') {
      state.notify = !state.notify;
      storage.set(STORE_NOTIFY, state.notify ? 'on' : 'off');
      renderNotify();
      return;
    }
    Promise.resolve(Notification.requestPermission()).then((p) => {
      state.notify = p === 'granted';
      storage.set(STORE_NOTIFY, state.notify ? 'on' : 'off');
      renderNotify();
    }, () => renderNotify());
  }

  function notifyMention(room, m) {
    if (!state.notify || !notifySupported() || Notification.permission !== 'granted' || !document.hidden) return;
    try {
      const n = new Notification(m.user + ' mentioned you in #' + room.name, {
        body: plainText(m.body).slice(0, 200), tag: 'hubbub:' + room.name + ':' + m.id,
      });
      n.onclick = () => { window.focus(); setActive(room.name); n.close(); };
    } catch (_) {
      // some browsers only notify from a service worker
    }
  }

  // ---------- @ autocomplete ----------

  /** mentionCandidates: the room's roster, then who wrote in it; mentionable names only. */
  function mentionCandidates(room, prefix) {
    const seen = new Set();
    const out = [];
    const add = (u) => {
      if (!u || u === state.me || seen.has(u) || !mentionable(u)) return;
      seen.add(u);
      if (u.toLowerCase().startsWith(prefix)) out.push(u);
    };
    Array.from(room.roster).sort((a, b) => a.localeCompare(b)).forEach(add);
    const authors = Array.from(room.list.querySelectorAll('li.msg[data-kind="message"]'), (li) => li.dataset.user).reverse();
    authors.forEach(add);
    return out.slice(0, MENTION_MAX);
  }

  function updateMention() {
    const room = activeRoom();
    const v = ui.input.value;
    const pos = ui.input.selectionStart;
    const m = room && pos === ui.input.selectionEnd ? /(^|[^\p{L}\p{N}_])@([\p{L}\p{N}_.-]*)$/u.exec(v.slice(0, pos)) : null;
    if (!m) { closeMention(); return; }
    const items = mentionCandidates(room, m[2].toLowerCase());
    if (!items.length) { closeMention(); return; }
    const prevSel = state.mention && state.mention.items[state.mention.index];
    const index = Math.max(0, items.indexOf(prevSel));
    state.mention = { start: pos - m[2].length - 1, end: pos, items, index };
    renderMention();
  }

  function renderMention() {
    const mt = state.mention;
    ui.mentionPop.replaceChildren(...mt.items.map((u, i) => {
      const li = el('li', 'mention-item' + (i === mt.index ? ' selected' : ''));
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === mt.index));
      li.dataset.user = u;
      li.append(avatar(u, 'xs'), el('span', null, u));
      const room = activeRoom();
      if (room && room.roster.has(u)) li.append(el('span', 'mention-online', 'online'));
      return li;
    }));
    ui.mentionPop.hidden = false;
    ui.input.setAttribute('aria-expanded', 'true');
  }

  function closeMention() {
    state.mention = null;
    ui.mentionPop.hidden = true;
    ui.input.setAttribute('aria-expanded', 'false');
  }

  function pickMention(user) {
    const mt = state.mention;
    if (!mt) return;
    const v = ui.input.value;
    const insert = '@' + user + ' ';
    ui.input.value = v.slice(0, mt.start) + insert + v.slice(mt.end);
    const at = mt.start + insert.length;
    ui.input.setSelectionRange(at, at);
    closeMention();
    onComposerChange();
    ui.input.focus();
  }

  /** mentionKey handles the autocomplete's keys; true when it used the key. */
  function mentionKey(ev) {
    const mt = state.mention;
    if (!mt) return false;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      const d = ev.key === 'ArrowDown' ? 1 : -1;
      mt.index = (mt.index + d + mt.items.length) % mt.items.length;
      renderMention();
      return true;
    }
    if ((ev.key === 'Enter' && !ev.shiftKey) || ev.key === 'Tab') { pickMention(mt.items[mt.index]); return true; }
    if (ev.key === 'Escape') { closeMention(); return true; }
    return false;
  }

  // ---------- sending ----------

  function sendMessage() {
    const room = activeRoom();
    if (!room) return;
    const body = ui.input.value.trim();
    if (!body) return;
    if (chars(body) > MAX_BODY) {
      toast('That message is ' + chars(body) + ' characters; the limit is ' + MAX_BODY + '.');
      return;
    }
    const p = { cid: randomCid(), body, ts: Date.now(), state: 'sending', li: null, error: null, replyTo: room.replyTo ? room.replyTo.id : 0 };
    room.replyTo = null;
    renderReplyBar();
    closeMention();
    if (room.dividerRead !== null) { room.dividerRead = null; renderDivider(room); }
    room.pending.set(p.cid, p);
    state.cids.set(p.cid, room.name);
    p.li = renderPending(room, p);
    room.pendingList.append(p.li);
    transmit(room, p);
    ui.input.value = '';
    room.draft = '';
    onComposerChange();
    stopTyping();
    scrollToBottom(room);
  }

  function transmit(room, p) {
    const frame = { type: 'message', room: room.name, body: p.body, cid: p.cid };
    if (p.replyTo) frame.reply_to = p.replyTo;
    const sent = room.synced && send(frame);
    setPendingState(room, p, sent ? 'sending' : 'queued');
  }

  function renderPending(room, p) {
    const li = el('li', 'msg mine pending');
    li.dataset.kind = 'message';
    li.dataset.cid = p.cid;
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-user', state.me || state.name || ''), timeEl(p.ts, 'msg-time'));
    const main = el('div', 'msg-main');
    if (p.replyTo) main.append(quoteEl(room, { reply_to: p.replyTo, reply: null }));
    const text = el('div', 'msg-text');
    const body = el('div', 'msg-body');
    renderBody(body, p.body);
    text.append(body);
    main.append(text);
    li.append(avatar(state.me || state.name || '?'), head, main, el('div', 'msg-status'));
    return li;
  }

  function setPendingState(room, p, s) {
    p.state = s;
    if (!p.li) return;
    p.li.classList.toggle('failed', s === 'failed');
    p.li.classList.toggle('pending', s !== 'failed');
    const status = p.li.querySelector('.msg-status');
    status.replaceChildren();
    if (s === 'sending') {
      status.textContent = 'Sending…';
    } else if (s === 'queued') {
      status.textContent = 'Waiting for connection…';
    } else {
      const code = p.error ? p.error.code : '';
      const why = code === 'rate_limited' ? 'you are sending too fast'
        : code === 'invalid_body' ? (p.error.message || 'the message was refused')
          : (p.error && p.error.message) || code || 'unknown error';
      status.append(el('span', null, 'Not sent: ' + why + '.'));
      if (code !== 'invalid_body' && code !== 'forbidden') {
        status.append(actionButton('Retry', () => { p.error = null; transmit(room, p); }));
      }
      status.append(actionButton('Edit', () => {
        discardPending(room, p);
        ui.input.value = p.body;
        onComposerChange();
        ui.input.focus();
      }));
      status.append(actionButton('Discard', () => discardPending(room, p)));
    }
  }

  function actionButton(label, fn) {
    const b = el('button', null, label);
    b.type = 'button';
    b.addEventListener('click', fn);
    return b;
  }

  function removePending(room, p) {
    room.pending.delete(p.cid);
    if (p.li) p.li.remove();
  }

  function discardPending(room, p) {
    removePending(room, p);
    state.cids.delete(p.cid);
  }

  // ---------- typing ----------

  function onTypingInput() {
    const room = activeRoom();
    if (!room) return;
    if (ui.input.value.trim() === '') { stopTyping(); return; }
    const now = Date.now();
    const t = state.typing;
    if (t.room && t.room !== room.name) stopTyping();
    if (t.room !== room.name || now - t.sentAt >= TYPING_RENEW_MS) {
      if (send({ type: 'typing', room: room.name, state: 'on' })) {
        t.room = room.name;
        t.sentAt = now;
      }
    }
    clearTimeout(t.idle);
    t.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    const t = state.typing;
    clearTimeout(t.idle);
    if (t.room && state.rooms.has(t.room)) send({ type: 'typing', room: t.room, state: 'off' });
    t.room = null;
    t.sentAt = 0;
  }

  function stopTypingTimers() {
    clearTimeout(state.typing.idle);
    state.typing.room = null;
    state.typing.sentAt = 0;
  }

  function renderTyping() {
    const room = activeRoom();
    const names = room ? Array.from(room.typists.keys()) : [];
    let text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = 'several people are typing…';
    if (ui.typing.textContent !== text) ui.typing.textContent = text;
  }

  // ---------- rooms ----------

  function activeRoom() {
    return state.active ? state.rooms.get(state.active) || null : null;
  }

  function joinRoom(raw, activate) {
    const name = normaliseRoom(raw);
    if (!name) return;
    showJoinError('');
    let room = state.rooms.get(name);
    if (!room) {
      room = new Room(name);
      state.rooms.set(name, room);
      if (state.welcomed) sendJoin(room);
      renderRoomList();
    }
    if (activate !== false) setActive(name);
  }

  function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    if (state.typing.room === name) stopTyping();
    send({ type: 'leave', room: name });
    dropRoom(name);
  }

  function dropRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    room.destroy();
    state.rooms.delete(name);
    persistRooms();
    renderRoomList();
    if (state.active === name) {
      const next = state.rooms.keys().next();
      setActive(next.done ? null : next.value);
    }
    renderLobby();
    updateTitle();
  }

  function persistRooms() {
    const names = [];
    for (const r of state.rooms.values()) if (r.everSynced) names.push(r.name);
    storage.set(STORE_ROOMS, JSON.stringify(names));
  }

  function setActive(name) {
    const prev = activeRoom();
    if (prev && prev.name !== name) {
      prev.draft = ui.input.value;
      if (state.typing.room === prev.name) stopTyping();
    }
    state.active = name && state.rooms.has(name) ? name : null;
    const room = activeRoom();
    for (const r of state.rooms.values()) {
      r.timeline.hidden = r !== room;
      r.updateBadge();
      r.item.classList.toggle('active', r === room);
      if (r === room) r.link.setAttribute('aria-current', 'page');
      else r.link.removeAttribute('aria-current');
    }
    ui.emptyState.hidden = !!room;
    ui.roomView.hidden = !room;
    ui.jump.hidden = true;
    if (room) {
      storage.set(STORE_ACTIVE, room.name);
      history.replaceState(null, '', location.pathname + location.search + '#/' + room.name);
      if (prev !== room) {
        ui.input.value = room.draft;
        onComposerChange();
        closeMention();
        // Opening a room: "new messages" goes before the first unread one.
        room.dividerArmed = !room.readKnown;
        if (room.readKnown) room.dividerRead = room.unread > 0 ? room.read : null;
        renderDivider(room);
      }
      renderRoomHeader();
      renderRoster();
      renderTyping();
      renderReplyBar();
      renderPresence();
      if (room.atBottom) scrollToBottom(room);
      markRead(room);
      ui.input.focus({ preventScroll: true });
    } else {
      storage.del(STORE_ACTIVE);
      history.replaceState(null, '', location.pathname + location.search);
      renderQuickRooms();
    }
    updateTitle();
  }

  /** markRead marks the room read once its newest message is in view (see sendRead). */
  function markRead(room) {
    scheduleRead(room);
  }

  function renderRoomHeader() {
    const room = activeRoom();
    if (!room) return;
    ui.roomTitle.textContent = room.name;
    ui.roomOnline.textContent = room.online ? room.online + ' online' : '';
    ui.roomOnline.hidden = !room.online;
    ui.input.placeholder = 'Message #' + room.name;
    ui.composerLabel.textContent = 'Message #' + room.name;
    ui.roster.hidden = state.rosterHidden;
    ui.rosterToggle.setAttribute('aria-expanded', String(!state.rosterHidden));
  }

  function renderRoster() {
    const room = activeRoom();
    if (!room) return;
    const users = Array.from(room.roster).sort((a, b) => a.localeCompare(b));
    ui.rosterHeading.textContent = 'Online — ' + (room.online || users.length);
    const items = users.map((u) => {
      const li = el('li', 'roster-item');
      li.append(avatar(u, 'xs'), el('span', 'roster-name', u));
      if (u === state.me) li.append(el('span', 'you', 'you'));
      return li;
    });
    ui.rosterList.replaceChildren(...items);
    const more = Math.max(0, room.online - users.length);
    ui.rosterMore.hidden = !(more > 0 || room.rosterMore);
    ui.rosterMore.textContent = more > 0 ? 'and ' + more + ' more' : 'and more';
  }

  function renderRoomList() {
    ui.roomListEmpty.hidden = state.rooms.size > 0;
    for (const r of state.rooms.values()) ui.roomList.append(r.item); // keep order
  }

  function updateTitle() {
    let unread = 0;
    for (const r of state.rooms.values()) unread += Math.max(r.unread, r.mentions);
    const room = activeRoom();
    document.title = (unread ? '(' + unread + ') ' : '') + (room ? '#' + room.name + ' · ' : '') + 'Hubbub';
  }

  function scrollToBottom(room) {
    const tl = room.timeline;
    tl.scrollTop = tl.scrollHeight;
    room.atBottom = true;
    if (state.active === room.name) ui.jump.hidden = true;
  }

  function onTimelineScroll(room) {
    const tl = room.timeline;
    const was = room.atBottom;
    room.atBottom = tl.scrollHeight - tl.scrollTop - tl.clientHeight < 40;
    if (was !== room.atBottom) room.updateBadge();
    if (state.active === room.name) {
      if (room.atBottom) ui.jump.hidden = true;
      markRead(room);
    }
    if (tl.scrollTop < 150) requestOlder(room);
  }

  function requestOlder(room) {
    if (!room.synced || !room.hasMore || room.olderBefore) return;
    const before = room.oldestId();
    if (!before) return;
    if (!send({ type: 'history', room: room.name, before, limit: PAGE })) return;
    room.olderBefore = before;
    room.expect.push('older');
    room.renderTop();
  }

  /** maybeFillUp pages back until the timeline can scroll (or history ends). */
  function maybeFillUp(room) {
    if (room.timeline.hidden) return;
    requestAnimationFrame(() => {
      const tl = room.timeline;
      if (tl.scrollHeight <= tl.clientHeight + 150) requestOlder(room);
    });
  }

  // ---------- lobby ----------

  async function loadLobby() {
    clearTimeout(state.lobbyTimer);
    try {
      const headers = { Accept: 'application/json' };
      if (state.token) headers.Authorization = 'Bearer ' + state.token;
      const asked = Date.now();
      const who = state.token ? '' : '?user=' + encodeURIComponent(state.me || state.name || '');
      const res = await fetch('/api/lobby' + (state.token || state.me || state.name ? who : ''), { headers, cache: 'no-store', credentials: 'same-origin' });
      if (res.ok) {
        const data = await res.json();
        const rooms = Array.isArray(data) ? data : (data && Array.isArray(data.rooms) ? data.rooms : []);
        state.lobby = rooms.filter((r) => r && typeof r.room === 'string');
        // The server's unread counts (they survive a reload) until the
        // room's own unread frame comes (the join's, then pushes): the
        // lobby may lag behind the messages this page has seen.
        for (const r of state.lobby) {
          // A joined room's newest message may be newer than the list's.
          const room = state.rooms.get(r.room);
          const e = room && room.msgs.get(room.newestId());
          if (e && e.m.id > (Number(r.last_message && r.last_message.id) || 0)) {
            r.last_message = { id: e.m.id, user: e.m.user, body: e.m.body, kind: e.m.kind, ts: e.m.ts, deleted: e.m.deleted };
          }
          if (!room || room.readKnown || room.unreadAt > asked || !Number.isFinite(r.unread)) continue;
          if (state.active === room.name && !document.hidden && room.atBottom) continue;
          room.unread = Math.max(0, r.unread);
          room.mentions = Number.isFinite(r.mentions) ? Math.max(0, r.mentions) : 0;
          room.updateBadge();
        }
      }
    } catch (_) {
      // offline: keep the last list
    }
    renderLobby();
    clearTimeout(state.lobbyTimer); // overlapping calls must leave one timer
    state.lobbyTimer = setTimeout(loadLobby, LOBBY_REFRESH_MS);
  }

  /**
   * touchLobby keeps a joined room's lobby entry current between two
   * fetches: its last message (a new one, or an edit or delete of it) and
   * its count.
   */
  function touchLobby(name, m, added) {
    const r = state.lobby.find((x) => x.room === name);
    if (!r) {
      // Not listed yet (it was empty or new): ask for the list again soon.
      if (added && !state.lobbySoon) state.lobbySoon = setTimeout(() => { state.lobbySoon = 0; loadLobby(); }, 1000);
      return;
    }
    const lm = r.last_message;
    if (added) {
      if (lm && Number(lm.id) >= m.id) return;
      r.messages = (Number(r.messages) || 0) + 1;
      r.last_activity = m.ts;
    } else if (!lm || Number(lm.id) !== m.id) {
      return;
    }
    r.last_message = { id: m.id, user: m.user, body: m.body, kind: m.kind, ts: m.ts, deleted: m.deleted };
    clearTimeout(state.lobbyRender);
    state.lobbyRender = setTimeout(renderLobby, 250);
  }

  function renderLobby() {
    const items = state.lobby.map((r) => {
      const li = el('li', 'lobby-item');
      const b = el('button', 'lobby-link');
      b.type = 'button';
      const joined = state.rooms.get(r.room);
      const online = joined && joined.synced && joined.online ? joined.online : Number(r.online) || 0;
      const count = Number(r.messages) || 0;
      const name = el('span', 'lobby-name', '#' + r.room);
      const on = el('span', 'lobby-online' + (online ? '' : ' none'), online + ' online');
      const metaParts = [count + (count === 1 ? ' message' : ' messages')];
      const when = relativeTime(Number(r.last_activity) || (r.last_message && r.last_message.ts) || 0);
      if (when) metaParts.push(when);
      if (state.rooms.has(r.room)) metaParts.push('joined');
      const meta = el('span', 'lobby-meta', metaParts.join(' · '));
      b.append(name, on, meta);
      const lm = r.last_message;
      if (lm && typeof lm.body === 'string') {
        const prev = el('span', 'lobby-preview');
        const text = lm.deleted ? 'message deleted' : plainText(lm.body).slice(0, 120);
        if (lm.kind === 'system') prev.append(document.createTextNode(text));
        else prev.append(el('b', null, String(lm.user || '')), document.createTextNode(': ' + text));
        if (lm.deleted) prev.classList.add('deleted');
        b.append(prev);
      }
      b.setAttribute('aria-label', '#' + r.room + ', ' + online + ' online, ' + metaParts.join(', '));
      b.addEventListener('click', () => { joinRoom(r.room); closeSidebar(); });
      li.append(b);
      return li;
    });
    ui.lobbyList.replaceChildren(...items);
    ui.lobbyEmpty.hidden = items.length > 0;
    if (!state.active) renderQuickRooms();
  }

  function renderQuickRooms() {
    const names = state.lobby.slice(0, 6).map((r) => r.room);
    if (!names.includes('general')) names.unshift('general');
    ui.quickRooms.replaceChildren(...names.slice(0, 6).map((n) => {
      const b = el('button', 'chip', '#' + n);
      b.type = 'button';
      b.addEventListener('click', () => joinRoom(n));
      return b;
    }));
  }

  // ---------- identity ----------

  function showMe() {
    const who = state.me || state.name || '';
    ui.me.hidden = !who;
    ui.meName.textContent = who;
    ui.meAvatar.textContent = (Array.from(who)[0] || '?').toUpperCase();
    ui.meAvatar.style.setProperty('--hue', String(hue(who)));
    ui.changeName.hidden = !!state.token;
  }

  function showLogin(error) {
    ui.login.hidden = false;
    ui.loginName.value = state.name || '';
    ui.loginError.textContent = error || '';
    ui.loginCancel.hidden = !state.name || !!error;
    ui.loginName.focus();
    ui.loginName.select();
  }

  function validateName(name) {
    if (!name) return 'Please enter a name.';
    if (new TextEncoder().encode(name).length > 128) return 'That name is too long.';
    if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'That name contains characters that are not allowed.';
    return '';
  }

  function onLoginSubmit(ev) {
    ev.preventDefault();
    const name = ui.loginName.value.trim();
    const err = validateName(name);
    if (err) { ui.loginError.textContent = err; ui.loginName.focus(); return; }
    const changed = name !== state.name;
    state.name = name;
    storage.set(STORE_NAME, name);
    ui.login.hidden = true;
    showMe();
    if (changed || state.stopped || !state.ws) {
      state.stopped = false;
      state.attempt = 0;
      state.failures = 0;
      const old = state.ws;
      state.ws = null;
      state.welcomed = false;
      if (old) { old.close(1000, 'changing name'); onDisconnected(); }
      connect('login');
    }
  }

  // ---------- composer ----------

  function onComposerChange() {
    const n = chars(ui.input.value.trim());
    ui.count.textContent = n ? n + ' / ' + MAX_BODY : '';
    ui.count.classList.toggle('near', n > MAX_BODY * 0.9 && n <= MAX_BODY);
    ui.count.classList.toggle('over', n > MAX_BODY);
    ui.send.disabled = n === 0 || n > MAX_BODY;
    ui.input.style.height = 'auto';
    ui.input.style.height = Math.min(ui.input.scrollHeight, 200) + 'px';
  }

  // ---------- toasts, sidebar ----------

  /**
   * toast shows text for a while. One toast per condition: key names it
   * (default: the text), and a repeat of a shown condition updates that
   * toast and restarts its timer instead of adding another. A sticky toast
   * stays until dismissToast(key).
   */
  function toast(text, kind, key, sticky) {
    const k = key || 'text:' + text;
    let t = toasts.get(k);
    if (t) {
      if (t.el.textContent !== text) t.el.textContent = text;
    } else {
      t = { el: el('div', 'toast' + (kind ? ' ' + kind : ''), text), timer: 0 };
      t.el.dataset.key = k;
      toasts.set(k, t);
      ui.toasts.append(t.el);
      while (ui.toasts.children.length > 4) dismissToast(ui.toasts.firstElementChild.dataset.key);
    }
    clearTimeout(t.timer);
    t.timer = sticky ? 0 : setTimeout(() => dismissToast(k), TOAST_MS);
  }

  function dismissToast(key) {
    const t = toasts.get(key);
    if (!t) return;
    clearTimeout(t.timer);
    t.el.remove();
    toasts.delete(key);
  }

  function showJoinError(text) {
    ui.joinError.textContent = text;
    if (text) {
      openSidebar();
      ui.joinInput.focus();
    }
  }

  function openSidebar() {
    ui.app.classList.add('sidebar-open');
    ui.sidebarToggle.setAttribute('aria-expanded', 'true');
  }

  function closeSidebar() {
    ui.app.classList.remove('sidebar-open');
    ui.sidebarToggle.setAttribute('aria-expanded', 'false');
  }

  // ---------- wiring ----------

  function roomFromHash() {
    const h = decodeURIComponent(location.hash || '');
    return h.startsWith('#/') ? normaliseRoom(h.slice(2)) : '';
  }

  function init() {
    state.token = readToken();
    state.name = storage.get(STORE_NAME);

    ui.loginForm.addEventListener('submit', onLoginSubmit);
    ui.loginCancel.addEventListener('click', () => { ui.login.hidden = true; });
    ui.changeName.addEventListener('click', () => showLogin());
    ui.authRetry.addEventListener('click', () => location.reload());
    ui.connRetry.addEventListener('click', () => reconnectNow('retry'));
    ui.sidebarToggle.addEventListener('click', () => {
      if (ui.app.classList.contains('sidebar-open')) closeSidebar(); else openSidebar();
    });
    ui.lobbyRefresh.addEventListener('click', loadLobby);
    ui.main.addEventListener('click', closeSidebar);
    document.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Escape') return;
      if (!ui.login.hidden && !ui.loginCancel.hidden) ui.login.hidden = true;
      else if (ui.app.classList.contains('sidebar-open')) closeSidebar();
    });

    ui.joinForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = ui.joinInput.value;
      if (!normaliseRoom(v)) { showJoinError('Type a room name, like “general”.'); return; }
      ui.joinInput.value = '';
      joinRoom(v);
      closeSidebar();
    });
    ui.joinInput.addEventListener('input', () => showJoinError(''));

    ui.composer.addEventListener('submit', (ev) => { ev.preventDefault(); sendMessage(); });
    ui.input.addEventListener('keydown', (ev) => {
      if (ev.isComposing) return;
      if (mentionKey(ev)) { ev.preventDefault(); ev.stopPropagation(); return; }
      if (ev.key === 'Enter' && !ev.shiftKey) {
        ev.preventDefault();
        sendMessage();
      } else if (ev.key === 'Escape' && activeRoom() && activeRoom().replyTo) {
        ev.preventDefault();
        ev.stopPropagation();
        cancelReply();
      } else if (ev.key === 'ArrowUp' && ui.input.value === '') {
        // Up in an empty composer edits your last message.
        const room = activeRoom();
        const li = room && Array.from(room.list.querySelectorAll('li.msg.mine:not(.deleted)')).pop();
        if (li) { ev.preventDefault(); openEditor(room, room.msgs.get(Number(li.dataset.id))); }
      }
    });
    ui.input.addEventListener('input', () => { onComposerChange(); onTypingInput(); updateMention(); });
    ui.input.addEventListener('click', updateMention);
    ui.input.addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== ui.input) closeMention(); }, 150));
    ui.input.setAttribute('aria-autocomplete', 'list');
    ui.input.setAttribute('aria-controls', 'mention-pop');
    ui.mentionPop.addEventListener('mousedown', (ev) => {
      const li = ev.target.closest('li[data-user]');
      if (!li) return;
      ev.preventDefault(); // keep the focus in the composer
      pickMention(li.dataset.user);
    });
    ui.replyCancel.addEventListener('click', () => { cancelReply(); ui.input.focus(); });
    ui.notify.addEventListener('click', onNotifyToggle);
    renderNotify();
    // Narrowing the window to where the roster would cover the messages hides it.
    window.matchMedia('(max-width: 1000px)').addEventListener('change', (ev) => {
      if (ev.matches && !state.rosterHidden) { state.rosterHidden = true; renderRoomHeader(); }
    });
    document.addEventListener('click', (ev) => {
      if (ui.picker && ui.picker.parentNode && !ui.picker.contains(ev.target) && !ev.target.closest('[data-act="react"]')) closePicker();
      if (ui.toolbar && ui.toolbar.parentNode && ui.toolbar.parentNode.classList.contains('show-actions') && !ev.target.closest('li.msg')) detachToolbar();
    });
    ui.input.addEventListener('blur', () => { if (!ui.input.value.trim()) stopTyping(); });

    ui.leaveRoom.addEventListener('click', () => { if (state.active) leaveRoom(state.active); });
    ui.rosterToggle.addEventListener('click', () => {
      state.rosterHidden = !state.rosterHidden;
      storage.set(STORE_ROSTER, state.rosterHidden ? 'hidden' : 'shown');
      renderRoomHeader();
    });
    ui.jump.addEventListener('click', () => { const r = activeRoom(); if (r) { scrollToBottom(r); markRead(r); } });
    document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { closePicker(); detachToolbar(); } });

    document.addEventListener('visibilitychange', () => {
      if (document.hidden) return;
      const r = activeRoom();
      if (r) markRead(r);
      reconnectNow('visible');
    });
    window.addEventListener('focus', () => reconnectNow('focus'));
    window.addEventListener('online', () => reconnectNow('online'));
    window.addEventListener('hashchange', () => { const r = roomFromHash(); if (r && r !== state.active) joinRoom(r); });
    window.addEventListener('pagehide', () => { stopTyping(); });

    let saved = [];
    try { saved = JSON.parse(storage.get(STORE_ROOMS) || '[]'); } catch (_) { saved = []; }
    if (!Array.isArray(saved)) saved = [];
    for (const n of saved) if (typeof n === 'string' && n) joinRoom(n, false);
    const wanted = roomFromHash() || storage.get(STORE_ACTIVE);
    if (wanted) joinRoom(wanted);
    else setActive(state.rooms.keys().next().value || null);
    renderRoomList();
    onComposerChange();
    showMe();
    loadLobby();

    if (state.token || state.name) connect();
    else {
      setConn('idle', 'Not connected');
      showLogin();
    }
  }

  init();
})();
