// Command hubbub-history runs the Hubbub history service: it stores every
// room message of the CHAT stream exactly once in SQLite (embedded default)
// or Postgres and answers recent/since/lobby requests as a NATS micro
// service. Settings come from flags or HUBBUB_* environment variables (-h).
package main

import (
	"github.com/hubbub-chat/hubbub/services/history"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/daemon"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

var binary = daemon.Binary{
	Name:    "hubbub-history",
	Inbox:   subjects.HistoryInbox,
	OpsAddr: ":8081",
	Flags: func(f *config.Flags) daemon.Build {
		var cfg history.Config
		cfg.RegisterFlags(f)
		return func(d daemon.Deps) (daemon.Service, error) {
			return history.New(cfg, history.Deps{NC: d.NC, Log: d.Log, Registry: d.Registry, JSDomain: d.Common.NATSJSDomain})
		}
	},
}

func main() { binary.Main() }
