// Package pages reads a room's log for the edge: history's pages, and the
// same pages read from the CHAT stream while history does not answer. Log
// decides "history, else the stream" for every reader of pages: the
// session's history frame, the HTTP API and the fan-out hub's catch-up and
// gap fill.
package pages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Log reads a room's log: from history, else from the stream.
type Log struct {
	req *nreq.Client
	js  jetstream.JetStream
	dec roomlog.Decoder
	log *slog.Logger
}

// New returns a Log making its requests through req and reading the
// stream from the JetStream of domain (natsconn.NewJetStream); dec is
// history's rule for stored messages (its MaxBody the edges' body limit).
func New(req *nreq.Client, domain string, dec roomlog.Decoder, log *slog.Logger) (*Log, error) {
	js, err := natsconn.NewJetStream(req.Conn(), domain)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Log{req: req, js: js, dec: dec, log: log}, nil
}

// JetStream returns the JetStream handle the log reads.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Recent is the page of req.Room's messages before req.Before: history's,
// or, while history does not answer and req asks for the newest page
// (Before 0), the stream's.
func (l *Log) Recent(ctx context.Context, req wire.RecentRequest) (wire.Page, error) {
	p, err := l.HistoryRecent(ctx, req)
	if req.Before != 0 {
		return p, err
	}
	return l.orStream(ctx, "recent", p, err, func() (wire.Page, error) {
		return l.StreamRecent(ctx, l.dec, req.Room, req.Limit)
	}, "room", req.Room)
}

// ErrNotFound is returned by Message when the id is not a message
// (KindMessage or KindSystem) of the room.
var ErrNotFound = errors.New("no such message in the room")

// Message is the message id of room, folded (what a page shows for it):
// history's (hubbub.history.message), or, while history does not answer,
// the stream's. ErrNotFound when id is not a message of room.
//
// The stream fallback reads the event stored at id (a direct get), checks
// it is a message of room and folds into it (roomlog.Apply) the room's
// changes stored after it, scanning at most StreamFoldScan events: in a
// room busier than that since the message, later changes are not seen (a
// message deleted or edited after them reads as before). A change decided
// on such a stale read is still published; the fold rule ignores it
// wherever the room is read (an edit of a tombstone changes nothing).
func (l *Log) Message(ctx context.Context, room string, id uint64) (wire.Message, error) {
	m, err := nreq.Request[wire.Message](ctx, l.req, subjects.HistoryMessage, wire.MessageRequest{Room: room, ID: id})
	switch {
	case err == nil:
		if m.ID != id || m.Room != room || wire.IsChange(m.Kind) {
			return wire.Message{}, fmt.Errorf("message %d of %s: %w", id, room, ErrNotFound)
		}
		return m, nil
	case notFound(err):
		return wire.Message{}, fmt.Errorf("message %d of %s: %w: %w", id, room, ErrNotFound, err)
	case ctx.Err() != nil || nreq.Refusal(err) || errors.Is(err, context.Canceled):
		return wire.Message{}, err
	}
	l.log.Warn("history unavailable: message read from the stream", "room", room, "id", id, "err", err)
	m, serr := l.streamMessage(ctx, room, id)
	if serr != nil && !errors.Is(serr, ErrNotFound) {
		return wire.Message{}, fmt.Errorf("history: %w; stream: %w", err, serr)
	}
	return m, serr
}

// notFound reports whether err is history's not_found answer: a 404
// refusal, or a refusal whose description starts with the wire code.
func notFound(err error) bool {
	var se *nreq.ServiceError
	return errors.As(err, &se) && (se.Code == 404 || se.Code >= 400 && se.Code < 500 && strings.HasPrefix(se.Description, wire.CodeNotFound))
}

