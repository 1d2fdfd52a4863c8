package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/services/edge/client"
	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsembed"
	"github.com/hubbub-chat/hubbub/shared/provision"
	"github.com/hubbub-chat/hubbub/shared/wire"
)

// ExampleDial talks to a real edge: bob joins a room, alice joins it and
// says something, alice gets her ack and bob the message. (The edge runs on
// an embedded NATS server without a history service, so it reads each
// join's page from the stream itself.)
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, stop, err := startEdge(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	join := func(user string) (*client.Client, error) {
		c, err := client.Dial(ctx, "ws://"+addr+"/ws?user="+user, client.Options{})
		if err != nil {
			return nil, err
		}
		w, err := c.Welcome(ctx)
		if err != nil {
			c.Close()
			return nil, err
		}
		h, err := c.Join(ctx, "general", nil)
		if err != nil {
			c.Close()
			return nil, err
		}
		fmt.Printf("%s joined #%s: %d messages (protocol %d)\n", w.User, h.Room, len(h.Items), w.Protocol)
		return c, nil
	}
	bob, err := join("bob")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	alice, err := join("alice")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()

	// Say waits for the ack; every other frame that arrives meanwhile
	// (alice's own copy of the message included) stays queued for Next.
	id, err := alice.Say(ctx, "general", "hello, world", "c1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("alice's message acked as", id)

	f, err := bob.Await(ctx, wire.TypeMessage)
	if err != nil {
		fmt.Println(err)
		return
	}
	var m wire.MessageFrame
	if err := f.Decode(&m); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("bob got #%s %d (after %d) %s: %s\n", m.Room, m.Message.ID, m.Message.Prev, m.Message.User, m.Message.Body)
	// Output:
	// bob joined #general: 0 messages (protocol 1)
	// alice joined #general: 0 messages (protocol 1)
	// alice's message acked as 1
	// bob got #general 1 (after 0) alice: hello, world
}

// ExampleFrame_Decode reads a frame by its type, then decodes it into the
// matching wire type.
func ExampleFrame_Decode() {
	raw := []byte(`{"type":"history","room":"general","items":[` +
		`{"id":7,"prev":3,"room":"general","user":"bob","body":"hi","kind":"message","ts":1700000000000},` +
		`{"id":9,"prev":7,"room":"general","user":"alice","body":"hello","kind":"message","ts":1700000001000}],` +
		`"has_more":true,"recovered":true}`)
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		fmt.Println(err)
		return
	}
	f := client.Frame{Type: head.Type, Raw: raw}
	switch f.Type {
	case wire.TypeHistory:
		var h wire.History
		if err := f.Decode(&h); err != nil {
			fmt.Println(err)
			return
		}
		for _, m := range h.Items {
			fmt.Printf("%d (after %d) %s: %s\n", m.ID, m.Prev, m.User, m.Body)
		}
		fmt.Println("older messages:", h.HasMore)
	}

	// A frame that does not fit its type is an error naming the type.
	bad := client.Frame{Type: wire.TypeAck, Raw: []byte(`{"type":"ack","id":"seven"}`)}
	var a wire.Ack
	fmt.Println(bad.Decode(&a) != nil)
	// Output:
	// 7 (after 3) bob: hi
	// 9 (after 7) alice: hello
	// older messages: true
	// true
}

// startEdge runs an embedded NATS server with Hubbub's stream and buckets
// and an edge on 127.0.0.1, until stop.
func startEdge(ctx context.Context) (addr string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "hubbub-client-example-")
	if err != nil {
		return "", nil, err
	}
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	undo = append(undo, func() { _ = os.RemoveAll(dir) })
	fail := func(err error) (string, func(), error) { stop(); return "", nil, err }

	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fail(err)
	}
	undo = append(undo, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	if err := provision.Ensure(ctx, js, provision.Config{}); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	svc, err := edge.New(edge.Config{Listener: ln, DrainPeriod: 100 * time.Millisecond},
		edge.Deps{NC: nc, Log: logging.Discard(), Registry: prometheus.NewRegistry()})
	if err != nil {
		_ = ln.Close()
		return fail(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	undo = append(undo, func() { cancel(); <-done })
	for svc.Ready() != nil {
		select {
		case <-ctx.Done():
			return fail(errors.Join(ctx.Err(), svc.Ready()))
		case err := <-done:
			done <- err
			return fail(fmt.Errorf("edge stopped: %w", err))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return svc.Addr(), stop, nil
}

// ExampleClient_Write is a conversation: each write (a message, a reply,
// an edit, a reaction, a delete) is acked with its own event id, and every
// member gets each event live, on the room's one chain. A page folds them
// (a join after them shows the edited message with its reaction, and the
// deleted reply as a tombstone) and its last is the newest event.
func ExampleClient_Write() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr, stop, err := startEdge(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	dial := func(user string) *client.Client {
		c, err := client.Dial(ctx, "ws://"+addr+"/ws?user="+user, client.Options{})
		if err != nil {
			panic(err)
		}
		if _, err := c.Join(ctx, "general", nil); err != nil {
			panic(err)
		}
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	defer alice.Close()
	defer bob.Close()

	must := func(id uint64, err error) uint64 {
		if err != nil {
			panic(err)
		}
		return id
	}
	hello := must(alice.Say(ctx, "general", "hello @bob", "c1"))
	reply := must(bob.Reply(ctx, "general", hello, "hi!", "c2"))
	must(alice.Edit(ctx, "general", hello, "hello @bob, welcome", "c3"))
	must(bob.React(ctx, "general", hello, "👋", true, "c4"))
	must(bob.Delete(ctx, "general", reply, "c5"))
	// Editing someone else's message is refused; the connection goes on.
	_, err = bob.Edit(ctx, "general", hello, "hijacked", "c6")
	fmt.Println("bob's edit of alice's message:", err)

	for range 5 {
		f, err := alice.Await(ctx, wire.TypeMessage)
		if err != nil {
			panic(err)
		}
		var m wire.MessageFrame
		if err := f.Decode(&m); err != nil {
			panic(err)
		}
		ev := m.Message
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%d (after %d) %s %s target=%d %q %s", ev.ID, ev.Prev, ev.User, ev.Kind, ev.Target, ev.Body, ev.Emoji)))
	}
	// A page folds the changes into the messages they change.
	carol, err := client.Dial(ctx, "ws://"+addr+"/ws?user=carol", client.Options{})
	if err != nil {
		panic(err)
	}
	defer carol.Close()
	page, err := carol.Join(ctx, "general", nil)
	if err != nil {
		panic(err)
	}
	for _, m := range page.Items {
		fmt.Printf("page: %d %s %q edited=%v deleted=%v reactions=%v reply_to=%d\n", m.ID, m.User, m.Body, m.Edited != 0, m.Deleted, m.Reactions, m.ReplyTo)
	}
	fmt.Println("page last:", page.Last)
	// Output:
	// bob's edit of alice's message: forbidden: only its author may edit a message
	// 1 (after 0) alice message target=0 "hello @bob"
	// 2 (after 1) bob message target=0 "hi!"
	// 3 (after 2) alice edit target=1 "hello @bob, welcome"
	// 4 (after 3) bob reaction target=1 "" 👋
	// 5 (after 4) bob delete target=2 ""
	// page: 1 alice "hello @bob, welcome" edited=true deleted=false reactions=[{👋 1 [bob]}] reply_to=0
	// page: 2 bob "" edited=false deleted=true reactions=[] reply_to=1
	// page last: 5
}
