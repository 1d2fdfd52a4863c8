// Package userlimit enforces limits per user across all of that user's
// connections on one edge: how many connections the user may hold, and
// token-bucket rates of messages, joins and typing frames shared by those
// connections (in addition to each connection's own limits). The rates
// hold on every transport: a user's HTTP posts draw on the same budget as
// their WebSocket messages, whether or not a connection is open. A user's
// entry exists while the user has a connection on the edge or a budget
// that has not refilled yet.
package userlimit

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrTooManyConns is returned by Acquire when the user already holds
// Config.MaxConns connections on this edge.
var ErrTooManyConns = errors.New("too many connections for this user")

// Rates are token-bucket limits of the three kinds of frames a client
// spends a budget on: messages, joins and typing frames. A connection's
// own limits (session.Config) and a user's shared ones (Config) have this
// shape; each owner has its own defaults (Or).
type Rates struct {
	// MessageRate and MessageBurst limit messages.
	MessageRate  rate.Limit
	MessageBurst int
	// JoinRate and JoinBurst limit joins.
	JoinRate  rate.Limit
	JoinBurst int
	// TypingRate and TypingBurst limit typing frames.
	TypingRate  rate.Limit
	TypingBurst int
}

// Or fills r's zero (or negative) fields from def.
func (r Rates) Or(def Rates) Rates {
	orRate(&r.MessageRate, def.MessageRate)
	orInt(&r.MessageBurst, def.MessageBurst)
	orRate(&r.JoinRate, def.JoinRate)
	orInt(&r.JoinBurst, def.JoinBurst)
	orRate(&r.TypingRate, def.TypingRate)
	orInt(&r.TypingBurst, def.TypingBurst)
	return r
}

func orInt(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

func orRate(v *rate.Limit, d rate.Limit) {
	if *v <= 0 {
		*v = d
	}
}

// Config sets the limits. Zero values take the defaults below.
type Config struct {
	// MaxConns is how many connections (WebSocket and SSE) one user may
	// hold on this edge.
	MaxConns int
	// Rates are shared by all of the user's connections; the joins allow
	// for a few tabs re-joining their rooms after a reconnect.
	Rates
}

// Defaults for Config.
const (
	DefaultMaxConns     = 20
	DefaultMessageRate  = 20
	DefaultMessageBurst = 40
	DefaultJoinRate     = 20
	DefaultJoinBurst    = 200
	DefaultTypingRate   = 10
	DefaultTypingBurst  = 20
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	orInt(&c.MaxConns, DefaultMaxConns)
	c.Rates = c.Rates.Or(Rates{
		MessageRate: DefaultMessageRate, MessageBurst: DefaultMessageBurst,
		JoinRate: DefaultJoinRate, JoinBurst: DefaultJoinBurst,
		TypingRate: DefaultTypingRate, TypingBurst: DefaultTypingBurst,
	})
	return c
}

// Limits tracks the users connected to one edge.
type Limits struct {
	cfg Config

	mu    sync.Mutex
	users map[string]*User
	// idle counts entries without connections (kept while a budget
	// refills); swept is when they were last swept.
	idle  int
	swept time.Time
}

// sweepEvery bounds how often idle entries are looked for.
const sweepEvery = time.Second

// New returns Limits with cfg (defaults filled).
func New(cfg Config) *Limits {
	return &Limits{cfg: cfg.WithDefaults(), users: make(map[string]*User)}
}

// Config returns the effective configuration.
func (l *Limits) Config() Config { return l.cfg }

// Users is the number of users with at least one connection.
func (l *Limits) Users() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users) - l.idle
}

// Entries is the number of users tracked: connected, or with a budget
// still refilling.
func (l *Limits) Entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.users)
}

// entryLocked returns user's entry, creating it.
func (l *Limits) entryLocked(user string) *User {
	l.sweepLocked(time.Now())
	u := l.users[user]
	if u == nil {
		u = &User{l: l, name: user}
		l.users[user] = u
		l.idle++
	}
	return u
}

// sweepLocked drops, at most once per sweepEvery, the entries of users
// without connections whose budgets are full again: keeping them would
// change nothing.
func (l *Limits) sweepLocked(now time.Time) {
	if l.idle == 0 || now.Sub(l.swept) < sweepEvery {
		return
	}
	l.swept = now
	for name, u := range l.users {
		if u.conns == 0 && u.refilled(now) {
			delete(l.users, name)
			l.idle--
		}
	}
}

// Acquire registers one more connection of user. It fails with
// ErrTooManyConns when the user is at MaxConns. Call Release on the
// returned User exactly once when the connection ends.
func (l *Limits) Acquire(user string) (*User, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.entryLocked(user)
	if u.conns >= l.cfg.MaxConns {
		return nil, ErrTooManyConns
	}
	if u.conns == 0 {
		l.idle--
	}
	u.conns++
	return u, nil
}

// AllowMessage takes one message from the budget of user, whether or not
// the user has a connection here: an HTTP post draws on the same budget
// as the user's WebSocket messages.
func (l *Limits) AllowMessage(user string) bool {
	l.mu.Lock()
	u := l.entryLocked(user)
	l.mu.Unlock()
	return u.AllowMessage()
}

// User is one user's shared limits. Its methods are safe for concurrent
// use by the user's connections.
type User struct {
	l     *Limits
	name  string
	conns int // guarded by l.mu

	// Created on first use: most users are idle, and a limiter costs 80
	// bytes.
	msg, join, typing atomic.Pointer[rate.Limiter]
}

// Release ends one connection of the user. The entry goes with the last
// connection unless a budget is still refilling (a user who reconnects
// must not get a fresh budget); such entries are swept once refilled.
func (u *User) Release() {
	l := u.l
	l.mu.Lock()
	defer l.mu.Unlock()
	u.conns--
	if u.conns > 0 || l.users[u.name] != u {
		return
	}
	if u.refilled(time.Now()) {
		delete(l.users, u.name)
		return
	}
	l.idle++
}

// refilled reports whether every budget the user has used is full again.
func (u *User) refilled(now time.Time) bool {
	for _, p := range []*atomic.Pointer[rate.Limiter]{&u.msg, &u.join, &u.typing} {
		if lim := p.Load(); lim != nil && lim.TokensAt(now) < float64(lim.Burst()) {
			return false
		}
	}
	return true
}

// AllowMessage takes one message from the user's budget.
func (u *User) AllowMessage() bool {
	return limiter(&u.msg, u.l.cfg.MessageRate, u.l.cfg.MessageBurst).Allow()
}

// AllowJoin takes one join from the user's budget.
func (u *User) AllowJoin() bool {
	return limiter(&u.join, u.l.cfg.JoinRate, u.l.cfg.JoinBurst).Allow()
}

// AllowTyping takes one typing frame from the user's budget.
func (u *User) AllowTyping() bool {
	return limiter(&u.typing, u.l.cfg.TypingRate, u.l.cfg.TypingBurst).Allow()
}

// limiter returns *p, creating it on first use.
func limiter(p *atomic.Pointer[rate.Limiter], r rate.Limit, burst int) *rate.Limiter {
	if lim := p.Load(); lim != nil {
		return lim
	}
	lim := rate.NewLimiter(r, burst)
	if p.CompareAndSwap(nil, lim) {
		return lim
	}
	return p.Load()
}
