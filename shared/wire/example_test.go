package wire_test

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

// A client frame is parsed and validated in one call; what is accepted is
// normalised: the room folded to its canonical name, the body trimmed.
func ExampleParseClientFrame() {
	f, err := wire.ParseClientFrame([]byte(`{"type":"message","room":"#General","body":"  hello  ","cid":"c1"}`), wire.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s in %s: %q (cid %s)\n", f.Type, f.Room, f.Body, f.CID)

	h, _ := wire.ParseClientFrame([]byte(`{"type":"history","room":"general","before":120}`), wire.Limits{})
	fmt.Printf("%s of %s before %d, %d at most\n", h.Type, h.Room, h.Before, h.Limit)
	// Output:
	// message in general: "hello" (cid c1)
	// history of general before 120, 50 at most
}

// A refused frame gives the error frame to send back, echoing the cid and
// room as far as they could be read.
func ExampleParseClientFrame_refused() {
	enc := json.NewEncoder(os.Stdout)
	for _, in := range []string{
		`{"type":"message","room":"general","body":"   ","cid":"c2"}`,
		`{"type":"typing","room":"general","state":"maybe"}`,
		`{"type":"dance"}`,
		`[1,2]`,
	} {
		f, err := wire.ParseClientFrame([]byte(in), wire.Limits{})
		if err == nil {
			fmt.Println("accepted", in)
			continue
		}
		_ = enc.Encode(err.Frame(f.CID, f.Room))
	}
	// Output:
	// {"type":"error","code":"invalid_body","message":"message body is empty","cid":"c2","room":"general"}
	// {"type":"error","code":"invalid_state","message":"typing state must be \"on\" or \"off\"","room":"general"}
	// {"type":"error","code":"unknown_type","message":"unknown frame type \"dance\""}
	// {"type":"error","code":"bad_json","message":"frame is not a JSON object"}
}

// A post published to chat.room.<room> becomes a message once JetStream
// stores it: its id is the stream sequence, prev the room's previous id.
// The edge sends it to every member of the room as a message frame.
func ExamplePost_Stored() {
	p := wire.Post{Room: "general", User: "alice", Body: "hello", Kind: wire.KindMessage, TS: 1700000000000, CID: "c1"}
	m := p.Stored(42, 17)
	b, err := json.Marshal(wire.MessageFrame{Type: wire.TypeMessage, Room: m.Room, Message: m})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output:
	// {"type":"message","room":"general","message":{"id":42,"prev":17,"room":"general","user":"alice","body":"hello","kind":"message","ts":1700000000000,"cid":"c1"}}
}

// The body rule every tier applies, edge and history alike.
func ExampleCheckBody() {
	for _, body := range []string{"hi\n\tthere", "", "a\x00b", "\x1b[2J", "too long"} {
		limit := 0 // DefaultMaxBody
		if body == "too long" {
			limit = 3
		}
		if err := wire.CheckBody(body, limit); err != nil {
			fmt.Printf("%q: %v\n", body, err)
			continue
		}
		fmt.Printf("%q: ok\n", body)
	}
	// Output:
	// "hi\n\tthere": ok
	// "": invalid_body: message body is empty
	// "a\x00b": invalid_body: message body contains control character U+0000
	// "\x1b[2J": invalid_body: message body contains control character U+001B
	// "too long": invalid_body: message body is 8 characters, the limit is 3
}
