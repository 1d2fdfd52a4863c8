// Command hubbub-edge runs a Hubbub edge: WebSocket protocol v1 on /ws,
// the HTTP API, SSE, the web UI and /healthz, /readyz, /metrics on one
// listener. Settings come from flags or HUBBUB_* environment variables
// (see -h).
package main

import (
	"os"
	"runtime/debug"

	"github.com/hubbub-chat/hubbub/services/edge"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/daemon"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

var binary = daemon.Binary{
	Name:  "hubbub-edge",
	Inbox: subjects.EdgeInbox,
	// The edge serves /healthz, /readyz and /metrics on its own listener.
	Flags: func(f *config.Flags) daemon.Build {
		var cfg edge.Config
		finish := cfg.RegisterFlags(f)
		var gcPercent int
		f.Int(&gcPercent, "gc-percent", "HUBBUB_GC_PERCENT", 50, "Go GC target percentage when $GOGC is unset: an edge's heap is mostly long-lived connection state, so a lower value saves memory per connection for little CPU")
		return func(d daemon.Deps) (daemon.Service, error) {
			if err := finish(); err != nil {
				return nil, err
			}
			if _, ok := os.LookupEnv("GOGC"); !ok && gcPercent > 0 {
				debug.SetGCPercent(gcPercent)
			}
			cfg.LeaseTTL = d.Common.LeaseTTL
			return edge.New(cfg, edge.Deps{NC: d.NC, Log: d.Log, Registry: d.Registry, JSDomain: d.Common.NATSJSDomain})
		}
	},
}

func main() { binary.Main() }
