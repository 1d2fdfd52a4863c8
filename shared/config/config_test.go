package config

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/shared/provision"
)

func TestEnvDefaultsAndFlags(t *testing.T) {
	env := map[string]string{"HUBBUB_A": "from-env", "HUBBUB_D": "3s", "HUBBUB_N": "7"}
	f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var a, b string
	var d time.Duration
	var n int
	f.String(&a, "a", "HUBBUB_A", "def", "")
	f.String(&b, "b", "HUBBUB_B", "def", "")
	f.Duration(&d, "d", "HUBBUB_D", time.Second, "")
	f.Int(&n, "n", "HUBBUB_N", 1, "")
	if err := f.Parse([]string{"-n", "9"}); err != nil {
		t.Fatal(err)
	}
	if a != "from-env" || b != "def" || d != 3*time.Second || n != 9 {
		t.Fatalf("got a=%q b=%q d=%v n=%d", a, b, d, n)
	}
}

func TestBadEnvFails(t *testing.T) {
	f := NewWithLookup("t", func(k string) (string, bool) { return "soon", k == "HUBBUB_D" })
	var d time.Duration
	f.Duration(&d, "d", "HUBBUB_D", time.Second, "")
	if err := f.Parse(nil); err == nil {
		t.Fatal("bad duration in the environment was accepted")
	}
}

func TestChoice(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
		ok   bool
	}{
		{nil, nil, "a", true},
		{map[string]string{"HUBBUB_C": "b"}, nil, "b", true},
		{map[string]string{"HUBBUB_C": "b"}, []string{"-c", "a"}, "a", true},
		{map[string]string{"HUBBUB_C": "z"}, nil, "", false},
		{nil, []string{"-c", "z"}, "", false},
	} {
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var v string
		f.Choice(&v, "c", "HUBBUB_C", "a", []string{"a", "b"}, "")
		err := f.Parse(c.args)
		if c.ok && (err != nil || v != c.want) {
			t.Errorf("env %v args %v: %q, %v; want %q", c.env, c.args, v, err, c.want)
		}
		// (the flag package does not wrap a Set error: only the text says)
		if !c.ok && (err == nil || !strings.Contains(err.Error(), ErrNotAChoice.Error())) {
			t.Errorf("env %v args %v: %v, want ErrNotAChoice", c.env, c.args, err)
		}
	}
}

// TestProvisionMode: HUBBUB_PROVISION (or -provision) reaches
// provision.Config with the logger the binary logs with; manage is the
// default and an unknown mode fails start-up.
func TestProvisionMode(t *testing.T) {
	parse := func(env map[string]string, args ...string) (Common, error) {
		f := NewWithLookup("t", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		f.SetOutput(io.Discard)
		var c Common
		c.Register(f)
		return c, f.Parse(args)
	}
	c, err := parse(nil)
	if err != nil || c.Provision().Mode != provision.ModeManage {
		t.Fatalf("default: mode %q, %v", c.Provision().Mode, err)
	}
	if c, err = parse(map[string]string{"HUBBUB_PROVISION": "verify"}); err != nil || c.Provision().Mode != provision.ModeVerify {
		t.Fatalf("HUBBUB_PROVISION=verify: mode %q, %v", c.Provision().Mode, err)
	}
	if c, err = parse(map[string]string{"HUBBUB_PROVISION": "verify"}, "-provision", "off"); err != nil || c.Provision().Mode != provision.ModeOff {
		t.Fatalf("-provision off: mode %q, %v", c.Provision().Mode, err)
	}
	if _, err = parse(map[string]string{"HUBBUB_PROVISION": "never"}); !errors.Is(err, ErrNotAChoice) || !strings.Contains(err.Error(), "HUBBUB_PROVISION") {
		t.Fatalf("HUBBUB_PROVISION=never: %v", err)
	}
	if _, err = parse(nil, "-provision", "update"); err == nil || !strings.Contains(err.Error(), ErrNotAChoice.Error()) {
		t.Fatalf("-provision update: %v", err)
	}
	c, _ = parse(nil)
	log, err := c.Logger(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Provision().Log != log {
		t.Fatal("Provision does not log through the logger Logger built")
	}
}
