package readstate

import (
	"slices"
	"sync"

	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/shared/names"
)

// Sink is where a connection's frames go (session.Sink, ws.Conn). Send
// must not block, and a Sink must be comparable (a pointer): it is a
// map key while its push waits.
type Sink interface {
	Send(f *frame.Frame) bool
}

// index is the users with connections on this edge: user token → sinks.
type index struct {
	mu    sync.Mutex
	users map[string]*user
}

type user struct {
	sinks []Sink // a user has few connections: a slice
}

// Register adds sink to userID's connections on this edge, the ones
// pushes reach, until the returned release is called (once the
// connection ended: guarantee 8). release is idempotent.
func (s *Service) Register(userID string, sink Sink) (release func()) {
	tok := names.UserToken(userID)
	x := &s.idx
	x.mu.Lock()
	u := x.users[tok]
	if u == nil {
		u = &user{}
		x.users[tok] = u
	}
	u.sinks = append(u.sinks, sink)
	x.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { x.remove(tok, sink) }) }
}

func (x *index) remove(tok string, sink Sink) {
	x.mu.Lock()
	defer x.mu.Unlock()
	u := x.users[tok]
	if u == nil {
		return
	}
	if i := slices.Index(u.sinks, sink); i >= 0 {
		u.sinks = slices.Delete(u.sinks, i, i+1)
	}
	if len(u.sinks) == 0 {
		delete(x.users, tok)
	}
}

// here reports whether the user with token tok has a connection here.
func (x *index) here(tok string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.users[tok] != nil
}

// sinks returns a copy of the sinks of the user with token tok.
func (x *index) sinks(tok string) []Sink {
	x.mu.Lock()
	defer x.mu.Unlock()
	if u := x.users[tok]; u != nil {
		return slices.Clone(u.sinks)
	}
	return nil
}

// Users is the number of users with a registered connection here.
func (s *Service) Users() int {
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	return len(s.idx.users)
}
