package roomlog

// Decoding: the messages stored in the CHAT stream (JSON wire.Post
// published to chat.room.<room>) become wire.Messages by one rule. History's
// ingest, history's stream reads and the edge (its stream fallback and live
// delivery) use the same decoder, so the database, the stream and live
// delivery present identical rooms: a message the decoder refuses is in
// none of them.

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
// wire.Post. Every read path skips such messages; ingest parks them.
var ErrUndecodable = errors.New("undecodable room message")

// ErrInvalid marks a room message that decodes but breaks the rule every
// tier applies to what it keeps (guarantee 9): its trimmed body fails
// wire.CheckBody (empty, too long, a control character such as U+0000),
// or its user or cid holds U+0000. The edge refuses such posts; anything
// else that publishes one to a room subject has it parked by ingest and
// skipped by every read path.
var ErrInvalid = errors.New("invalid room message")

// Decoder decodes stream messages under one body limit.
type Decoder struct {
	// MaxBody is the longest body in characters after trimming (0:
	// wire.DefaultMaxBody). It must be at least the edges' limit, or
	// messages the edges accepted are parked.
	MaxBody int
}

// Decode decodes with the default body limit (Decoder{}.Decode).
func Decode(seq uint64, subject string, data []byte, stored time.Time) (wire.Message, error) {
	return Decoder{}.Decode(seq, subject, data, stored)
}

// Decode turns the stream message seq, published to subject at stored,
// into a message. The room comes from the subject (authoritative: it is
// what the stream sequenced), a missing kind means a chat message and a
// missing timestamp is the stream's storage time. It fails with
// ErrUndecodable for what is not a room message and ErrInvalid for a room
// message that breaks the message rule.
func (d Decoder) Decode(seq uint64, subject string, data []byte, stored time.Time) (wire.Message, error) {
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
	return d.DecodeIn(room, seq, data, stored)
}

// DecodeIn is Decode for a message known to belong to room (a valid room
// name), such as one republished on chat.live.<room>: the payload rule is
// Decode's, the room is room whatever the payload says.
func (d Decoder) DecodeIn(room string, seq uint64, data []byte, stored time.Time) (wire.Message, error) {
	if seq == 0 {
		return wire.Message{}, fmt.Errorf("%w: sequence 0", ErrUndecodable)
	}
	var p wire.Post
	if err := json.Unmarshal(data, &p); err != nil {
		return wire.Message{}, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	switch p.Kind {
	case "":
		p.Kind = wire.KindMessage
	case wire.KindMessage, wire.KindSystem, wire.KindEdit, wire.KindDelete, wire.KindReaction:
	default:
		return wire.Message{}, fmt.Errorf("%w: kind %q", ErrUndecodable, p.Kind)
	}
	if e := wire.CheckPost(p, d.MaxBody); e != nil {
		return wire.Message{}, fmt.Errorf("%w: %s", ErrInvalid, e.Message)
	}
	if p.TS == 0 && !stored.IsZero() {
		p.TS = stored.UnixMilli()
	}
	p.Room = room
	return p.Stored(seq, 0), nil
}
