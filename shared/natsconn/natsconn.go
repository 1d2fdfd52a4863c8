// Package natsconn connects Hubbub services to NATS with the options every
// service needs: a client name, reconnecting forever with jitter, buffered
// publishes while disconnected, and logged connection events including the
// server's lame-duck notice.
package natsconn

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Config says where and how to connect.
type Config struct {
	// URL is a comma-separated list of server URLs.
	URL string
	// Name is the client name shown by the server (nats server report connections).
	Name string
	// User and Password authenticate with a username/password pair.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile authenticates with a NATS credentials file (JWT + nkey).
	CredsFile string
	// InboxPrefix replaces "_INBOX" as the prefix of the client's reply
	// subjects (a subjects.*Inbox constant); empty keeps "_INBOX".
	InboxPrefix string
}

// Connect dials NATS. It keeps retrying the first connect in the background
// (RetryOnFailedConnect), so services can start before NATS is up; callers
// check readiness with Conn.Status.
func Connect(cfg Config, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(cfg.URL, Options(cfg, log)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", cfg.URL, err)
	}
	return nc, nil
}

// Options returns the connection options Connect uses.
func Options(cfg Config, log *slog.Logger) []nats.Option {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(16 << 20),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			// The server is shutting down gracefully; the client library
			// reconnects to another cluster member on its own when the
			// server closes the connection. Nothing is dropped meanwhile.
			log.Warn("nats server entered lame duck mode; will move to another server", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	return opts
}
