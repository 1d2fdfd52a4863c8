package roster

import (
	"errors"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/names"
)

func TestDecode(t *testing.T) {
	key := Key("general", "alice")
	tests := []struct {
		name    string
		key     string
		data    string
		wantErr bool
		conns   int
	}{
		{name: "valid", key: key, data: `{"user":"alice","conns":{"c1":"e1"},"epoch":"x","since":1}`, conns: 1},
		{name: "no conns", key: key, data: `{"user":"alice","epoch":"x","empty_since":5}`},
		{name: "user does not match key", key: key, data: `{"user":"bob","conns":{}}`, wantErr: true},
		{name: "empty user", key: Key("general", "x")[:len("general.")] + "AA", data: `{"user":""}`, wantErr: true},
		{name: "not json", key: key, data: `nope`, wantErr: true},
		{name: "bad key", key: "general", data: `{"user":"alice"}`, wantErr: true},
		{name: "bad room in key", key: "Gen." + names.UserToken("alice"), data: `{"user":"alice"}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Decode(tc.key, []byte(tc.data))
			if tc.wantErr {
				if !errors.Is(err, ErrBadEntry) {
					t.Fatalf("err %v, want ErrBadEntry", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(e.Conns) != tc.conns || e.Conns == nil {
				t.Errorf("conns %v", e.Conns)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("general."+names.UserToken("alice"), []byte(`{"user":"alice","conns":{"c1":"e1"},"epoch":"x","since":1}`))
	f.Add("general."+names.UserToken("a b"), []byte(`{"user":"a b","conns":null,"leaving":3}`))
	f.Add("x.y.z", []byte(`{}`))
	f.Add("", []byte(``))
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		e, err := Decode(key, data)
		if err != nil {
			return
		}
		// A decoded entry re-encodes and decodes to the same user.
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := Decode(key, b)
		if err != nil || e2.User != e.User || len(e2.Conns) != len(e.Conns) {
			t.Fatalf("round trip: %+v %v", e2, err)
		}
	})
}
