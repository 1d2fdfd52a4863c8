// Package request decodes and validates the bodies of history's
// request-reply endpoints (wire.RecentRequest, wire.SinceRequest,
// wire.LobbyRequest). Anything that fails here is answered with a 400.
package request

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

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
)

func decode(data []byte, v any) error {
	if len(data) > MaxBody {
		return fmt.Errorf("%w: body is %d bytes, the limit is %d", ErrBadRequest, len(data), MaxBody)
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
