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
    typing: { room: null, sentAt: 0, idle: 0 },
    lobby: [],
    lobbyTimer: 0,
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
      this.unread = 0;
      this.pending = new Map();   // cid -> {cid, body, ts, li, state}
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
      ui.timelines.append(this.timeline);

      this.item = el('li', 'room-item');
      this.link = el('button', 'room-link');
      this.link.type = 'button';
      this.nameEl = el('span', 'room-name', '#' + this.name);
      this.badge = el('span', 'badge');
      this.badge.hidden = true;
      this.link.append(this.nameEl, this.badge);
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
      for (const cid of this.pending.keys()) state.cids.delete(cid);
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
      this.badge.hidden = this.unread === 0;
      this.badge.textContent = this.unread > 99 ? '99+' : String(this.unread);
      this.item.classList.toggle('unread', this.unread > 0);
      this.link.setAttribute('aria-label', '#' + this.name + (this.unread ? ', ' + this.unread + ' unread' : ''));
      updateTitle();
    }

    /** resetView forgets every message (recovered:false). */
    resetView() {
      this.msgs.clear();
      this.ahead.clear();
      this.lastId = 0;
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
    for (const m of items) {
      insertMessage(room, m);
      if (m.id > room.lastId) {
        if (m.prev === room.lastId || (room.lastId === 0 && room.msgs.size === 1) || (fresh && m === items[0])) room.lastId = m.id;
        else room.ahead.set(m.prev, m);
      }
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
    persistRooms();
    if (first) setTimeout(loadLobby, 500); // the room may be new: refresh the list
    if (keepScroll) scrollToBottom(room);
    maybeFillUp(room);
    if (state.active === room.name) renderRoomHeader();
  }

  function onOlderPage(room, items, hasMore) {
    const tl = room.timeline;
    const fromBottom = tl.scrollHeight - tl.scrollTop;
    room.timeline.setAttribute('aria-busy', 'true');
    for (let i = items.length - 1; i >= 0; i--) insertMessage(room, items[i]);
    room.timeline.setAttribute('aria-busy', 'false');
    room.hasMore = hasMore && items.length > 0;
    room.olderBefore = 0;
    room.renderTop();
    tl.scrollTop = tl.scrollHeight - fromBottom; // keep what the reader was looking at
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

  function onLiveMessage(room, m, live) {
    if (m.id <= room.lastId && room.msgs.has(m.id) && !room.msgs.get(m.id).provisional) return; // duplicate
    const wasBottom = room.atBottom;
    const isNew = insertMessage(room, m);
    if (m.id > room.lastId) {
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
    if (m.kind !== 'system' && room.typists.has(m.user)) {
      clearTimeout(room.typists.get(m.user));
      room.typists.delete(m.user);
      if (state.active === room.name) renderTyping();
    }
    if (!live || !isNew) return;
    const mine = m.user === state.me;
    if (mine || wasBottom) scrollToBottom(room);
    const visible = state.active === room.name && !document.hidden;
    if (!mine && m.kind !== 'system' && (!visible || !room.atBottom)) {
      room.unread++;
      room.updateBadge();
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
    const roomName = state.cids.get(f.cid);
    const room = roomName && state.rooms.get(roomName);
    if (!room) return;
    const p = room.pending.get(f.cid);
    state.cids.delete(f.cid);
    if (!p) return;
    removePending(room, p);
    if (Number.isFinite(f.id) && f.id > 0 && !room.msgs.has(f.id)) {
      // The live echo is on its way; show the message in its final place now.
      insertMessage(room, { id: f.id, prev: -1, room: room.name, user: state.me, body: p.body, kind: 'message', ts: p.ts, cid: p.cid }, true);
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
    if (state.active === room.name) { renderRoster(); renderRoomHeader(); renderTyping(); }
  }

  function onError(f) {
    const code = String(f.code || 'error');
    const message = typeof f.message === 'string' ? f.message : '';
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

  /** insertMessage renders m in id order; returns true when it was not shown before. */
  function insertMessage(room, m, provisional) {
    const existing = room.msgs.get(m.id);
    if (existing) {
      if (existing.provisional && !provisional) {
        const li = renderMessage(room, m);
        existing.li.replaceWith(li);
        room.msgs.set(m.id, { m, li, provisional: false });
        regroup(li);
        regroup(nextMsg(li));
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
    room.msgs.set(m.id, { m, li, provisional: !!provisional });
    regroup(li);
    regroup(nextMsg(li));
    return true;
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

  function renderMessage(room, m) {
    const user = typeof m.user === 'string' ? m.user : '';
    const body = typeof m.body === 'string' ? m.body : '';
    const ts = Number.isFinite(m.ts) ? m.ts : Date.now();
    const li = el('li', 'msg');
    li.dataset.id = String(m.id);
    li.dataset.user = user;
    li.dataset.ts = String(ts);
    li.dataset.kind = m.kind === 'system' ? 'system' : 'message';
    if (m.kind === 'system') {
      li.classList.add('system');
      const text = body || (user + ' joined');
      if (/\b(left|leaves|leave)\b/i.test(text)) li.classList.add('leave');
      li.append(el('span', 'msg-body', text), timeEl(ts, 'msg-time'));
      return li;
    }
    if (user === state.me) li.classList.add('mine');
    else if (state.me && body.toLowerCase().includes('@' + state.me.toLowerCase())) li.classList.add('mention');
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-user', user), timeEl(ts, 'msg-time'));
    const p = el('div', 'msg-body');
    renderBody(p, body);
    li.append(avatar(user), head, timeEl(ts, 'msg-side-time', true), p);
    return li;
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
    const p = { cid: randomCid(), body, ts: Date.now(), state: 'sending', li: null, error: null };
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
    const sent = room.synced && send({ type: 'message', room: room.name, body: p.body, cid: p.cid });
    setPendingState(room, p, sent ? 'sending' : 'queued');
  }

  function renderPending(room, p) {
    const li = el('li', 'msg mine pending');
    li.dataset.kind = 'message';
    li.dataset.cid = p.cid;
    const head = el('div', 'msg-head');
    head.append(el('span', 'msg-user', state.me || state.name || ''), timeEl(p.ts, 'msg-time'));
    const body = el('div', 'msg-body');
    renderBody(body, p.body);
    li.append(avatar(state.me || state.name || '?'), head, body, el('div', 'msg-status'));
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
      }
      renderRoomHeader();
      renderRoster();
      renderTyping();
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

  function markRead(room) {
    if (room.unread && room.atBottom && !document.hidden && state.active === room.name) {
      room.unread = 0;
      room.updateBadge();
    }
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
    for (const r of state.rooms.values()) unread += r.unread;
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
    room.atBottom = tl.scrollHeight - tl.scrollTop - tl.clientHeight < 40;
    if (state.active === room.name) {
      if (room.atBottom) { ui.jump.hidden = true; markRead(room); }
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
      const res = await fetch('/api/lobby', { headers, cache: 'no-store', credentials: 'same-origin' });
      if (res.ok) {
        const data = await res.json();
        const rooms = Array.isArray(data) ? data : (data && Array.isArray(data.rooms) ? data.rooms : []);
        state.lobby = rooms.filter((r) => r && typeof r.room === 'string');
      }
    } catch (_) {
      // offline: keep the last list
    }
    renderLobby();
    clearTimeout(state.lobbyTimer); // overlapping calls must leave one timer
    state.lobbyTimer = setTimeout(loadLobby, LOBBY_REFRESH_MS);
  }

  function renderLobby() {
    const items = state.lobby.map((r) => {
      const li = el('li', 'lobby-item');
      const b = el('button', 'lobby-link');
      b.type = 'button';
      const online = Number(r.online) || 0;
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
        const firstLine = lm.body.split('\n')[0].slice(0, 120);
        if (lm.kind === 'system') prev.append(document.createTextNode(firstLine));
        else prev.append(el('b', null, String(lm.user || '')), document.createTextNode(': ' + firstLine));
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
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        sendMessage();
      }
    });
    ui.input.addEventListener('input', () => { onComposerChange(); onTypingInput(); });
    ui.input.addEventListener('blur', () => { if (!ui.input.value.trim()) stopTyping(); });

    ui.leaveRoom.addEventListener('click', () => { if (state.active) leaveRoom(state.active); });
    ui.rosterToggle.addEventListener('click', () => {
      state.rosterHidden = !state.rosterHidden;
      storage.set(STORE_ROSTER, state.rosterHidden ? 'hidden' : 'shown');
      renderRoomHeader();
    });
    ui.jump.addEventListener('click', () => { const r = activeRoom(); if (r) { scrollToBottom(r); markRead(r); } });

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
