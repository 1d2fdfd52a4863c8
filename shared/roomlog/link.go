package roomlog

import "github.com/hubbub-chat/hubbub/shared/wire"

// Link sets Prev along msgs (one room's messages, ascending, consecutive
// in the room): the first one's to floor (the id of the room message
// before it, 0 for none or unknown), each other's to the id before it. It
// returns msgs.
func Link(msgs []wire.Message, floor uint64) []wire.Message {
	p := floor
	for i := range msgs {
		msgs[i].Prev = p
		p = msgs[i].ID
	}
	return msgs
}
