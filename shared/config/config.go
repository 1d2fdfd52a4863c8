// Package config reads HUBBUB_* environment variables as the defaults of
// command-line flags, so every setting can be given either way and a bad
// value fails start-up loudly instead of being ignored.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors of Parse for values of the wrong form.
var (
	// ErrNotAChoice is a value that is not one of a Choice flag's choices.
	ErrNotAChoice = errors.New("not one of the choices")
	// ErrNotASize is a Bytes flag's value that is not a size.
	ErrNotASize = errors.New("not a size in bytes (e.g. 1073741824, 512M, 10G; -1: no limit)")
)

// Flags wraps a FlagSet whose defaults come from the environment.
type Flags struct {
	*flag.FlagSet
	lookup func(string) (string, bool)
	errs   []error
}

// New returns Flags reading the process environment.
func New(name string) *Flags {
	return NewWithLookup(name, os.LookupEnv)
}

// NewWithLookup returns Flags reading variables through lookup (tests).
func NewWithLookup(name string, lookup func(string) (string, bool)) *Flags {
	return &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), lookup: lookup}
}

// String defines a string flag defaulting to $env or def.
func (f *Flags) String(p *string, name, env, def, usage string) {
	if v, ok := f.lookup(env); ok {
		def = v
	}
	f.StringVar(p, name, def, usage+" ($"+env+")")
}

// Int defines an int flag defaulting to $env or def.
func (f *Flags) Int(p *int, name, env string, def int, usage string) {
	f.IntVar(p, name, envDefault(f, env, def, strconv.Atoi), usage+" ($"+env+")")
}

// Float defines a float64 flag defaulting to $env or def.
func (f *Flags) Float(p *float64, name, env string, def float64, usage string) {
	f.Float64Var(p, name, envDefault(f, env, def, parseFloat), usage+" ($"+env+")")
}

// Duration defines a duration flag defaulting to $env or def.
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	f.DurationVar(p, name, envDefault(f, env, def, time.ParseDuration), usage+" ($"+env+")")
}

// Bool defines a bool flag defaulting to $env or def.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	f.BoolVar(p, name, envDefault(f, env, def, strconv.ParseBool), usage+" ($"+env+")")
}

// envDefault is def, or $env parsed by parse when it is set; a value
// that does not parse is kept for Parse to report, and def is used.
func envDefault[T any](f *Flags, env string, def T, parse func(string) (T, error)) T {
	v, ok := f.lookup(env)
	if !ok {
		return def
	}
	x, err := parse(v)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		return def
	}
	return x
}

func parseFloat(s string) (float64, error) { return strconv.ParseFloat(s, 64) }

// Bytes defines a size flag defaulting to $env or def: a number of bytes
// with an optional binary suffix K, M, G or T (also KiB … TiB; 1G =
// 1024³ bytes), or -1. A value of another form, in the environment or on
// the command line, fails Parse with ErrNotASize.
func (f *Flags) Bytes(p *int64, name, env string, def int64, usage string) {
	v := (*bytesValue)(p)
	*p = def
	if e, ok := f.lookup(env); ok {
		if err := v.Set(e); err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s: %w", env, err))
		}
	}
	f.Var(v, name, usage+" ($"+env+")")
}

// bytesValue is the flag.Value of a Bytes flag.
type bytesValue int64

func (b *bytesValue) String() string {
	if b == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *bytesValue) Set(s string) error {
	n, err := ParseBytes(s)
	if err != nil {
		return err
	}
	*b = bytesValue(n)
	return nil
}

// ParseBytes reads a size: a whole number of bytes with an optional
// binary suffix K, M, G or T (or KiB, MiB, GiB, TiB; case-insensitive, 1K
// = 1024), or -1 (no limit). Anything else fails with ErrNotASize.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "-1" {
		return -1, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	num, suffix := t, ""
	if i >= 0 {
		num, suffix = t[:i], strings.TrimSpace(t[i:])
	}
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "kib": 10, "m": 20, "mib": 20, "g": 30, "gib": 30, "t": 40, "tib": 40}
	sh, ok := shift[suffix]
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n > (1<<63-1)>>sh {
		return 0, fmt.Errorf("%q: %w", s, ErrNotASize)
	}
	return n << sh, nil
}

// Choice defines a string flag that must be one of choices, defaulting to
// $env or def. A value outside choices, in the environment or on the
// command line, fails Parse with ErrNotAChoice.
func (f *Flags) Choice(p *string, name, env, def string, choices []string, usage string) {
	v := &choice{p: p, choices: choices}
	*p = def
	if e, ok := f.lookup(env); ok {
		if err := v.Set(e); err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s: %w", env, err))
		}
	}
	f.Var(v, name, usage+" ("+strings.Join(choices, ", ")+"; $"+env+")")
}

// choice is the flag.Value of a Choice flag.
type choice struct {
	p       *string
	choices []string
}

func (c *choice) String() string {
	if c == nil || c.p == nil {
		return ""
	}
	return *c.p
}

func (c *choice) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("%q: %w (%s)", s, ErrNotAChoice, strings.Join(c.choices, ", "))
	}
	*c.p = s
	return nil
}

// Parse parses args and reports every bad environment value and flag.
func (f *Flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	return errors.Join(f.errs...)
}
