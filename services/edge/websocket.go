package edge

import (
	"errors"
	"net/http"
	"strconv"

	gws "github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/services/edge/internal/admit"
	"github.com/hubbub-chat/hubbub/services/edge/internal/auth"
	"github.com/hubbub-chat/hubbub/services/edge/internal/session"
	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// The WebSocket handler: GET /ws is refused while draining, from an
// origin not allowed or over the connection caps, else upgraded and
// served by a session (ws.Transport reads it; served hands it frames).

func (s *Service) newConnID() string {
	return s.cfg.EdgeID + "-" + strconv.FormatUint(s.connSeq.Add(1), 36)
}

// serveWS upgrades /ws and runs a session on its own goroutine; the HTTP
// handler goroutine returns at once.
func (s *Service) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "edge is draining; reconnect elsewhere", http.StatusServiceUnavailable)
		return
	}
	if !s.origins.Allowed(r) {
		s.metrics.ConnRefused(wire.CodeOriginRefused)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ticket, gerr := s.gate.Acquire(r)
	if errors.Is(gerr, admit.ErrEdgeFull) {
		// Refuse before upgrading: the load balancer or the client's
		// backoff takes the connection elsewhere.
		s.metrics.ConnRefused("edge_full")
		s.log.Warn("connection refused: edge at its connection cap", "cap", s.gate.Config().MaxConns)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "edge is at its connection cap; try again later", http.StatusServiceUnavailable)
		return
	}
	id, aerr := s.authn.Authenticate(r)
	conn, err := s.transport.Upgrade(w, r)
	if err != nil {
		if ticket != nil {
			ticket.Release()
		}
		s.log.Debug("upgrade failed", "err", err)
		return
	}
	if gerr != nil {
		// Per-address cap: a browser cannot read an HTTP status, so
		// refuse with a close code it can see.
		s.metrics.ConnRefused("address_full")
		go closeRefused(conn, ws.CodeTryAgainLater, "too many connections from this address")
		return
	}
	if aerr != nil {
		ticket.Release()
		code, msg := ws.CodeAuthInvalid, "invalid credentials"
		if errors.Is(aerr, auth.ErrMissing) {
			code, msg = ws.CodeAuthRequired, "authentication required"
		}
		s.metrics.ConnRefused(ws.CodeLabel(code))
		go closeRefused(conn, code, msg)
		return
	}
	sess, serr := s.env.Open(conn, id, ticket)
	if serr != nil {
		s.metrics.ConnRefused("too_many_connections")
		go closeRefused(conn, ws.CodePolicy, "too many connections for this user")
		return
	}
	h := &served{s: s, sess: sess, conn: conn}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		sess.End("") // never served: releases the quota and the ticket
		go closeRefused(conn, ws.CodeRestart, "service restart: reconnect")
		return
	}
	s.sessions[h] = int(s.connSeq.Load() % pingSlots)
	s.wg.Add(1)
	s.mu.Unlock()
	sess.Start()
	// After the welcome (the first frame), before Closed can run.
	h.unreads = s.reads.Register(id.User, conn)
	s.transport.Serve(conn, h)
}

// served lets the transport drive a session: it reads the connection
// (with no goroutine while the connection is idle) and hands each message
// to the session.
type served struct {
	s    *Service
	sess *session.Session
	conn *ws.Conn
	// unreads ends the connection's place among the user's connections
	// that unread frames reach.
	unreads func()
}

// Message implements ws.Handler.
func (h *served) Message(m ws.Message) {
	if m.Op == gws.OpBinary {
		h.sess.Binary()
		return
	}
	h.sess.Handle(h.s.base, m.Payload)
}

// Closed implements ws.Handler: the socket is finished (queued frames
// written, TCP closed), then the session releases everything it held
// (guarantee 8).
func (h *served) Closed() {
	s := h.s
	defer s.wg.Done()
	h.conn.Finish()
	h.sess.End(h.conn.CloseReason())
	h.unreads()
	s.mu.Lock()
	delete(s.sessions, h)
	s.mu.Unlock()
}

// closeRefused closes a connection that is not served with code and waits
// for the close handshake.
func closeRefused(conn *ws.Conn, code uint16, reason string) {
	conn.Close(code, reason)
	for {
		if _, err := conn.Read(); err != nil {
			break
		}
	}
	conn.Finish()
}
