// Package worker runs a fleet of load clients inside one process: lean
// WebSocket clients speaking Hubbub protocol v1 (or raw NATS clients for the
// messaging baseline), driven by JSON commands read line by line from stdin
// and answered with JSON lines on stdout. The parent process (package coord)
// re-executes the tool as workers so that clients are spread over several
// processes, each under the per-process open-file limit.
package worker

import (
	"strconv"
	"time"

	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/hist"
	"github.com/hubbub-chat/hubbub/cmd/hubbub-bench/proc"
)

// Operations a Command may ask for.
const (
	OpConnect = "connect" // add the clients of Connect
	OpPrepare = "prepare" // reset the run counters and adopt Run.Tag (before OpRun on every worker)
	OpRun     = "run"     // send at the given rate, then drain; answers Stats
	OpStats   = "stats"   // answer Stats now
	OpHistory = "history" // request history pages over NATS; answers Stats
	OpClose   = "close"   // close every client and exit
)

// Client kinds.
const (
	KindWS   = "ws"   // a WebSocket client of an edge (or of the WebSocket baseline)
	KindNATS = "nats" // a core NATS client (the messaging baseline)
)

// Command is one request from the parent.
type Command struct {
	Op      string       `json:"op"`
	Connect *ConnectSpec `json:"connect,omitempty"`
	Run     *RunSpec     `json:"run,omitempty"`
	History *HistorySpec `json:"history,omitempty"`
	// KillTime (Unix ns) is when an edge was killed; Stats measures resume
	// times from it.
	KillTime int64 `json:"kill_time,omitempty"`
	// Window is the resume deadline after KillTime.
	Window time.Duration `json:"window,omitempty"`
}

// ConnectSpec describes a group of clients with global indexes
// [First, First+Count). Client g joins room RoomPrefix+(g mod Rooms) as user
// UserPrefix+g, on URLs[(g div Rooms) mod len(URLs)] unless Edge >= 0 pins
// the whole group to one URL.
type ConnectSpec struct {
	Kind       string   `json:"kind"`
	URLs       []string `json:"urls"`
	First      int      `json:"first"`
	Count      int      `json:"count"`
	Rooms      int      `json:"rooms"`
	RoomPrefix string   `json:"room_prefix"`
	UserPrefix string   `json:"user_prefix"`
	Edge       int      `json:"edge"`
	// Sender marks the group's clients as senders for OpRun.
	Sender bool `json:"sender,omitempty"`
	// Reconnect makes clients reconnect (to the next URL, after a random
	// delay up to Jitter) and resume with since when their connection drops.
	Reconnect bool          `json:"reconnect,omitempty"`
	Jitter    time.Duration `json:"jitter,omitempty"`
	// Concurrency bounds simultaneous connection attempts; Rate (per
	// second, 0 = unlimited) paces them.
	Concurrency int           `json:"concurrency,omitempty"`
	Rate        float64       `json:"rate,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
}

// Room returns the room of client g.
func (c *ConnectSpec) Room(g int) string {
	return c.RoomPrefix + strconv.Itoa(g%c.Rooms)
}

// URLIndex returns the index in URLs of the endpoint client g first uses.
func (c *ConnectSpec) URLIndex(g int) int {
	if c.Edge >= 0 {
		return c.Edge % len(c.URLs)
	}
	return (g / c.Rooms) % len(c.URLs)
}

// RunSpec asks every sender to send messages at Rate per second for
// Duration, then waits until no message of this run arrived for Quiet (at
// most Drain).
type RunSpec struct {
	Tag      string        `json:"tag"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	BodySize int           `json:"body_size"`
	Quiet    time.Duration `json:"quiet"`
	Drain    time.Duration `json:"drain"`
	// Subject is the NATS subject prefix for KindNATS senders.
	Subject string `json:"subject,omitempty"`
}

// HistorySpec asks for Concurrency request loops of history pages of Limit
// messages over NATS for Duration, cycling through Rooms.
type HistorySpec struct {
	NATSURL     string        `json:"nats_url"`
	Subject     string        `json:"subject"`
	Rooms       []string      `json:"rooms"`
	Concurrency int           `json:"concurrency"`
	Limit       int           `json:"limit"`
	Duration    time.Duration `json:"duration"`
}

// Reply answers a Command.
type Reply struct {
	Error string `json:"error,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
}

// Stats are one worker's figures. Counters of messages cover the latest
// run (OpRun resets them); connection figures cover the worker's life.
type Stats struct {
	Clients       int            `json:"clients"`
	Connected     int            `json:"connected"`
	Joined        int            `json:"joined"`
	ConnectErrors int            `json:"connect_errors"`
	ConnectTime   hist.Snapshot  `json:"connect_time"`
	Members       map[string]int `json:"members,omitempty"`

	Sent        int64            `json:"sent"`
	SendErrors  int64            `json:"send_errors"`
	Acked       int64            `json:"acked"`
	AckedByRoom map[string]int64 `json:"acked_by_room,omitempty"`
	Received    int64            `json:"received"`
	Latency     hist.Snapshot    `json:"latency"`
	AckLatency  hist.Snapshot    `json:"ack_latency"`
	FirstSend   int64            `json:"first_send"`
	LastSend    int64            `json:"last_send"`
	LastRecv    int64            `json:"last_recv"`
	Frames      int64            `json:"frames"`
	ErrorCodes  map[string]int64 `json:"error_codes,omitempty"`

	// Chain checks (each client's view of its room: no gap, no duplicate).
	Gaps int64 `json:"gaps"`
	Dups int64 `json:"dups"`

	// Reconnect figures.
	Disconnects   int64         `json:"disconnects"`
	CloseCodes    map[int]int64 `json:"close_codes,omitempty"`
	Affected      int           `json:"affected"`
	Resumed       int           `json:"resumed"`
	ResumedClean  int           `json:"resumed_clean"`
	InWindowClean int           `json:"in_window_clean"`
	Unrecovered   int           `json:"unrecovered"`
	ResumeTime    hist.Snapshot `json:"resume_time"`

	// History request figures.
	Pages      int64         `json:"pages"`
	PageItems  int64         `json:"page_items"`
	PageErrors int64         `json:"page_errors"`
	PageTime   hist.Snapshot `json:"page_time"`
	Elapsed    time.Duration `json:"elapsed"`

	CPU    proc.CPU `json:"cpu"`
	MaxRSS int64    `json:"max_rss"`
}
