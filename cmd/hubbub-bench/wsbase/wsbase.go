// Package wsbase is the WebSocket baseline: a minimal broadcast server on
// github.com/gobwas/ws that speaks just enough of protocol v1 (welcome,
// join, message → message to every room member + ack) for the load tool's
// clients, with no persistence, presence or NATS. Its fan-out rate is the
// limit of WebSocket delivery on this machine against which Hubbub's edge
// is compared.
package wsbase

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Server is a running baseline server.
type Server struct {
	log   *slog.Logger
	mu    sync.Mutex
	rooms map[string]*room
	seq   uint64 // guarded by mu: the global message id, like a stream sequence
	wg    sync.WaitGroup
}

type room struct {
	members map[*conn]struct{}
	last    uint64
}

type conn struct {
	nc    net.Conn
	user  string
	mu    sync.Mutex
	queue net.Buffers
	wake  chan struct{}
	rooms map[string]bool
}

// New returns a server.
func New(log *slog.Logger) *Server {
	return &Server{log: log, rooms: map[string]*room{}}
}

// Serve accepts connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, nc)
		}()
	}
}

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	c := &conn{nc: nc, wake: make(chan struct{}, 1), rooms: map[string]bool{}}
	up := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			u, err := url.ParseRequestURI(string(uri))
			if err != nil {
				return ws.RejectConnectionError(ws.RejectionStatus(400))
			}
			c.user = u.Query().Get("user")
			if c.user == "" {
				return ws.RejectConnectionError(ws.RejectionStatus(401))
			}
			return nil
		},
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := up.Upgrade(nc); err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	done, flushed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(flushed)
		c.writeLoop(done)
	}()
	defer func() {
		s.leaveAll(c)
		close(done)
		<-flushed // the reply to a close frame is the last thing written
		_ = nc.Close()
	}()
	c.sendJSON(wire.Welcome{Type: wire.TypeWelcome, User: c.user, Protocol: wire.ProtocolVersion})
	br := bufio.NewReaderSize(nc, 2048)
	hdrBuf := make([]byte, 2, 12)
	var payload []byte
	for {
		h, err := ws.ReadHeaderBuffer(br, hdrBuf)
		if err != nil || !h.Masked || h.Length > 64<<10 {
			return
		}
		if cap(payload) < int(h.Length) {
			payload = make([]byte, h.Length)
		}
		p := payload[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		ws.Cipher(p, h.Mask, 0)
		switch h.OpCode {
		case ws.OpClose:
			c.enqueue(ws.CompiledCloseNormalClosure)
			return
		case ws.OpPing:
			f := ws.NewPongFrame(append([]byte(nil), p...))
			b, _ := ws.CompileFrame(f)
			c.enqueue(b)
			continue
		case ws.OpText:
		default:
			continue
		}
		s.frame(c, p)
	}
}

func (s *Server) frame(c *conn, p []byte) {
	f, perr := wire.ParseClientFrame(p, wire.Limits{})
	if perr != nil {
		c.sendJSON(perr.Frame(f.CID, f.Room))
		return
	}
	switch f.Type {
	case wire.TypeJoin:
		s.mu.Lock()
		r := s.rooms[f.Room]
		if r == nil {
			r = &room{members: map[*conn]struct{}{}}
			s.rooms[f.Room] = r
		}
		r.members[c] = struct{}{}
		c.rooms[f.Room] = true
		s.mu.Unlock()
		c.sendJSON(wire.History{Type: wire.TypeHistory, Room: f.Room, Items: []wire.Message{}, Recovered: true})
	case wire.TypeLeave:
		s.mu.Lock()
		if r := s.rooms[f.Room]; r != nil {
			delete(r.members, c)
		}
		delete(c.rooms, f.Room)
		s.mu.Unlock()
	case wire.TypeMessage:
		s.mu.Lock()
		r := s.rooms[f.Room]
		if r == nil || !c.rooms[f.Room] {
			s.mu.Unlock()
			c.sendJSON(wire.Errorf(wire.CodeNotJoined, "join %s first", f.Room).Frame(f.CID, f.Room))
			return
		}
		s.seq++
		m := wire.Message{ID: s.seq, Prev: r.last, Room: f.Room, User: c.user, Body: f.Body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: f.CID}
		r.last = m.ID
		b, err := json.Marshal(wire.MessageFrame{Type: wire.TypeMessage, Room: f.Room, Message: m})
		if err != nil {
			s.mu.Unlock()
			return
		}
		fr, _ := ws.CompileFrame(ws.NewTextFrame(b))
		for m := range r.members {
			m.enqueue(fr)
		}
		s.mu.Unlock()
		c.sendJSON(wire.Ack{Type: wire.TypeAck, CID: f.CID, ID: m.ID})
	}
}

func (s *Server) leaveAll(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range c.rooms {
		if r := s.rooms[name]; r != nil {
			delete(r.members, c)
		}
	}
}

func (c *conn) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	fr, _ := ws.CompileFrame(ws.NewTextFrame(b))
	c.enqueue(fr)
}

// enqueue adds a compiled frame to the outbound queue and wakes the writer.
func (c *conn) enqueue(fr []byte) {
	c.mu.Lock()
	c.queue = append(c.queue, fr)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes every queued frame with one writev per wake-up; when
// done is closed it writes what is still queued and returns.
func (c *conn) writeLoop(done chan struct{}) {
	var batch net.Buffers
	for {
		closing := false
		select {
		case <-done:
			closing = true
		case <-c.wake:
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.mu.Unlock()
		if len(batch) > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			keep := batch[:0:len(batch)]
			if _, err := batch.WriteTo(c.nc); err != nil {
				_ = c.nc.Close()
				return
			}
			batch = keep
		}
		if closing {
			return
		}
	}
}
