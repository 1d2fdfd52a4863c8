package defaults_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/defaults"
)

func TestPositive(t *testing.T) {
	cases := []struct {
		in, def, want time.Duration
	}{
		{0, time.Second, time.Second},
		{-1, time.Second, time.Second},
		{time.Millisecond, time.Second, time.Millisecond},
	}
	for _, c := range cases {
		v := c.in
		defaults.Positive(&v, c.def)
		if v != c.want {
			t.Errorf("Positive(%v, %v) = %v, want %v", c.in, c.def, v, c.want)
		}
	}
	f := 0.5
	defaults.Positive(&f, 2)
	if f != 0.5 {
		t.Errorf("a positive float was replaced: %v", f)
	}
}

func ExamplePositive() {
	type Config struct{ Workers int }
	c := Config{}
	defaults.Positive(&c.Workers, 64)
	fmt.Println(c.Workers)
	// Output: 64
}
