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

// ErrNotAChoice is a value that is not one of a Choice flag's choices.
var ErrNotAChoice = errors.New("not one of the choices")

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
	if v, ok := f.lookup(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		} else {
			def = n
		}
	}
	f.IntVar(p, name, def, usage+" ($"+env+")")
}

// Float defines a float64 flag defaulting to $env or def.
func (f *Flags) Float(p *float64, name, env string, def float64, usage string) {
	if v, ok := f.lookup(env); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		} else {
			def = x
		}
	}
	f.Float64Var(p, name, def, usage+" ($"+env+")")
}

// Duration defines a duration flag defaulting to $env or def.
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := f.lookup(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		} else {
			def = d
		}
	}
	f.DurationVar(p, name, def, usage+" ($"+env+")")
}

// Bool defines a bool flag defaulting to $env or def.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := f.lookup(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("$%s=%q: %w", env, v, err))
		} else {
			def = b
		}
	}
	f.BoolVar(p, name, def, usage+" ($"+env+")")
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
