package history

import (
	"context"
	"errors"

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
		Description:    "Hubbub message history: recent, since, lobby",
		QueueGroup:     QueueGroup,
		Workers:        s.cfg.Workers,
		MaxQueued:      s.cfg.MaxQueued,
		MaxQueueWait:   s.cfg.MaxQueueWait,
		RequestTimeout: s.cfg.RequestTimeout,
		Envelope:       envelope,
		Observe:        s.observe,
		Log:            s.log,
	}, []microsvc.Endpoint{
		{Name: "recent", Subject: subjects.HistoryRecent, Handle: s.recent},
		{Name: "since", Subject: subjects.HistorySince, Handle: s.since},
		{Name: "lobby", Subject: subjects.HistoryLobby, Handle: s.lobby},
	})
}

// envelope answers a bad request 400 and a page the store and stream
// cannot serve yet 503, each with the error's text; the rest is the kit's
// (503 shutting down or overloaded, 500 internal error).
func envelope(err error) *microsvc.Error {
	switch {
	case errors.Is(err, request.ErrBadRequest):
		return microsvc.BadRequest(err)
	case errors.Is(err, roomlog.ErrCatchingUp):
		return microsvc.Unavailable(err)
	}
	return nil
}

// observe counts a request by endpoint and outcome (ok, bad_request,
// unavailable, error, overloaded, expired; requests refused by the
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

func (s *Service) recent(ctx context.Context, req *microsvc.Request) (any, error) {
	r, err := request.Recent(req.Data)
	if err != nil {
		return nil, err
	}
	p, err := s.reader.Recent(ctx, r.Room, r.Before, r.Limit)
	return page(p), err
}

func (s *Service) since(ctx context.Context, req *microsvc.Request) (any, error) {
	r, err := request.Since(req.Data)
	if err != nil {
		return nil, err
	}
	p, err := s.reader.Since(ctx, r.Room, r.After, r.Limit)
	return page(p), err
}

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
