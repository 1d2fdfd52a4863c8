package presence

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// handleConn queues a join or leave request on the worker of its room and
// user.
func (s *Service) handleConn(event string) micro.HandlerFunc {
	return func(req micro.Request) {
		ev, werr := parseConnEvent(req.Data())
		if werr != nil {
			s.fail(req, event, "400", werr)
			return
		}
		s.gate.RLock()
		defer s.gate.RUnlock()
		if s.gateClosed {
			s.fail(req, event, "503", wire.Errorf(wire.CodeUnavailable, "presence is shutting down"))
			return
		}
		select {
		case s.shard(ev.Room, ev.User) <- job{req: detach(s.nc, req), event: event, ev: ev}:
		case <-s.stopping:
			s.fail(req, event, "503", wire.Errorf(wire.CodeUnavailable, "presence is shutting down"))
		}
	}
}

// logged logs each request at debug level with the request id the edge
// sent (Hubbub-Request-Id), so an edge's log line can be followed here.
func (s *Service) logged(endpoint string, h micro.HandlerFunc) micro.HandlerFunc {
	return func(req micro.Request) {
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("presence: request", "endpoint", endpoint, "request_id", req.Headers().Get(subjects.HeaderRequestID))
		}
		h(req)
	}
}

// handleRoster answers a page of a room's roster from the view.
func (s *Service) handleRoster(req micro.Request) {
	r, werr := parseRosterRequest(req.Data())
	if werr != nil {
		s.fail(req, "roster", "400", werr)
		return
	}
	users, online, next := s.view.Page(r.Room, r.After, r.Limit)
	s.reply(req, "roster", wire.RosterReply{Room: r.Room, Users: users, Online: online, Next: next})
}

// handleCounts answers online counts of several rooms from the view.
func (s *Service) handleCounts(req micro.Request) {
	r, werr := parseCountsRequest(req.Data())
	if werr != nil {
		s.fail(req, "counts", "400", werr)
		return
	}
	s.reply(req, "counts", wire.CountsReply{Counts: s.view.Counts(r.Rooms)})
}

// handleTyping lists the users typing in a room.
func (s *Service) handleTyping(req micro.Request) {
	r, werr := parseTypingRequest(req.Data())
	if werr != nil {
		s.fail(req, "typing", "400", werr)
		return
	}
	s.reply(req, "typing", wire.TypingStateReply{Room: r.Room, Users: s.typing.Typists(r.Room)})
}

// responder answers a request: a micro.Request inside its handler, a
// detachedRequest after the handler has returned.
type responder interface {
	Respond(data []byte, opts ...micro.RespondOpt) error
	Error(code, description string, data []byte, opts ...micro.RespondOpt) error
}

// detachedRequest answers a micro request after its handler has returned.
// micro.Request must not be used then: the service reads its error state for
// stats once the handler returns, so replies from workers go straight to the
// request's reply subject, in micro's format.
type detachedRequest struct {
	nc      *nats.Conn
	subject string
}

func detach(nc *nats.Conn, req micro.Request) detachedRequest {
	return detachedRequest{nc: nc, subject: req.Reply()}
}

// Respond publishes data as the reply.
func (d detachedRequest) Respond(data []byte, opts ...micro.RespondOpt) error {
	msg := &nats.Msg{Subject: d.subject, Data: data}
	for _, o := range opts {
		o(msg)
	}
	if err := d.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

// Error publishes an error reply with micro's error headers.
func (d detachedRequest) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	msg := &nats.Msg{Subject: d.subject, Data: data, Header: nats.Header{
		micro.ErrorHeader:     []string{description},
		micro.ErrorCodeHeader: []string{code},
	}}
	for _, o := range opts {
		o(msg)
	}
	if err := d.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

func (s *Service) reply(req responder, endpoint string, v any) {
	body, err := json.Marshal(v)
	if err == nil {
		err = req.Respond(body)
	}
	if err != nil {
		s.log.Warn("respond", "endpoint", endpoint, "err", err)
	}
}

// fail answers with a micro error: status is an HTTP-like code ("400",
// "500", "503") in the Nats-Service-Error-Code header, the description is
// "<wire code>: <message>", and the body is a wire.ErrorFrame.
func (s *Service) fail(req responder, endpoint, status string, werr *wire.Error) {
	s.metrics.requestErrors.WithLabelValues(endpoint, werr.Code).Inc()
	body, err := json.Marshal(werr.Frame("", ""))
	if err != nil {
		body = nil
	}
	if err := req.Error(status, werr.Error(), body); err != nil {
		s.log.Warn("respond error", "endpoint", endpoint, "err", err)
	}
}
