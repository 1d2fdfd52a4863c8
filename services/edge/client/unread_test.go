package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Read sends a read frame; AwaitUnread returns the matching unread frame
// of the room and leaves the others queued, in order.
func TestAwaitUnreadKeepsOtherFrames(t *testing.T) {
	url := scriptedServer(t, func(f wire.ClientFrame) []any {
		if f.Type != wire.TypeRead {
			return nil
		}
		return []any{
			wire.Unread{Type: wire.TypeUnread, Room: "other", Read: f.ID},
			wire.Unread{Type: wire.TypeUnread, Room: f.Room, Read: f.ID - 1, Count: 2},
			wire.Unread{Type: wire.TypeUnread, Room: f.Room, Read: f.ID},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Read("general", 9); err != nil {
		t.Fatal(err)
	}
	u, err := c.AwaitUnread(ctx, "general", func(u wire.Unread) bool { return u.Read == 9 })
	if err != nil || u.Room != "general" || u.Count != 0 {
		t.Fatalf("AwaitUnread = %+v, %v; want general read 9", u, err)
	}
	for _, want := range []wire.Unread{{Room: "other", Read: 9}, {Room: "general", Read: 8, Count: 2}} {
		f, err := c.Next(ctx)
		var got wire.Unread
		if err != nil || f.Decode(&got) != nil || got.Room != want.Room || got.Read != want.Read || got.Count != want.Count {
			t.Fatalf("next frame %s (%v), want %+v", f.Raw, err, want)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := c.AwaitUnread(short, "general", nil); err == nil {
		t.Fatal("AwaitUnread returned a frame that was already taken")
	}
}