// streamMessage reads the event stored at id from the CHAT stream and
// returns it when it is a message (KindMessage, KindSystem) of room that
// the decoder accepts, unfolded (see Message).
func (l *Log) streamMessage(ctx context.Context, room string, id uint64) (wire.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, l.req.Timeout())
	defer cancel()
	st, err := l.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return wire.Message{}, nreq.Classify(subjects.Stream, err)
	}
	// A direct get when the stream allows them (CHAT does): any replica
	// answers, no consumer is made.
	raw, err := st.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return wire.Message{}, fmt.Errorf("message %d of %s: %w", id, room, ErrNotFound)
	}
	if err != nil {
		return wire.Message{}, nreq.Classify(subjects.Room(room), err)
	}
	if raw.Subject != subjects.Room(room) {
		return wire.Message{}, fmt.Errorf("message %d of %s: %w (it is on %s)", id, room, ErrNotFound, raw.Subject)
	}
	m, err := l.dec.Decode(raw.Sequence, raw.Subject, raw.Data, raw.Time)
	if err != nil || wire.IsChange(m.Kind) {
		return wire.Message{}, fmt.Errorf("message %d of %s: %w", id, room, ErrNotFound)
	}
	err = roomlog.NewReader(l.req.Conn(), l.js, subjects.Stream).ScanRoom(ctx, l.dec, room, id+1, StreamFoldScan, func(ev wire.Message) bool {
		if ev.Target == id {
			roomlog.Apply(&m, ev)
		}
		return true
	})
	if err != nil && !errors.Is(err, roomlog.ErrScanLimit) {
		return wire.Message{}, nreq.Classify(subjects.Room(room), err)
	}
	return m, nil
}

// StreamFoldScan bounds the events Message reads after a message, from
// the stream, to fold its changes in.
const StreamFoldScan = 10000

// Since is the page of req.Room's messages after req.After: history's,
// or the stream's while history does not answer.
func (l *Log) Since(ctx context.Context, req wire.SinceRequest) (wire.Page, error) {
	p, err := l.HistorySince(ctx, req)
	return l.orStream(ctx, "since", p, err, func() (wire.Page, error) {
		return l.StreamSince(ctx, l.dec, req.Room, req.After, req.Limit)
	}, "room", req.Room, "after", req.After)
}

// orStream is the one decision: history's page p (err its failure), or
// the page stream reads. A read is not retried on the stream when it
// succeeded, when the caller is gone, or when history refused the request
// itself. read ("recent", "since") and attrs name the read in the warning.
func (l *Log) orStream(ctx context.Context, read string, p wire.Page, err error, stream func() (wire.Page, error), attrs ...any) (wire.Page, error) {
	if err == nil || ctx.Err() != nil || nreq.Refusal(err) || errors.Is(err, context.Canceled) {
		return p, err
	}
	l.log.Warn("history unavailable: "+read+" page served from the stream", append(attrs, "err", err)...)
	p, serr := stream()
	if serr != nil {
		return wire.Page{}, fmt.Errorf("history: %w; stream: %w", err, serr)
	}
	return p, nil
}

// HistoryRecent asks history alone for a page of messages before
// req.Before.
func (l *Log) HistoryRecent(ctx context.Context, req wire.RecentRequest) (wire.Page, error) {
	p, err := nreq.Request[wire.Page](ctx, l.req, subjects.HistoryRecent, req)
	return withLast(p, 0), err
}

// HistorySince asks history alone for messages after req.After.
func (l *Log) HistorySince(ctx context.Context, req wire.SinceRequest) (wire.Page, error) {
	p, err := nreq.Request[wire.Page](ctx, l.req, subjects.HistorySince, req)
	if p.Recovered {
		return withLast(p, req.After), err
	}
	return withLast(p, 0), err
}

// withLast makes sure p.Last accounts for p's items and floor (a page's
// cursor is never before its newest item, nor before the since cursor it
// continues), for a history that does not send Last.
func withLast(p wire.Page, floor uint64) wire.Page {
	p.Last = max(p.Last, floor)
	if n := len(p.Items); n > 0 {
		p.Last = max(p.Last, p.Items[n-1].ID)
	}
	return p
}

// Lobby asks history for the most recently active rooms (the stream has
// no such index: there is no fallback).
func (l *Log) Lobby(ctx context.Context, req wire.LobbyRequest) (wire.LobbyReply, error) {
	return nreq.Request[wire.LobbyReply](ctx, l.req, subjects.HistoryLobby, req)
}

// LastID returns the id of the newest message of room in the stream (0
// when it has none).
func (l *Log) LastID(ctx context.Context, room string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.req.Timeout())
	defer cancel()
	s, err := l.js.Stream(ctx, subjects.Stream)
	if err != nil {
		return 0, nreq.Classify(subjects.Stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subjects.Room(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, nreq.Classify(subjects.Room(room), err)
	}
	return m.Sequence, nil
}
