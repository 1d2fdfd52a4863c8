package nreq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hubbub-chat/hubbub/services/edge/internal/nreq"
	"github.com/hubbub-chat/hubbub/shared/natstest"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

type echo struct {
	Text string `json:"text"`
	ID   string `json:"id,omitempty"`
}

func connect(t *testing.T) *nats.Conn {
	t.Helper()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// A reply is decoded, the request id travels in its header, a service's
// error envelope is a ServiceError (a refusal when 4xx), and a subject
// nobody serves is ErrUnavailable.
func TestRequest(t *testing.T) {
	nc := connect(t)
	if _, err := nc.Subscribe("t.echo", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"text":"hi","id":"` + m.Header.Get(subjects.HeaderRequestID) + `"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("t.refuse", func(m *nats.Msg) {
		_ = m.RespondMsg(&nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: []string{"400"}, micro.ErrorHeader: []string{"bad"}}})
	}); err != nil {
		t.Fatal(err)
	}
	c := nreq.New(nc, time.Second)
	if c.Timeout() != time.Second || c.Conn() != nc {
		t.Fatal("client does not keep its settings")
	}
	ctx := nreq.WithRequestID(context.Background(), "req-1")
	if nreq.RequestID(ctx) != "req-1" || nreq.RequestID(context.Background()) != "" {
		t.Fatal("request id not carried")
	}
	got, err := nreq.Request[echo](ctx, c, "t.echo", echo{Text: "x"})
	if err != nil || got.Text != "hi" || got.ID != "req-1" {
		t.Fatalf("echo: %+v, %v", got, err)
	}
	_, err = nreq.Request[echo](ctx, c, "t.refuse", echo{})
	var se *nreq.ServiceError
	if !errors.As(err, &se) || se.Code != 400 || se.Description != "bad" || !nreq.Refusal(err) {
		t.Fatalf("refusal: %v", err)
	}
	_, err = nreq.Request[echo](ctx, c, "t.nobody", echo{})
	if !errors.Is(err, nreq.ErrUnavailable) || nreq.Refusal(err) {
		t.Fatalf("no responders: %v", err)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if nreq.New(nc, 0).Timeout() != nreq.DefaultTimeout {
		t.Fatal("zero timeout is not the default")
	}
}

func TestClassify(t *testing.T) {
	if err := nreq.Classify("s", context.DeadlineExceeded); !errors.Is(err, nreq.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	other := errors.New("other")
	if err := nreq.Classify("s", other); errors.Is(err, nreq.ErrUnavailable) || !errors.Is(err, other) {
		t.Fatalf("other: %v", err)
	}
}
