// Package post decodes the messages stored in the CHAT stream (JSON
// wire.Post published to chat.room.<room>) into history messages. Ingest
// and the stream read path use the same decoder, so the database and the
// stream present identical rooms.
package post

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ErrUndecodable marks a stream message that is not a room message: its
// subject is not a valid room subject or its payload is not a JSON
// wire.Post. Such messages are skipped (and terminated by ingest).
var ErrUndecodable = errors.New("undecodable room message")

// Decode turns the stream message seq, published to subject at stored,
// into a message. The room comes from the subject (authoritative: it is
// what the stream sequenced), a missing kind means a chat message and a
// missing timestamp is the stream's storage time.
func Decode(seq uint64, subject string, data []byte, stored time.Time) (wire.Message, error) {
	if seq == 0 {
		return wire.Message{}, fmt.Errorf("%w: sequence 0", ErrUndecodable)
	}
	if len(subject) <= len(subjects.RoomPrefix) || subject[:len(subjects.RoomPrefix)] != subjects.RoomPrefix {
		return wire.Message{}, fmt.Errorf("%w: subject %q is not a room subject", ErrUndecodable, subject)
	}
	room := subject[len(subjects.RoomPrefix):]
	if !names.ValidRoom(room) {
		return wire.Message{}, fmt.Errorf("%w: subject %q has an invalid room", ErrUndecodable, subject)
	}
	var p wire.Post
	if err := json.Unmarshal(data, &p); err != nil {
		return wire.Message{}, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	switch p.Kind {
	case "":
		p.Kind = wire.KindMessage
	case wire.KindMessage, wire.KindSystem:
	default:
		return wire.Message{}, fmt.Errorf("%w: kind %q", ErrUndecodable, p.Kind)
	}
	if p.TS == 0 && !stored.IsZero() {
		p.TS = stored.UnixMilli()
	}
	p.Room = room
	return p.Stored(seq, 0), nil
}
