// Package natsconn connects Hubbub services to NATS with the options every
// service needs: a client name, reconnecting forever with jitter, buffered
// publishes while disconnected, and logged connection events including the
// server's lame-duck notice.
//
// It speaks to a real deployment's NATS: TLS with a private CA, mutual
// TLS, credentials files, bare NKey seeds, user and password (also in the
// URL) or a token. A first connection that fails for a reason retrying
// cannot fix — wrong credentials, an untrusted certificate, a server older
// than MinServerVersion — fails Connect with an error naming the cause and
// the setting to check; an unreachable server is retried in the
// background, so services can start before NATS.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The flags and environment variables of the connection settings, as
// shared/config registers them (every flag's default is its variable).
// Errors name both, so the setting to check is plain whichever way it is
// given.
const (
	FlagURL, EnvURL           = "nats-url", "HUBBUB_NATS_URL"
	FlagUser, EnvUser         = "nats-user", "HUBBUB_NATS_USER"
	FlagPassword, EnvPassword = "nats-password", "HUBBUB_NATS_PASSWORD"
	FlagCreds, EnvCreds       = "nats-creds", "HUBBUB_NATS_CREDS"
	FlagToken, EnvToken       = "nats-token", "HUBBUB_NATS_TOKEN"
	// FlagNKey, EnvNKey: a file holding a bare NKey user seed (SU…).
	FlagNKey, EnvNKey = "nats-nkey", "HUBBUB_NATS_NKEY"
	// FlagCA, EnvCA: a PEM file of the CA(s) that signed the server's
	// certificate (a private CA); setting it turns TLS on.
	FlagCA, EnvCA = "nats-ca", "HUBBUB_NATS_CA"
	// FlagCert, EnvCert: the client certificate (PEM) for mutual TLS.
	FlagCert, EnvCert = "nats-cert", "HUBBUB_NATS_CERT"
	// FlagKey, EnvKey: the client certificate's private key (PEM).
	FlagKey, EnvKey = "nats-key", "HUBBUB_NATS_KEY"
	// FlagJSDomain, EnvJSDomain: the JetStream domain (Config.JSDomain).
	FlagJSDomain, EnvJSDomain = "nats-js-domain", "HUBBUB_NATS_JS_DOMAIN"
)

// setting names a setting by its flag and its variable: "-nats-ca
// (HUBBUB_NATS_CA)".
func setting(flag, env string) string { return "-" + flag + " (" + env + ")" }

// Config says where and how to connect.
type Config struct {
	// URL is a comma-separated list of server URLs. A URL may carry a user
	// and password (nats://user:pass@host:4222); tls:// asks for TLS.
	URL string
	// Name is the client name shown by the server (nats server report connections).
	Name string
	// User and Password authenticate with a username/password pair.
	User, Password string
	// Token authenticates with a token.
	Token string
	// CredsFile authenticates with a NATS credentials file (JWT + nkey).
	CredsFile string
	// NKeyFile authenticates with a bare NKey user seed (SU…) read from
	// this file; the server lists the matching public key.
	NKeyFile string
	// CAFile is a PEM file of the CA(s) trusted for the server's
	// certificate instead of the system's; it turns TLS on.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// servers that verify clients (mutual TLS); they turn TLS on.
	CertFile, KeyFile string
	// InboxPrefix replaces "_INBOX" as the prefix of the client's reply
	// subjects (a subjects.*Inbox constant); empty keeps "_INBOX".
	InboxPrefix string
	// JSDomain is the JetStream domain holding the CHAT stream and the
	// buckets (a hub's domain when this server is a leaf node); empty
	// means the account's local JetStream. See NewJetStream.
	JSDomain string
}

// NewJetStream returns a JetStream handle on nc for domain: the local
// account's JetStream when domain is empty, else that domain's
// ($JS.<domain>.API).
func NewJetStream(nc *nats.Conn, domain string, opts ...jetstream.JetStreamOpt) (jetstream.JetStream, error) {
	if domain == "" {
		return jetstream.New(nc, opts...)
	}
	return jetstream.NewWithDomain(nc, domain, opts...)
}

// Errors Connect wraps, for callers that branch on the cause. Each comes
// with the server's or the TLS library's own error and the setting to
// check.
var (
	// ErrConfig: the settings cannot work (a certificate without its key, an
	// unreadable file).
	ErrConfig = errors.New("unusable nats connection settings")
	// ErrAuth: the server refused the credentials.
	ErrAuth = errors.New("nats server refused the credentials")
	// ErrTLS: the TLS handshake failed (untrusted server certificate, client
	// certificate refused, TLS required or not offered).
	ErrTLS = errors.New("nats TLS handshake failed")
	// ErrUnreachable: no server answered (refused, timed out, unknown host).
	ErrUnreachable = errors.New("nats server unreachable")
	// ErrServerTooOld: the server is older than MinServerVersion.
	ErrServerTooOld = errors.New("nats-server too old")
)

