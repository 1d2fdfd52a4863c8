package userlimit

import (
	"errors"
	"testing"
	"time"
)

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		take  func(*User) bool
		burst int
	}{
		{"messages", (*User).AllowMessage, 3},
		{"joins", (*User).AllowJoin, 3},
		{"typing", (*User).AllowTyping, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Config{MaxConns: 2, Rates: Rates{MessageRate: 0.001, MessageBurst: 3, JoinRate: 0.001, JoinBurst: 3, TypingRate: 0.001, TypingBurst: 3}})
			a, err := l.Acquire("amy")
			if err != nil {
				t.Fatal(err)
			}
			b, err := l.Acquire("amy")
			if err != nil {
				t.Fatal(err)
			}
			// The budget is shared by both connections.
			for i := range tc.burst {
				u := a
				if i%2 == 1 {
					u = b
				}
				if !tc.take(u) {
					t.Fatalf("token %d refused", i)
				}
			}
			if tc.take(a) || tc.take(b) {
				t.Fatal("budget not shared across connections")
			}
			// Another user has its own budget.
			c, err := l.Acquire("bob")
			if err != nil || !tc.take(c) {
				t.Fatalf("bob: %v", err)
			}
			a.Release()
			b.Release()
			c.Release()
			if n := l.Users(); n != 0 {
				t.Fatalf("%d users left", n)
			}
		})
	}
}

func TestMaxConns(t *testing.T) {
	l := New(Config{MaxConns: 2})
	a, _ := l.Acquire("amy")
	if _, err := l.Acquire("amy"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("amy"); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("third connection: %v, want ErrTooManyConns", err)
	}
	a.Release()
	if _, err := l.Acquire("amy"); err != nil {
		t.Fatalf("after a release: %v", err)
	}
}

// Posts of a user without any connection (HTTP only) draw on the user's
// budget too, and closing the last connection does not refill it.
func TestMessagesWithoutConnection(t *testing.T) {
	l := New(Config{Rates: Rates{MessageRate: 0.001, MessageBurst: 3}})
	for i := range 3 {
		if !l.AllowMessage("amy") {
			t.Fatalf("post %d refused", i)
		}
	}
	if l.AllowMessage("amy") {
		t.Fatal("HTTP posts beyond the burst accepted for a user with no connection")
	}
	if l.Users() != 0 || l.Entries() != 1 {
		t.Fatalf("users %d entries %d, want 0 and 1", l.Users(), l.Entries())
	}
	// A connection opened and closed meanwhile neither resets nor leaks.
	u, err := l.Acquire("amy")
	if err != nil {
		t.Fatal(err)
	}
	if u.AllowMessage() {
		t.Fatal("a new connection got a fresh budget")
	}
	u.Release()
	if l.AllowMessage("amy") {
		t.Fatal("closing the connection refilled the budget")
	}
}

// Entries of users without connections go once their budgets are full.
func TestIdleEntriesSwept(t *testing.T) {
	l := New(Config{Rates: Rates{MessageRate: 1000, MessageBurst: 1}})
	for i := range 50 {
		l.AllowMessage(string(rune('a'+i%26)) + "x")
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.Entries() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle entries never swept", l.Entries())
		}
		time.Sleep(50 * time.Millisecond)
		l.AllowMessage("probe") // sweeping is lazy, on use
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Rates: Rates{JoinBurst: 7}}.WithDefaults()
	want := Config{MaxConns: DefaultMaxConns, Rates: Rates{
		MessageRate: DefaultMessageRate, MessageBurst: DefaultMessageBurst,
		JoinRate: DefaultJoinRate, JoinBurst: 7,
		TypingRate: DefaultTypingRate, TypingBurst: DefaultTypingBurst,
	}}
	if c != want {
		t.Fatalf("defaults %+v, want %+v", c, want)
	}
}
