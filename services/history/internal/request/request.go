// Package request decodes and validates the bodies of history's
// request-reply endpoints (wire.RecentRequest, wire.SinceRequest,
// wire.LobbyRequest, wire.MessageRequest, wire.UnreadRequest). Anything that fails here is answered with a 400.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hubbub-chat/hubbub/services/history/internal/store"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrBadRequest marks a request body that cannot be served.
var ErrBadRequest = errors.New("bad request")

// Page sizes.
const (
	// DefaultLimit is the page size when a request names none.
	DefaultLimit = wire.DefaultPage
	// MaxLimit is the largest page served; larger limits are clamped.
	MaxLimit = wire.DefaultMaxPage
	// MaxLobby is the most rooms a lobby reply lists.
	MaxLobby = 200
	// MaxBody is the largest request body accepted.
	MaxBody = 4096
	// MaxUnreadBody is the largest unread request body accepted: it
	// lists up to MaxUnreadRooms read marks.
	MaxUnreadBody = 128 << 10
	// MaxUnreadRooms is the most rooms one unread request may ask about
	// (the store's bound).
	MaxUnreadRooms = store.MaxUnreadRooms
)

func decode(data []byte, v any) error { return decodeN(data, v, MaxBody) }

func decodeN(data []byte, v any, maxBody int) error {
	if len(data) > maxBody {
		return fmt.Errorf("%w: body is %d bytes, the limit is %d", ErrBadRequest, len(data), maxBody)
	}
	// Unmarshal refuses trailing data after the value, as it must.
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: body is not a JSON object: %w", ErrBadRequest, err)
	}
	return nil
}

func room(s string) (string, error) {
	r, err := names.Room(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return r, nil
}

func limit(n, def, maxN int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: limit %d is negative", ErrBadRequest, n)
	case n == 0:
		return def, nil
	default:
		return min(n, maxN), nil
	}
}

// roomPage decodes a page request into v and normalises its room and
// limit, which point into v.
func roomPage(data []byte, v any, roomName *string, n *int) error {
	if err := decode(data, v); err != nil {
		return err
	}
	var err error
	if *roomName, err = room(*roomName); err != nil {
		return err
	}
	*n, err = limit(*n, DefaultLimit, MaxLimit)
	return err
}

// Recent decodes a recent request: the room normalised, the limit
// defaulted and clamped.
func Recent(data []byte) (wire.RecentRequest, error) {
	var r wire.RecentRequest
	err := roomPage(data, &r, &r.Room, &r.Limit)
	return r, err
}

// Since decodes a since request, as Recent.
func Since(data []byte) (wire.SinceRequest, error) {
	var r wire.SinceRequest
	err := roomPage(data, &r, &r.Room, &r.Limit)
	return r, err
}

// Lobby decodes a lobby request; an empty body asks for the default.
func Lobby(data []byte) (wire.LobbyRequest, error) {
	var r wire.LobbyRequest
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decode(data, &r); err != nil {
			return r, err
		}
	}
	var err error
	if r.Limit, err = limit(r.Limit, DefaultLimit, MaxLobby); err != nil {
		return r, err
	}
	return r, nil
}

// Message decodes a message request: the room normalised, the id not 0.
func Message(data []byte) (wire.MessageRequest, error) {
	var r wire.MessageRequest
	if err := decode(data, &r); err != nil {
		return r, err
	}
	var err error
	if r.Room, err = room(r.Room); err != nil {
		return r, err
	}
	if r.ID == 0 {
		return r, fmt.Errorf("%w: id is 0", ErrBadRequest)
	}
	return r, nil
}

// Unread decodes an unread request: a valid user and at most
// MaxUnreadRooms rooms, each normalised.
func Unread(data []byte) (wire.UnreadRequest, error) {
	var r wire.UnreadRequest
	if err := decodeN(data, &r, MaxUnreadBody); err != nil {
		return r, err
	}
	u, err := names.User(r.User)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	r.User = u
	if len(r.Rooms) > MaxUnreadRooms {
		return r, fmt.Errorf("%w: %d rooms, the limit is %d", ErrBadRequest, len(r.Rooms), MaxUnreadRooms)
	}
	for i := range r.Rooms {
		if r.Rooms[i].Room, err = room(r.Rooms[i].Room); err != nil {
			return r, err
		}
	}
	return r, nil
}
