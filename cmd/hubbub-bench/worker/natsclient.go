package worker

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// natsClient is one core NATS connection subscribed to its room's subject:
// the messaging baseline with the same shape as the WebSocket fan-out.
type natsClient struct {
	f    *fleet
	spec *ConnectSpec
	g    int
	room string

	nc  *nats.Conn
	mu  sync.Mutex
	buf []byte
}

// subject is the baseline subject of the client's room.
func (c *natsClient) subject() string { return "bench.fanout." + c.room }

func (c *natsClient) connect() error {
	url := c.spec.URLs[c.spec.URLIndex(c.g)]
	start := time.Now()
	nc, err := nats.Connect(url, nats.Name("hubbub-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	c.nc = nc
	f := c.f
	if _, err := nc.Subscribe(c.subject(), func(m *nats.Msg) {
		f.frames.Add(1)
		rest, ok := bytes.CutPrefix(m.Data, f.bodyPrefix.Load().([]byte))
		if !ok {
			return
		}
		sent, ok := digits(firstField(rest))
		if !ok {
			return
		}
		now := time.Now().UnixNano()
		f.received.Add(1)
		f.latency.Record(time.Duration(now - sent))
		f.noteRecv(now)
	}); err != nil {
		nc.Close()
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return fmt.Errorf("flush: %w", err)
	}
	f.connectTime.Record(time.Since(start))
	return nil
}

// publish sends one stamped message (core NATS: "acked" once written).
func (c *natsClient) publish(spec *RunSpec) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := append(c.buf[:0], "bench "...)
	b = append(b, spec.Tag...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	if len(b) < spec.BodySize {
		b = append(b, ' ')
	}
	for len(b) < spec.BodySize {
		b = append(b, 'x')
	}
	c.buf = b
	if err := c.nc.Publish(c.subject(), b); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	c.f.ack(c.room)
	return nil
}

func (c *natsClient) close() {
	if c.nc != nil {
		c.nc.Close()
	}
}
