package typing

import (
	"errors"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/wire"
)

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		data    string
		want    wire.TypingEvent
		wantErr bool
	}{
		{name: "on", subject: "chat.typing.general", data: `{"room":"general","user":"al","state":"on","conn":"c"}`,
			want: wire.TypingEvent{Room: "general", User: "al", State: "on", Conn: "c"}},
		{name: "room from subject", subject: "chat.typing.general", data: `{"user":"al","state":"off"}`,
			want: wire.TypingEvent{Room: "general", User: "al", State: "off"}},
		{name: "room mismatch", subject: "chat.typing.general", data: `{"room":"other","user":"al","state":"on"}`, wantErr: true},
		{name: "bad state", subject: "chat.typing.general", data: `{"user":"al","state":"maybe"}`, wantErr: true},
		{name: "no user", subject: "chat.typing.general", data: `{"state":"on"}`, wantErr: true},
		{name: "bad subject", subject: "chat.room.general", data: `{"user":"al","state":"on"}`, wantErr: true},
		{name: "bad room", subject: "chat.typing.Gen", data: `{"user":"al","state":"on"}`, wantErr: true},
		{name: "not json", subject: "chat.typing.general", data: `{`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEvent(tc.subject, []byte(tc.data))
			if tc.wantErr {
				if !errors.Is(err, ErrBadEvent) {
					t.Fatalf("err %v, want ErrBadEvent", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add("chat.typing.general", []byte(`{"room":"general","user":"al","state":"on","conn":"c"}`))
	f.Add("chat.typing.general", []byte(`{"user":"\u0000","state":"off"}`))
	f.Add("chat.typing.a-b_c", []byte(`{"room":"x","user":"y","state":"on"}`))
	f.Add("chat.typing.", []byte(`null`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		ev, err := ParseEvent(subject, data)
		if err != nil {
			return
		}
		if ev.State != wire.TypingOn && ev.State != wire.TypingOff {
			t.Fatalf("accepted state %q", ev.State)
		}
		// A parsed event names one room token and a user that encodes to a key.
		if room, user, err := splitKey(ev.Room + "." + userToken(ev.User)); err != nil || room != ev.Room || user != ev.User {
			t.Fatalf("key round trip: %q %q %v", room, user, err)
		}
	})
}
