package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/shared/logging"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, format, level string
		// check inspects the output of an info and a debug line.
		check func(t *testing.T, out string)
	}{
		{
			name: "default is JSON at info", format: "", level: "info",
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 1 {
					t.Fatalf("%d lines, want the info line only:\n%s", len(lines), out)
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				if rec["level"] != "INFO" || rec["msg"] != "hello" || rec["k"] != "v" {
					t.Errorf("record %v", rec)
				}
			},
		},
		{
			name: "json at debug", format: "json", level: "debug",
			check: func(t *testing.T, out string) {
				if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, `"level":"DEBUG"`) {
					t.Errorf("want the info and the debug line as JSON:\n%s", out)
				}
			},
		},
		{
			name: "text, level in capitals", format: "text", level: "WARN",
			check: func(t *testing.T, out string) {
				if out != "" {
					t.Errorf("info and debug logged at warn:\n%s", out)
				}
			},
		},
		{
			name: "text at info", format: "text", level: "info",
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "level=INFO msg=hello k=v") || strings.Contains(out, "DEBUG") {
					t.Errorf("want one text line at info:\n%s", out)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := logging.New(&buf, tt.format, tt.level)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("hello", "k", "v")
			log.Debug("details")
			tt.check(t, buf.String())
		})
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct{ format, level, want string }{
		{"json", "verbose", `log level "verbose"`},
		{"logfmt", "info", `log format "logfmt": want json or text`},
	}
	for _, tt := range tests {
		log, err := logging.New(&bytes.Buffer{}, tt.format, tt.level)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q) = %v, %v; want an error containing %q", tt.format, tt.level, log, err, tt.want)
		}
	}
}

func TestDiscard(t *testing.T) {
	log := logging.Discard()
	if log.Enabled(context.Background(), 1<<10) {
		t.Error("Discard is enabled")
	}
	log.Error("dropped") // must not panic
}
