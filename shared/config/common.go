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
	// NATSNKey is a file holding a bare NKey user seed
	// (natsconn.Config.NKeyFile).
	NATSNKey string
	// NATSCA, NATSCert and NATSKey are the PEM files of the private CA
	// trusted for the server's certificate and of the client certificate
	// and key for mutual TLS (natsconn.Config.CAFile, CertFile, KeyFile).
	NATSCA, NATSCert, NATSKey string
	// NATSJSDomain is the JetStream domain (natsconn.Config.JSDomain).
	NATSJSDomain string
	LogFormat    string
	LogLevel     string
	Replicas     int
	MaxAge       time.Duration
	Duplicates   time.Duration
	TypingTTL    time.Duration
	LeaseTTL     time.Duration
	// StreamMaxBytes and BucketMaxBytes cap the CHAT stream and each KV
	// bucket in bytes; 0 or -1 is no limit (provision.Config).
	StreamMaxBytes, BucketMaxBytes int64
	// ProvisionMode is what provisioning may do: manage, verify or off
	// (provision.Mode).
	ProvisionMode string

	log *slog.Logger // the last logger Logger built, for Provision
}

// Register defines the common flags (and their HUBBUB_* variables) on f.
func (c *Common) Register(f *Flags) {
	f.String(&c.NATSURL, natsconn.FlagURL, natsconn.EnvURL, "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated (tls:// asks for TLS)")
	f.String(&c.NATSUser, natsconn.FlagUser, natsconn.EnvUser, "", "NATS user name")
	f.String(&c.NATSPassword, natsconn.FlagPassword, natsconn.EnvPassword, "", "NATS password")
	f.String(&c.NATSCreds, natsconn.FlagCreds, natsconn.EnvCreds, "", "NATS credentials file (JWT and NKey seed)")
	f.String(&c.NATSToken, natsconn.FlagToken, natsconn.EnvToken, "", "NATS token")
	f.String(&c.NATSNKey, natsconn.FlagNKey, natsconn.EnvNKey, "", "file holding a bare NKey user seed (SU…); the server lists its public key")
	f.String(&c.NATSCA, natsconn.FlagCA, natsconn.EnvCA, "", "PEM file of the CA that signed the NATS server's certificate (a private CA; default: the system's roots); turns TLS on")
	f.String(&c.NATSCert, natsconn.FlagCert, natsconn.EnvCert, "", "client certificate (PEM) for NATS servers that verify clients (mutual TLS); needs -"+natsconn.FlagKey)
	f.String(&c.NATSKey, natsconn.FlagKey, natsconn.EnvKey, "", "private key (PEM) of -"+natsconn.FlagCert)
	f.String(&c.NATSJSDomain, natsconn.FlagJSDomain, natsconn.EnvJSDomain, "", "JetStream domain of the CHAT stream and buckets (e.g. the hub's when connected to a leaf node); empty: the account's own JetStream")
	f.String(&c.LogFormat, "log-format", "HUBBUB_LOG_FORMAT", "json", "log format: json or text")
	f.String(&c.LogLevel, "log-level", "HUBBUB_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	f.Int(&c.Replicas, "stream-replicas", "HUBBUB_STREAM_REPLICAS", 1, "replicas of the CHAT stream and KV buckets (3 in production)")
	f.Duration(&c.MaxAge, "stream-max-age", "HUBBUB_STREAM_MAX_AGE", provision.DefaultMaxAge, "how long the CHAT stream keeps messages")
	f.Bytes(&c.StreamMaxBytes, provision.FlagStreamMaxBytes, provision.EnvStreamMaxBytes, 0,
		"`size` limit of the CHAT stream when provisioning creates it (e.g. 10G; beyond it the oldest messages are discarded); 0 or -1: none. Required by accounts with max_bytes_required")
	f.Bytes(&c.BucketMaxBytes, provision.FlagBucketMaxBytes, provision.EnvBucketMaxBytes, 0,
		"`size` limit of each KV bucket (roster, typing, edges) when provisioning creates it (e.g. 64M; beyond it writes fail); 0 or -1: none. Required by accounts with max_bytes_required")
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
	return natsconn.Config{
		URL: c.NATSURL, Name: name, User: c.NATSUser, Password: c.NATSPassword, Token: c.NATSToken, CredsFile: c.NATSCreds,
		NKeyFile: c.NATSNKey, CAFile: c.NATSCA, CertFile: c.NATSCert, KeyFile: c.NATSKey, JSDomain: c.NATSJSDomain,
	}
}

// Provision returns the stream and bucket sizing and the provisioning
// mode, logging through the logger Logger built (slog.Default before).
func (c *Common) Provision() provision.Config {
	return provision.Config{
		Replicas: c.Replicas, MaxAge: c.MaxAge, Duplicates: c.Duplicates, TypingTTL: c.TypingTTL, LeaseTTL: c.LeaseTTL,
		StreamMaxBytes: c.StreamMaxBytes, BucketMaxBytes: c.BucketMaxBytes,
		Mode: provision.Mode(c.ProvisionMode), Log: c.log,
	}
}
