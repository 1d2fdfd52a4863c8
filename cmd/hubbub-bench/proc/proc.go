// Package proc reads process figures from Linux: resident memory and CPU
// time of any process (/proc/<pid>/status and /proc/<pid>/stat), and the
// CPU time of the calling process (getrusage).
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrFormat is returned when a /proc file does not look as expected.
var ErrFormat = errors.New("proc: unexpected format")

// clockTick is USER_HZ, fixed at 100 on every Linux architecture Go supports.
const clockTick = 100

// RSS returns the resident set size of pid in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrFormat, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmRSS %q: %w", ErrFormat, f[0], err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS for %d", ErrFormat, pid)
}

// CPU is consumed processor time.
type CPU struct {
	User time.Duration `json:"user_ns"`
	Sys  time.Duration `json:"sys_ns"`
}

// Total is User + Sys.
func (c CPU) Total() time.Duration { return c.User + c.Sys }

// Sub returns c - o.
func (c CPU) Sub(o CPU) CPU { return CPU{User: c.User - o.User, Sys: c.Sys - o.Sys} }

// Add returns c + o.
func (c CPU) Add(o CPU) CPU { return CPU{User: c.User + o.User, Sys: c.Sys + o.Sys} }

// PidCPU returns the CPU time pid has used (utime, stime of /proc/<pid>/stat).
func PidCPU(pid int) (CPU, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return CPU{}, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// The command name may contain spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return CPU{}, fmt.Errorf("%w: stat of %d", ErrFormat, pid)
	}
	f := bytes.Fields(b[i+1:])
	// After ")": state(3) ... utime is field 14, stime 15 (1-based over the whole line).
	if len(f) < 13 {
		return CPU{}, fmt.Errorf("%w: stat of %d has %d fields", ErrFormat, pid, len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return CPU{}, fmt.Errorf("%w: stat of %d: %w", ErrFormat, pid, err)
	}
	tick := time.Second / clockTick
	return CPU{User: time.Duration(ut) * tick, Sys: time.Duration(st) * tick}, nil
}

// Self returns the CPU time of the calling process and its peak RSS in bytes.
func Self() (CPU, int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return CPU{}, 0, fmt.Errorf("getrusage: %w", err)
	}
	return CPU{User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano())}, ru.Maxrss << 10, nil
}

// LoadAvg returns the 1-minute load average.
func LoadAvg() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, fmt.Errorf("read loadavg: %w", err)
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, fmt.Errorf("%w: loadavg %q", ErrFormat, b)
	}
	v, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return 0, fmt.Errorf("%w: loadavg: %w", ErrFormat, err)
	}
	return v, nil
}
