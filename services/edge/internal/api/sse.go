package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/frame"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// events streams a room as Server-Sent Events: "history" events (the
// newest page, or everything after Last-Event-ID / ?since=), then
// "message", "typing", "presence" (and a "roster") events. Each message
// event's id is the message id, so an EventSource that reconnects resumes
// gaplessly.
//
// The stream is a session (the client model every transport shares) over
// an sseSink; this handler only parses the request, joins the room and
// writes what the sink queues.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	room, id, ok := a.readableRoom(w, r)
	if !ok {
		return
	}
	since, ok := lastEventID(w, r)
	if !ok {
		return
	}
	ticket, ok := a.admit(w, r)
	if !ok {
		return
	}
	sink := newSSESink(a.cfg.SSEQueue)
	sess, err := a.sessions.Open(sink, id, ticket)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, wire.Errorf(wire.CodeRateLimited, "%v", err))
		return
	}
	reason := "client"
	defer func() { sess.End(reason) }()
	reason = a.follow(w, r, sess, sink, room, since)
}

// lastEventID reads the resume cursor: Last-Event-ID, else ?since= (nil:
// the newest page). It answers 400 itself.
func lastEventID(w http.ResponseWriter, r *http.Request) (*uint64, bool) {
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("since")
	}
	if last == "" {
		return nil, true
	}
	n, err := strconv.ParseUint(last, 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeBadJSON, "Last-Event-ID must be a message id"))
		return nil, false
	}
	return &n, true
}

// admit takes the stream's place under the edge's connection caps (nil
// without a gate). It answers 503 itself.
func (a *API) admit(w http.ResponseWriter, r *http.Request) (*admit.Ticket, bool) {
	if a.gate == nil {
		return nil, true
	}
	ticket, err := a.gate.Acquire(r)
	if err != nil {
		reason := "edge_full"
		if errors.Is(err, admit.ErrAddressFull) {
			reason = "address_full"
		}
		a.obs.ConnRefused(reason)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "%v", err))
		return nil, false
	}
	return ticket, true
}

// follow joins room and writes the stream until the client goes, the
// edge drains, a write fails or the client falls too far behind; it
// returns why, as a close reason for metrics. The join runs on its own
// goroutine: a long catch-up is paced on what this loop writes.
func (a *API) follow(w http.ResponseWriter, r *http.Request, sess *session.Session, sink *sseSink, room string, since *uint64) string {
	ctx := r.Context()
	jctx, cancelJoin := context.WithCancel(ctx)
	joined := make(chan error, 1)
	go func() { joined <- sess.JoinRoom(jctx, room, since) }()
	defer func() {
		// The session is the join's until it returned.
		cancelJoin()
		if joined != nil {
			<-joined
		}
	}()
	st := &sseStream{w: w, rc: http.NewResponseController(w), sink: sink, timeout: a.cfg.WriteTimeout}
	keep := time.NewTicker(a.cfg.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return "client"
		case <-a.done:
			return "restart"
		case err := <-joined:
			joined = nil
			if err != nil {
				if !st.started {
					a.refuse(w, err)
				}
				return "join_failed"
			}
			st.start()
		case <-keep.C:
			if st.started && st.write([]byte(": keep-alive\n\n")) != nil {
				return "transport"
			}
		case <-sink.notify:
			if reason, end := st.flush(); end {
				return reason
			}
		}
	}
}

// refuse answers a join the session refused, before the stream started.
func (a *API) refuse(w http.ResponseWriter, err error) {
	var we *wire.Error
	if errors.As(err, &we) {
		writeRefusal(w, we)
		return
	}
	a.fail(w, err)
}

// sseStream writes one event-stream response.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	sink    *sseSink
	timeout time.Duration
	started bool
}

// start sends the stream's headers and retry hint.
func (st *sseStream) start() {
	if st.started {
		return
	}
	st.started = true
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
	_, _ = st.w.Write([]byte("retry: 2000\n\n"))
	_ = st.rc.Flush()
}

// write writes and flushes b within the write timeout: a reader that
// stops reading blocks the write, and is given up on (it resumes with
// Last-Event-ID). A failed write also cancels the request's context
// (net/http does): the flush is checked here, or the close would be
// counted as the client's.
func (st *sseStream) write(bufs ...[]byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
	for _, b := range bufs {
		if _, err := st.w.Write(b); err != nil {
			return err
		}
	}
	return st.rc.Flush()
}

// flush writes what the sink queued; end reports that the stream must
// end, and why.
func (st *sseStream) flush() (reason string, end bool) {
	st.start()
	frames, state := st.sink.take()
	bufs := make([][]byte, len(frames))
	for i, f := range frames {
		bufs[i] = f.SSE()
	}
	if len(bufs) > 0 && st.write(bufs...) != nil {
		return "transport", true
	}
	switch {
	case state.overflow:
		return "slow_consumer", true
	case state.closeCode != 0:
		return ws.CodeLabel(state.closeCode), true
	}
	return "", false
}

// sseSink is an SSE stream's session.Sink: frames queue for the stream's
// handler goroutine, bounded in bytes (a stream further behind is cut off
// and resumes with Last-Event-ID).
type sseSink struct {
	max    int
	notify chan struct{}

	mu    sync.Mutex
	queue []*frame.Frame
	bytes int
	state sinkState
}

// sinkState is why a stream must end, if it must.
type sinkState struct {
	overflow  bool   // the queue passed its bound
	closeCode uint16 // Close was called
}

func newSSESink(max int) *sseSink {
	return &sseSink{max: max, notify: make(chan struct{}, 1)}
}

// Send implements session.Sink: typing and presence are shed past half
// the bound; past the bound the stream is ended.
func (s *sseSink) Send(f *frame.Frame) bool {
	n := len(f.SSE())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.overflow || s.state.closeCode != 0 {
		return false
	}
	if f.Class == frame.Sheddable && s.bytes+n > s.max/2 {
		return false
	}
	if s.bytes > 0 && s.bytes+n > s.max {
		s.state.overflow = true
		s.queue = nil
	} else {
		s.queue = append(s.queue, f)
		s.bytes += n
	}
	s.wake()
	return !s.state.overflow
}

// QueuedBytes implements session.Sink: the bytes not yet taken by the
// stream's writer.
func (s *sseSink) QueuedBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Close implements session.Sink: the stream ends after what is queued
// (an event stream has no close frame; the code names the reason).
func (s *sseSink) Close(code uint16, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.closeCode == 0 {
		s.state.closeCode = code
	}
	s.wake()
}

// wake tells the writer there is something to do; s.mu is held.
func (s *sseSink) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take hands the queued frames to the writer.
func (s *sseSink) take() ([]*frame.Frame, sinkState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	s.bytes = 0
	return q, s.state
}
