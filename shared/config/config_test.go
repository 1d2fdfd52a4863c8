package config

import (
	"testing"
	"time"
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
