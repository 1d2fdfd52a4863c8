package client

import (
	"context"
	"fmt"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Read marks room read up to id (a read frame; there is no ack: the
// unread frame that follows reaches every connection of the user).
func (c *Client) Read(room string, id uint64) error {
	return c.Send(wire.ClientFrame{Type: wire.TypeRead, Room: room, ID: id})
}

// AwaitUnread returns the first unread frame of room for which match is
// true (nil: any), waiting for one; other frames stay queued, in order.
func (c *Client) AwaitUnread(ctx context.Context, room string, match func(wire.Unread) bool) (wire.Unread, error) {
	var hit wire.Unread
	_, err := c.take(ctx, func(f Frame) bool {
		if f.Type != wire.TypeUnread {
			return false
		}
		var u wire.Unread
		if f.Decode(&u) != nil || u.Room != room || (match != nil && !match(u)) {
			return false
		}
		hit = u
		return true
	})
	if err != nil {
		return wire.Unread{}, fmt.Errorf("awaiting the unread of %s: %w", room, err)
	}
	return hit, nil
}
