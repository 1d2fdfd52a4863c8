package history

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/hubbub-chat/hubbub/services/history/internal/reply"
	"github.com/hubbub-chat/hubbub/services/history/internal/request"
	"github.com/hubbub-chat/hubbub/shared/microsvc"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// serve starts the micro service on the kit: requests are handled on up to
// cfg.Workers goroutines, queued at most cfg.MaxQueued deep and
// cfg.MaxQueueWait long, and Stop refuses the queued ones (the edge falls
// back to the stream).
func (s *Service) serve() (*microsvc.Server, error) {
	return microsvc.Start(s.nc, microsvc.Config{
		Name:           subjects.HistoryService,
		Version:        Version,
		Description:    "Hubbub message history: recent, since, lobby, message, unread",
		QueueGroup:     QueueGroup,
		Workers:        s.cfg.Workers,
		MaxQueued:      s.cfg.MaxQueued,
		MaxQueueWait:   s.cfg.MaxQueueWait,
		RequestTimeout: s.cfg.RequestTimeout,
		Envelope:       envelope,
		Observe:        s.observe,
		Log:            s.log,
	}, []microsvc.Endpoint{
		{Name: "recent", Subject: subjects.HistoryRecent, Handle: pageHandler(request.Recent, s.recent)},
		{Name: "since", Subject: subjects.HistorySince, Handle: pageHandler(request.Since, s.since)},
		{Name: "lobby", Subject: subjects.HistoryLobby, Handle: s.lobby},
		{Name: "message", Subject: subjects.HistoryMessage, Handle: s.message},
		{Name: "unread", Subject: subjects.HistoryUnread, Handle: s.unread},
	})
}

// startServing starts the endpoints and marks the service serving once
// the server has their subscriptions: before that it must not call itself
// ready. A failed flush only delays readiness.
func (s *Service) startServing(ctx context.Context) (*microsvc.Server, error) {
	srv, err := s.serve()
	if err != nil {
		return nil, err
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	err = s.nc.FlushWithContext(fctx)
	fcancel()
	if err != nil && ctx.Err() == nil {
		s.log.Warn("history: flush subscriptions", "err", err)
	}
	s.serving.Store(true)
	return srv, nil
}

// stopServing stops the endpoints: running requests finish (each within
// RequestTimeout) and queued ones are refused; past twice that bound
// their contexts are cancelled.
func (s *Service) stopServing(srv *microsvc.Server) {
	s.serving.Store(false)
	sctx, scancel := context.WithTimeout(context.Background(), 2*s.cfg.RequestTimeout)
	defer scancel()
	if err := srv.Stop(sctx); err != nil {
		s.log.Warn("history: stop serving", "err", err)
	}
}

// CodeNotFound is the error envelope's status (Nats-Service-Error-Code)
// of a message request naming no message of the room; the body is a
// wire.ErrorFrame with code wire.CodeNotFound.
const CodeNotFound = "404"

// envelope answers a bad request 400, a message request for no message
// 404 not_found, and a page the store and stream cannot serve yet 503,
// each with the error's text; the rest is the kit's (503 shutting down or
// overloaded, 500 internal error).
func envelope(err error) *microsvc.Error {
	switch {
	case errors.Is(err, request.ErrBadRequest):
		return microsvc.BadRequest(err)
	case errors.Is(err, roomlog.ErrNotFound):
		body, _ := json.Marshal(wire.ErrorFrame{Type: wire.TypeError, Code: wire.CodeNotFound, Message: err.Error()})
		return &microsvc.Error{Code: CodeNotFound, Description: err.Error(), Body: body, Err: err}
	case errors.Is(err, roomlog.ErrCatchingUp):
		return microsvc.Unavailable(err)
	}
	return nil
}

// observe counts a request by endpoint and outcome (ok, bad_request,
// not_found, unavailable, error, overloaded, expired; requests refused by the
// shutdown are not counted) and times the ones served.
func (s *Service) observe(o microsvc.Outcome) {
	var outcome string
	switch {
	case o.Err == nil:
		outcome = "ok"
	case errors.Is(o.Err, microsvc.ErrShuttingDown):
		return
	case errors.Is(o.Err, microsvc.ErrExpired):
		outcome = "expired"
	case errors.Is(o.Err, microsvc.ErrOverloaded):
		outcome = "overloaded"
	case o.Reply != nil && o.Reply.Code == microsvc.CodeBadRequest:
		outcome = "bad_request"
	case o.Reply != nil && o.Reply.Code == microsvc.CodeUnavailable:
		outcome = "unavailable"
	case o.Reply != nil && o.Reply.Code == CodeNotFound:
		outcome = "not_found"
	default:
		outcome = "error"
	}
	s.m.Requests.WithLabelValues(o.Endpoint, outcome).Inc()
	if o.Ran {
		s.m.RequestSeconds.WithLabelValues(o.Endpoint).Observe(o.Took.Seconds())
	}
}

// page is a page reply, encoded by the reply package (every recent and
// since reply is one).
type page wire.Page

// AppendJSON implements microsvc.Appender.
func (p page) AppendJSON(dst []byte) []byte { return reply.AppendPage(dst, wire.Page(p)) }

// pageHandler serves a page request: decode parses and checks the body
// (a request.ErrBadRequest is answered 400), read reads the page.
func pageHandler[R any](decode func([]byte) (R, error), read func(context.Context, R) (wire.Page, error)) microsvc.Handler {
	return func(ctx context.Context, req *microsvc.Request) (any, error) {
		r, err := decode(req.Data)
		if err != nil {
			return nil, err
		}
		p, err := read(ctx, r)
		return page(p), err
	}
}

// recent reads a recent page.
func (s *Service) recent(ctx context.Context, r wire.RecentRequest) (wire.Page, error) {
	return s.reader.Recent(ctx, r.Room, r.Before, r.Limit)
}

// since reads a since page.
func (s *Service) since(ctx context.Context, r wire.SinceRequest) (wire.Page, error) {
	return s.reader.Since(ctx, r.Room, r.After, r.Limit)
}

// lobby answers a lobby request.
func (s *Service) lobby(ctx context.Context, req *microsvc.Request) (any, error) {
	r, err := request.Lobby(req.Data)
	if err != nil {
		return nil, err
	}
	rooms, err := s.st.Lobby(ctx, r.Limit)
	if err != nil {
		return nil, err
	}
	return wire.LobbyReply{Rooms: rooms}, nil
}

// message answers a message request: the folded message, read as pages
// are (stored, else from the stream above the watermark, so a message
// acknowledged a moment ago is found), or 404 not_found.
func (s *Service) message(ctx context.Context, req *microsvc.Request) (any, error) {
	r, err := request.Message(req.Data)
	if err != nil {
		return nil, err
	}
	m, err := s.reader.Message(ctx, r.Room, r.ID)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// unread answers an unread request from the store.
func (s *Service) unread(ctx context.Context, req *microsvc.Request) (any, error) {
	r, err := request.Unread(req.Data)
	if err != nil {
		return nil, err
	}
	rooms, err := s.st.Unread(ctx, r.User, r.Rooms)
	if err != nil {
		return nil, err
	}
	return wire.UnreadReply{Rooms: rooms}, nil
}
