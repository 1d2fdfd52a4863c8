package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/history/reply"
	"github.com/hubbub-chat/hubbub/services/history/request"
	"github.com/hubbub-chat/hubbub/shared/roomlog"
	"github.com/hubbub-chat/hubbub/shared/subjects"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// Micro error codes.
const (
	codeBadRequest  = "400"
	codeInternal    = "500"
	codeUnavailable = "503"
)

// inflight tracks the requests being handled. Once closed it admits no
// more: micro drains its subscriptions asynchronously, so the handler can
// still be called after Stop returned, and every Add must happen before
// the final Wait.
type inflight struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// add admits a request unless closed.
func (f *inflight) add() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

// done ends an admitted request.
func (f *inflight) done() { f.wg.Done() }

// closeAndWait refuses further requests and waits for the admitted ones.
func (f *inflight) closeAndWait() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// serve registers the micro service. Requests are handled on up to
// cfg.Workers goroutines, tracked by the returned inflight.
func (s *Service) serve(ctx context.Context) (micro.Service, *inflight, error) {
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        subjects.HistoryService,
		Version:     Version,
		Description: "Hubbub message history: recent, since, lobby",
		QueueGroup:  QueueGroup,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("history micro service: %w", err)
	}
	reqs := &inflight{}
	sem := make(chan struct{}, s.cfg.Workers)
	endpoints := []struct {
		name, subject string
		fn            func(context.Context, []byte) (any, error)
	}{
		{"recent", subjects.HistoryRecent, s.recent},
		{"since", subjects.HistorySince, s.since},
		{"lobby", subjects.HistoryLobby, s.lobby},
	}
	for _, e := range endpoints {
		h := s.handler(ctx, e.name, e.fn, sem, reqs)
		if err := svc.AddEndpoint(e.name, h, micro.WithEndpointSubject(e.subject), micro.WithEndpointQueueGroup(QueueGroup)); err != nil {
			_ = svc.Stop()
			return nil, nil, fmt.Errorf("history endpoint %s: %w", e.name, err)
		}
	}
	return svc, reqs, nil
}

func (s *Service) handler(ctx context.Context, name string, fn func(context.Context, []byte) (any, error),
	sem chan struct{}, reqs *inflight) micro.HandlerFunc {
	return func(req micro.Request) {
		// The handler never blocks (a blocked handler leaves requests
		// queued in the subscription, unseen and unaged): each request
		// gets its worker goroutine at once, which waits for a slot.
		arrived := time.Now()
		if ctx.Err() != nil || !reqs.add() {
			_ = req.Error(codeUnavailable, "history is shutting down", nil)
			return
		}
		// micro.Request is not safe to use after the handler returns (the
		// service reads its error state for stats), so the worker replies
		// straight to the request's reply subject; data and reply subject
		// are immutable.
		r := asyncReply{nc: s.nc, subject: req.Reply()}
		if s.queued.Add(1) > int64(s.cfg.MaxQueued) {
			s.queued.Add(-1)
			reqs.done()
			s.m.Requests.WithLabelValues(name, "overloaded").Inc()
			r.fail(codeUnavailable, "history is overloaded")
			return
		}
		data := req.Data()
		rid := req.Headers().Get(subjects.HeaderRequestID)
		go func() {
			defer reqs.done()
			select {
			case sem <- struct{}{}:
				s.queued.Add(-1)
			case <-ctx.Done():
				s.queued.Add(-1)
				r.fail(codeUnavailable, "history is shutting down")
				return
			}
			defer func() { <-sem }()
			if waited := time.Since(arrived); waited > s.cfg.MaxQueueWait {
				// Its requester is giving up: answer at once and spend
				// the slot on a request still wanted.
				s.m.Requests.WithLabelValues(name, "expired").Inc()
				r.fail(codeUnavailable, fmt.Sprintf("history is overloaded (request waited %s)", waited.Round(time.Millisecond)))
				return
			}
			start := time.Now()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
			defer cancel()
			out, err := fn(rctx, data)
			s.log.Debug("history: request", "endpoint", name, "request_id", rid, "err", err)
			outcome := "ok"
			if err == nil {
				err = s.respond(r, out)
				if err != nil {
					outcome = "error"
					s.log.Warn("history: respond", "endpoint", name, "request_id", rid, "err", err)
				}
			} else {
				switch {
				case errors.Is(err, request.ErrBadRequest):
					outcome = "bad_request"
					r.fail(codeBadRequest, err.Error())
				case errors.Is(err, roomlog.ErrCatchingUp):
					outcome = "unavailable"
					r.fail(codeUnavailable, err.Error())
				default:
					outcome = "error"
					s.log.Error("history: request failed", "endpoint", name, "request_id", rid, "err", err)
					r.fail(codeInternal, "history: internal error")
				}
			}
			s.m.Requests.WithLabelValues(name, outcome).Inc()
			s.m.RequestSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}()
	}
}

// respond sends out as JSON: pages (every recent and since reply) through
// the reply encoder into a pooled buffer, anything else through
// encoding/json. The connection copies the body before Respond returns.
func (s *Service) respond(req asyncReply, out any) error {
	page, ok := out.(wire.Page)
	if !ok {
		body, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode reply: %w", err)
		}
		return req.respond(body)
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = reply.AppendPage((*buf)[:0], page)
	err := req.respond(*buf)
	if cap(*buf) <= maxPooledReply {
		s.bufs.Put(buf)
	}
	return err
}

// asyncReply answers a micro request from a worker goroutine, in the
// format micro.Request uses (errors in the Nats-Service-Error headers).
type asyncReply struct {
	nc      *nats.Conn
	subject string
}

// respond publishes body as the reply.
func (r asyncReply) respond(body []byte) error {
	if err := r.nc.Publish(r.subject, body); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

// fail publishes an error reply; a failed publish is the requester's
// timeout, so it is only logged by the caller's metrics.
func (r asyncReply) fail(code, description string) {
	_ = r.nc.PublishMsg(&nats.Msg{
		Subject: r.subject,
		Header: nats.Header{
			micro.ErrorHeader:     []string{description},
			micro.ErrorCodeHeader: []string{code},
		},
	})
}

// maxPooledReply is the largest reply buffer kept for reuse.
const maxPooledReply = 1 << 20

func (s *Service) recent(ctx context.Context, data []byte) (any, error) {
	r, err := request.Recent(data)
	if err != nil {
		return nil, err
	}
	return s.reader.Recent(ctx, r.Room, r.Before, r.Limit)
}

func (s *Service) since(ctx context.Context, data []byte) (any, error) {
	r, err := request.Since(data)
	if err != nil {
		return nil, err
	}
	return s.reader.Since(ctx, r.Room, r.After, r.Limit)
}

func (s *Service) lobby(ctx context.Context, data []byte) (any, error) {
	r, err := request.Lobby(data)
	if err != nil {
		return nil, err
	}
	rooms, err := s.st.Lobby(ctx, r.Limit)
	if err != nil {
		return nil, err
	}
	return wire.LobbyReply{Rooms: rooms}, nil
}
