package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/coord"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/worker"
	"github.com/hubbub-chat/hubbub/shared/names"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// History seeds Rooms rooms with PerRoom messages each through JetStream,
// waits until the history service has stored them, then has Concurrency
// request loops (spread over the workers) read `recent` pages of Limit
// messages for Duration.
type History struct {
	Rooms       int
	PerRoom     int
	Limit       int
	Concurrency int
	Duration    time.Duration
	// Backend labels the result ("sqlite", "postgres").
	Backend string
}

// Ingest measures how fast the history service stores a backlog: with the
// history process paused (SIGSTOP), Messages messages (spread over Rooms
// rooms) are published as fast as JetStream accepts them; then history
// resumes and the rate is Messages ÷ the time until its durable consumer
// has nothing pending — the store's rate, not the publisher's. Without a
// history process of its own (an external deployment) publishing and
// ingest overlap.
type Ingest struct {
	Messages int
	Rooms    int
	Backend  string
}

// publish sends n posts round-robin over rooms with async JetStream
// publishes and returns the last stored sequence and the elapsed time.
func publish(ctx context.Context, js jetstream.JetStream, tag string, rooms, n int) (time.Duration, error) {
	start := time.Now()
	body := "history bench message " + tag
	for i := 0; i < n; i++ {
		room := tag + "-" + strconv.Itoa(i%rooms)
		user := "bench"
		cid := tag + "." + strconv.Itoa(i)
		p, _ := json.Marshal(wire.Post{Room: room, User: user, Body: body, Kind: wire.KindMessage, TS: time.Now().UnixMilli(), CID: cid})
		msg := nats.NewMsg(subjects.Room(room))
		msg.Data = p
		msg.Header.Set(subjects.HeaderMsgID, room+"/"+names.UserToken(user)+"/"+cid)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("publish: %d acks outstanding after 2 minutes", js.PublishAsyncPending())
	}
	return time.Since(start), nil
}

// caughtUp waits until every durable consumer of the stream has no
// pending and no unacknowledged messages.
func caughtUp(ctx context.Context, js jetstream.JetStream, limit time.Duration) (time.Time, error) {
	stream, err := js.Stream(ctx, subjects.Stream)
	if err != nil {
		return time.Time{}, fmt.Errorf("stream: %w", err)
	}
	deadline := time.Now().Add(limit)
	for {
		busy, count := false, 0
		for info := range stream.ListConsumers(ctx).Info() {
			if info.Config.Durable == "" {
				continue
			}
			count++
			if info.NumPending > 0 || info.NumAckPending > 0 {
				busy = true
			}
		}
		now := time.Now()
		if count > 0 && !busy {
			return now, nil
		}
		if now.After(deadline) {
			return now, fmt.Errorf("history consumer not caught up after %v (durable consumers: %d)", limit, count)
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func connectNATS(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name("hubbub-bench"))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// Ingest runs the ingest scenario.
func (r *Runner) Ingest(ctx context.Context, t Target, in Ingest) (res Result) {
	res = Result{Scenario: "ingest", Target: t.Name + "/" + in.Backend, Started: time.Now(), LoadAvg: loadavg(),
		Params: map[string]any{"messages": in.Messages, "rooms": in.Rooms, "backend": in.Backend}}
	defer func() { res.Wall = round(time.Since(res.Started).Seconds(), 1) }()
	if err := r.ingest(ctx, t, in, &res); err != nil {
		res.Failed = err.Error()
	}
	return res
}

// ingest publishes in.Messages with history paused (when the target can
// pause it), then times history's catch-up.
func (r *Runner) ingest(ctx context.Context, t Target, in Ingest, res *Result) error {
	nc, js, err := connectNATS(t.NATSURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := caughtUp(ctx, js, time.Minute); err != nil {
		return err
	}
	hist := t.Servers["history"]
	if hist != nil {
		if err := hist.Pause(); err != nil {
			return err
		}
	}
	resumed := false
	resume := func() error {
		if hist == nil || resumed {
			return nil
		}
		resumed = true
		return hist.Resume()
	}
	defer func() { _ = resume() }()
	start := time.Now()
	pubTime, err := publish(ctx, js, r.nextTag("g"), in.Rooms, in.Messages)
	if err != nil {
		return err
	}
	res.Params["history_paused"] = hist != nil
	meter := startCPU(t, nil)
	if hist != nil {
		start = time.Now()
		if err := resume(); err != nil {
			return err
		}
	}
	done, err := caughtUp(ctx, js, 5*time.Minute)
	res.ServerCPU, _ = meter.stop(nil)
	res.PublishSec = round(float64(in.Messages)/pubTime.Seconds(), 0)
	res.IngestSec = round(float64(in.Messages)/done.Sub(start).Seconds(), 0)
	return err
}

// History runs the history-read scenario.
func (r *Runner) History(ctx context.Context, t Target, h History) (res Result) {
	res = Result{Scenario: "history", Target: t.Name + "/" + h.Backend, Started: time.Now(), LoadAvg: loadavg(),
		Params: map[string]any{"rooms": h.Rooms, "per_room": h.PerRoom, "limit": h.Limit, "concurrency": h.Concurrency, "backend": h.Backend, "duration_s": h.Duration.Seconds()}}
	defer func() { res.Wall = round(time.Since(res.Started).Seconds(), 1) }()
	if err := r.history(ctx, t, h, &res); err != nil {
		res.Failed = err.Error()
	}
	return res
}

// history fills h.Rooms rooms, waits for history to store them, then
// reads recent pages from the worker fleet for h.Duration.
func (r *Runner) history(ctx context.Context, t Target, h History, res *Result) error {
	nc, js, err := connectNATS(t.NATSURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	tag := r.nextTag("h")
	if _, err := publish(ctx, js, tag, h.Rooms, h.Rooms*h.PerRoom); err != nil {
		return err
	}
	if _, err := caughtUp(ctx, js, 2*time.Minute); err != nil {
		return err
	}
	rooms := make([]string, h.Rooms)
	for i := range rooms {
		rooms[i] = tag + "-" + strconv.Itoa(i)
	}
	pool, err := r.pool(ctx, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	st0, _ := pool.Each(worker.Command{Op: worker.OpStats})
	meter := startCPU(t, st0)
	per := coord.Split(0, h.Concurrency, pool.Len())
	cmds := make([]*worker.Command, pool.Len())
	for i, p := range per {
		if p[1] == 0 {
			continue
		}
		cmds[i] = &worker.Command{Op: worker.OpHistory, History: &worker.HistorySpec{
			NATSURL: t.NATSURL, Subject: subjects.HistoryRecent, Rooms: rooms, Concurrency: p[1], Limit: h.Limit, Duration: h.Duration,
		}}
	}
	st, err := pool.All(cmds)
	res.ServerCPU, res.GenCPU = meter.stop(st)
	m := merge(st)
	if m.elapsed > 0 {
		res.PagesPerSec = round(float64(m.pages)/m.elapsed.Seconds(), 0)
	}
	res.PageTime = quant(m.page)
	res.PageErrors = m.pageErrs
	res.Errors = m.errors
	if len(res.Errors) == 0 {
		res.Errors = nil
	}
	return err
}
