package config

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hubbub-chat/hubbub/shared/logging"
	"github.com/hubbub-chat/hubbub/shared/natsconn"
	"github.com/hubbub-chat/hubbub/shared/provision"
)

// Common holds the settings every Hubbub binary shares: how to reach NATS,
// how to log, and how the stream and buckets are sized.
type Common struct {
	NATSURL      string
	NATSUser     string
	NATSPassword string
	NATSCreds    string
	NATSToken    string
	// NATSJSDomain is the JetStream domain (natsconn.Config.JSDomain).
	NATSJSDomain string
	LogFormat    string
	LogLevel     string
	Replicas     int
	MaxAge       time.Duration
	Duplicates   time.Duration
	TypingTTL    time.Duration
	LeaseTTL     time.Duration
	// ProvisionMode is what provisioning may do: manage, verify or off
	// (provision.Mode).
	ProvisionMode string

	log *slog.Logger // the last logger Logger built, for Provision
}

// Register defines the common flags (and their HUBBUB_* variables) on f.
func (c *Common) Register(f *Flags) {
	f.String(&c.NATSURL, "nats-url", "HUBBUB_NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	f.String(&c.NATSUser, "nats-user", "HUBBUB_NATS_USER", "", "NATS user name")
	f.String(&c.NATSPassword, "nats-password", "HUBBUB_NATS_PASSWORD", "", "NATS password")
	f.String(&c.NATSCreds, "nats-creds", "HUBBUB_NATS_CREDS", "", "NATS credentials file")
	f.String(&c.NATSToken, "nats-token", "HUBBUB_NATS_TOKEN", "", "NATS token")
	f.String(&c.NATSJSDomain, "nats-js-domain", "HUBBUB_NATS_JS_DOMAIN", "", "JetStream domain of the CHAT stream and buckets (e.g. the hub's when connected to a leaf node); empty: the account's own JetStream")
	f.String(&c.LogFormat, "log-format", "HUBBUB_LOG_FORMAT", "json", "log format: json or text")
	f.String(&c.LogLevel, "log-level", "HUBBUB_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	f.Int(&c.Replicas, "stream-replicas", "HUBBUB_STREAM_REPLICAS", 1, "replicas of the CHAT stream and KV buckets (3 in production)")
	f.Duration(&c.MaxAge, "stream-max-age", "HUBBUB_STREAM_MAX_AGE", provision.DefaultMaxAge, "how long the CHAT stream keeps messages")
	f.Duration(&c.Duplicates, "stream-duplicates", "HUBBUB_STREAM_DUPLICATES", provision.DefaultDuplicates, "message de-duplication window")
	f.Duration(&c.TypingTTL, "typing-ttl", "HUBBUB_TYPING_TTL", provision.DefaultTypingTTL, "how long a typing indicator lives without renewal")
	f.Duration(&c.LeaseTTL, "lease-ttl", "HUBBUB_LEASE_TTL", provision.DefaultLeaseTTL, "how long an edge lease lives without renewal")
	modes := make([]string, len(provision.Modes))
	for i, m := range provision.Modes {
		modes[i] = string(m)
	}
	f.Choice(&c.ProvisionMode, "provision", "HUBBUB_PROVISION", string(provision.ModeManage), modes,
		"provisioning of the CHAT stream and KV buckets at start-up: manage creates what is missing, verify only checks (fails if missing), off does nothing; existing ones are never changed")
}

// Logger builds the logger the settings ask for. Provision logs through
// it afterwards.
func (c *Common) Logger(w io.Writer) (*slog.Logger, error) {
	l, err := logging.New(w, c.LogFormat, c.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("logging: %w", err)
	}
	c.log = l
	return l, nil
}

// NATS returns the connection settings for a client called name.
func (c *Common) NATS(name string) natsconn.Config {
	return natsconn.Config{URL: c.NATSURL, Name: name, User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken, CredsFile: c.NATSCreds, JSDomain: c.NATSJSDomain}
}

// Provision returns the stream and bucket sizing and the provisioning
// mode, logging through the logger Logger built (slog.Default before).
func (c *Common) Provision() provision.Config {
	return provision.Config{
		Replicas: c.Replicas, MaxAge: c.MaxAge, Duplicates: c.Duplicates, TypingTTL: c.TypingTTL, LeaseTTL: c.LeaseTTL,
		Mode: provision.Mode(c.ProvisionMode), Log: c.log,
	}
}
