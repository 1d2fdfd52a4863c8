package userlimit

import (
	"errors"
	"testing"
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
			l := New(Config{MaxConns: 2, MessageRate: 0.001, MessageBurst: 3, JoinRate: 0.001, JoinBurst: 3, TypingRate: 0.001, TypingBurst: 3})
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
	if !l.AllowMessage("nobody") {
		t.Fatal("a user without connections is refused")
	}
}