// Connect dials NATS. The first attempt runs now: wrong credentials, an
// untrusted certificate or a server older than MinServerVersion fail it
// with an error wrapping ErrAuth, ErrTLS or ErrServerTooOld. When no server
// is reachable yet, Connect logs why and keeps connecting in the
// background (callers check readiness with Conn.Status), refusing a too
// old server once it answers. Connect reads no environment: the binaries
// fill cfg from their flags and HUBBUB_* variables (shared/config).
func Connect(cfg Config, log *slog.Logger) (*nats.Conn, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	opts := Options(cfg, log)
	nc, err := nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(false))...)
	if err == nil {
		if err := CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
			nc.Close()
			return nil, fmt.Errorf("connect to nats %s: %w", redact(cfg.URL), err)
		}
		return nc, nil
	}
	if errors.Is(err, nats.ErrNoServers) {
		// nats.go keeps only "no servers available": say what the dial met.
		if derr := dialProbe(cfg.URL); derr != nil {
			err = fmt.Errorf("%w: %w", err, derr)
		}
	}
	err = explain(cfg, err)
	if !errors.Is(err, ErrUnreachable) {
		return nil, err
	}
	log.Warn("nats not reachable yet; connecting in the background", "err", err)
	nc, err = nats.Connect(cfg.URL, append(opts,
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(nc *nats.Conn) {
			if err := CheckServerVersion(nc.ConnectedServerVersion()); err != nil {
				log.Error("nats connection refused", "err", err, "server", nc.ConnectedUrlRedacted())
				nc.Close()
				return
			}
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
	)...)
	if err != nil {
		return nil, explain(cfg, err)
	}
	return nc, nil
}

// check refuses combinations that cannot work before dialling.
func (c Config) check() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: a client certificate needs both %s and %s", ErrConfig, setting(FlagCert, EnvCert), setting(FlagKey, EnvKey))
	}
	for _, f := range []struct{ name, file string }{
		{setting(FlagCA, EnvCA), c.CAFile}, {setting(FlagCert, EnvCert), c.CertFile}, {setting(FlagKey, EnvKey), c.KeyFile},
		{setting(FlagNKey, EnvNKey), c.NKeyFile}, {setting(FlagCreds, EnvCreds), c.CredsFile},
	} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrConfig, f.name, err)
		}
	}
	return nil
}

// Options returns the connection options Connect uses (without
// RetryOnFailedConnect, which Connect sets per attempt).
func Options(cfg Config, log *slog.Logger) []nats.Option {
	reasons := &reconnectLog{log: log, cfg: cfg}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(16 << 20),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			reasons.reset()
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { reasons.failed(err) }),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Error("nats connection closed for good", "err", explain(cfg, err))
			}
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
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.NKeyFile != "":
		opts = append(opts, nkeyFromSeedFile(cfg.NKeyFile))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	return opts
}

// nkeyFromSeedFile signs the server's nonce with the seed in file; a file
// that holds no user seed fails the connect with ErrConfig.
func nkeyFromSeedFile(file string) nats.Option {
	return func(o *nats.Options) error {
		opt, err := nats.NkeyOptionFromSeed(file)
		if err != nil {
			return fmt.Errorf("%w: %s=%s: %w", ErrConfig, setting(FlagNKey, EnvNKey), file, err)
		}
		return opt(o)
	}
}

// reconnectLog logs why background connection attempts fail: the first
// failure, each change of reason, and a reminder every 30s, so a server
// that stays away is neither silent nor a flood.
type reconnectLog struct {
	log *slog.Logger
	cfg Config

	mu   sync.Mutex
	last string
	at   time.Time
}

func (r *reconnectLog) failed(err error) {
	err = explain(r.cfg, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg := err.Error(); msg != r.last || time.Since(r.at) >= 30*time.Second {
		r.last, r.at = msg, time.Now()
		r.log.Warn("nats connection attempt failed; retrying", "err", err)
	}
}

func (r *reconnectLog) reset() {
	r.mu.Lock()
	r.last = ""
	r.mu.Unlock()
}

// dialProbe dials the first server of urls once over TCP and returns the
// error it meets (nil when it answers).
func dialProbe(urls string) error {
	s, _, _ := strings.Cut(urls, ",")
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return err
	}
	_ = c.Close()
	return nil
}

// redact drops the passwords from a comma-separated URL list.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
