package provision

import "testing"

func TestSubjectCovers(t *testing.T) {
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"chat.room.*", "chat.room.*", true},
		{"chat.room.>", "chat.room.*", true},
		{">", "chat.room.*", true},
		{"chat.*.*", "chat.room.*", true},
		{"chat.room.general", "chat.room.*", false},
		{"chat.room", "chat.room.*", false},
		{"chat.room.*.x", "chat.room.*", false},
		{"chat.live.*", "chat.room.*", false},
		{"chat.room.*", "chat.room.>", false},
		{"chat.>", "chat", false},
	} {
		if got := subjectCovers(c.filter, c.subject); got != c.want {
			t.Errorf("subjectCovers(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}
