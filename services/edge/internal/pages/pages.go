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
	return nreq.Request[wire.Page](ctx, l.req, subjects.HistoryRecent, req)
}

// HistorySince asks history alone for messages after req.After.
func (l *Log) HistorySince(ctx context.Context, req wire.SinceRequest) (wire.Page, error) {
	return nreq.Request[wire.Page](ctx, l.req, subjects.HistorySince, req)
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
