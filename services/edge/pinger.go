package edge

import (
	"context"

	"github.com/hubbub-chat/hubbub/services/edge/internal/ws"
	"github.com/hubbub-chat/hubbub/shared/loops"
)

// pingSlots spread the pings of one interval: each connection is pinged
// in its slot (its ping slot in Service.sessions).
const pingSlots = 8

// pinger is the "pinger" loop: it pings every connection once per
// WS.PingInterval, one slot of them per PingInterval/pingSlots.
func (s *Service) pinger(ctx context.Context) error {
	var slot int
	var batch []*ws.Conn
	return loops.Every(ctx, s.cfg.WS.PingInterval/pingSlots, func(context.Context) {
		slot = (slot + 1) % pingSlots
		batch = batch[:0]
		s.mu.Lock()
		for h, sl := range s.sessions {
			if sl == slot {
				batch = append(batch, h.conn)
			}
		}
		s.mu.Unlock()
		for _, c := range batch {
			c.Ping()
		}
		clear(batch)
	})
}
