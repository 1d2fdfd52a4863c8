package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/admit"
	"github.com/hubbub-chat/hubbub/services/edge/fanout"
	"github.com/hubbub-chat/hubbub/services/edge/frame"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// events streams a room as Server-Sent Events: a "history" event (the
// newest page, or everything after Last-Event-ID / ?since=), then
// "message", "typing" and "presence" events. Each message event's id is
// the message id, so an EventSource that reconnects resumes gaplessly.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	room, ok := roomParam(w, r)
	if !ok {
		return
	}
	id, ok := a.identity(w, r)
	if !ok {
		return
	}
	if !id.Allows(room) {
		writeError(w, http.StatusForbidden, wire.Errorf(wire.CodeForbidden, "the token does not allow this room"))
		return
	}
	if a.cfg.Gate != nil {
		ticket, err := a.cfg.Gate.Acquire(r)
		if err != nil {
			reason := "edge_full"
			if errors.Is(err, admit.ErrAddressFull) {
				reason = "address_full"
			}
			a.obs.ConnRefused(reason)
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "%v", err))
			return
		}
		defer ticket.Release()
	}
	user := id.User
	var since *uint64
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("since")
	}
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeBadJSON, "Last-Event-ID must be a message id"))
			return
		}
		since = &n
	}
	if a.cfg.Users != nil {
		u, err := a.cfg.Users.Acquire(user)
		if err != nil {
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusTooManyRequests, wire.Errorf(wire.CodeRateLimited, "%v", err))
			return
		}
		defer u.Release()
	}
	rc := http.NewResponseController(w)
	sink := &sseSink{max: a.cfg.SSEQueue, notify: make(chan struct{}, 1)}
	ctx := r.Context()

	// Join on its own goroutine: a long catch-up is paced on what this
	// handler writes, so the stream must be served while the join runs.
	type joinResult struct {
		m   *fanout.Member
		err error
	}
	jctx, cancelJoin := context.WithCancel(ctx)
	joined := make(chan joinResult, 1)
	go func() {
		m, err := a.hub.Join(jctx, fanout.JoinRequest{Room: room, User: user, Since: since, Sink: sink})
		joined <- joinResult{m, err}
	}()
	var member *fanout.Member
	var conn *wire.ConnEvent
	reason := "client"
	defer func() {
		cancelJoin()
		if joined != nil {
			if res := <-joined; res.err == nil {
				member = res.m
			}
		}
		if member == nil {
			return
		}
		member.Leave()
		if conn != nil {
			a.be.Unregister(*conn)
		}
		a.obs.ConnClosed(reason)
	}()

	started := false
	start := func() {
		started = true
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("retry: 2000\n\n"))
		_ = rc.Flush()
	}

	keep := time.NewTicker(a.cfg.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.done:
			reason = "restart"
			return
		case res := <-joined:
			joined = nil
			if res.err != nil {
				if !started {
					a.fail(w, res.err)
				}
				return
			}
			member = res.m
			a.obs.ConnOpened()
			ev := wire.ConnEvent{Room: room, User: user, Conn: a.ids(), Edge: a.cfg.EdgeID}
			conn = &ev
			// Presence is registered in the background (retried while
			// presence is unavailable): the stream does not wait for it.
			a.be.Register(ev, nil)
			if !started {
				start()
			}
		case <-keep.C:
			if !started {
				continue
			}
			_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				reason = "transport"
				return
			}
			if err := rc.Flush(); err != nil {
				reason = "transport"
				return
			}
		case <-sink.notify:
			if !started {
				start()
			}
			frames, over := sink.take()
			// A reader that stops reading blocks the write: give up on it
			// after WriteTimeout (it resumes with Last-Event-ID).
			_ = rc.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
			for _, f := range frames {
				if _, err := w.Write(f.SSE()); err != nil {
					reason = "transport"
					return
				}
			}
			// A failed write also cancels ctx (net/http does): check the
			// flush here, or the close would be counted as the client's.
			if err := rc.Flush(); err != nil {
				reason = "transport"
				return
			}
			if over {
				reason = "slow_consumer"
				return
			}
		}
	}
}

// sseSink queues frames for one SSE stream, bounded in bytes.
type sseSink struct {
	max    int
	notify chan struct{}

	mu       sync.Mutex
	queue    []*frame.Frame
	bytes    int
	overflow bool
}

// Send implements fanout.Sink.
func (s *sseSink) Send(f *frame.Frame) bool {
	n := len(f.SSE())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overflow {
		return false
	}
	if f.Class == frame.Sheddable && s.bytes+n > s.max/2 {
		return false
	}
	if s.bytes > 0 && s.bytes+n > s.max {
		s.overflow = true
		s.queue = nil
	} else {
		s.queue = append(s.queue, f)
		s.bytes += n
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return !s.overflow
}

// QueuedBytes implements fanout.Backlogged: the bytes not yet taken by
// the stream's writer.
func (s *sseSink) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

func (s *sseSink) take() ([]*frame.Frame, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	s.bytes = 0
	return q, s.overflow
}
