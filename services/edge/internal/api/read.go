package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Reads is the read state the API uses (readstate.Service implements it).
type Reads interface {
	// Mark moves the user's mark in room forward to id (never back).
	Mark(ctx context.Context, user, room string, id uint64) (bool, error)
	// Counts is the user's unread state in the rooms that count for them.
	Counts(ctx context.Context, user string, rooms []string) (map[string]wire.UnreadCount, error)
}

// ReadRequest is the body of PUT /api/rooms/{room}/read.
type ReadRequest struct {
	ID uint64 `json:"id"`
}

// maxReadBytes bounds the body of a read request.
const maxReadBytes = 1 << 10

// read marks a room read up to an id for the caller, as a read frame does
// (the token's room rule; the rules of a post for a cookie). 204: stored,
// or already read further; the unread frame follows on the caller's
// WebSockets.
func (a *API) read(w http.ResponseWriter, r *http.Request) {
	room, id, ok := a.readableRoom(w, r)
	if !ok {
		return
	}
	if id.Ambient && !a.sameSite(w, r) {
		return
	}
	var req ReadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReadBytes)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, wire.Errorf(wire.CodeBadJSON, "body must be a JSON object {\"id\":N}"))
		return
	}
	if _, e := wire.CheckClientFrame(wire.ClientFrame{Type: wire.TypeRead, Room: room, ID: req.ID}, a.sessions.Config.Limits); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	if a.reads == nil {
		writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "read state is not kept here"))
		return
	}
	if _, err := a.reads.Mark(r.Context(), id.User, room, req.ID); err != nil {
		if !errors.Is(err, context.Canceled) {
			a.log.Warn("read mark failed", "room", room, "err", err)
			writeError(w, http.StatusServiceUnavailable, wire.Errorf(wire.CodeUnavailable, "read mark not stored; try again"))
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// addUnread fills the caller's unread and mentions in lobby (one history
// request); without them (history down) the lobby still answers, with 0.
func (a *API) addUnread(ctx context.Context, user string, rooms []wire.RoomSummary) {
	if a.reads == nil || len(rooms) == 0 {
		return
	}
	names := make([]string, len(rooms))
	for i, rs := range rooms {
		names[i] = rs.Room
	}
	counts, err := a.reads.Counts(ctx, user, names)
	if err != nil {
		a.log.Warn("lobby without unread counts", "err", err)
		return
	}
	for i := range rooms {
		c := counts[rooms[i].Room]
		rooms[i].Unread, rooms[i].Mentions = c.Count, c.Mentions
	}
}
