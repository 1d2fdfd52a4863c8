// Command hubbub-presence runs the Hubbub presence service: rosters, typing
// state and edge-lease cleanup, as a NATS micro service. Settings come from
// flags or HUBBUB_* environment variables (see -h).
package main

import (
	"github.com/hubbub-chat/hubbub/services/presence"
	"github.com/hubbub-chat/hubbub/shared/config"
	"github.com/hubbub-chat/hubbub/shared/daemon"
	"github.com/hubbub-chat/hubbub/shared/subjects"
)

var binary = daemon.Binary{
	Name:    "hubbub-presence",
	Inbox:   subjects.PresenceInbox,
	OpsAddr: ":8082",
	Flags: func(f *config.Flags) daemon.Build {
		var cfg presence.Config
		cfg.RegisterFlags(f)
		return func(d daemon.Deps) (daemon.Service, error) {
			cfg.FromCommon(d.Common)
			return presence.New(cfg, presence.Deps{NC: d.NC, Log: d.Log, Registry: d.Registry, JSDomain: d.Common.NATSJSDomain})
		}
	},
}

func main() { binary.Main() }
