package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
)

// explain wraps a connection error into one that names its cause (one of
// the sentinel errors) and the setting to check, keeping the original.
func explain(cfg Config, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{ErrConfig, ErrAuth, ErrTLS, ErrUnreachable, ErrServerTooOld} {
		if errors.Is(err, sentinel) {
			return err // explained already
		}
	}
	where := "connect to nats " + redact(cfg.URL)
	ca, cert, key := setting(FlagCA, EnvCA), setting(FlagCert, EnvCert), setting(FlagKey, EnvKey)
	urlSetting := setting(FlagURL, EnvURL)
	var (
		unknownCA    x509.UnknownAuthorityError
		hostname     x509.HostnameError
		invalidCert  x509.CertificateInvalidError
		alert        tls.AlertError
		recordHeader tls.RecordHeaderError
		dnsErr       *net.DNSError
		opErr        *net.OpError
	)
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired),
		strings.Contains(msg, "authorization violation"), strings.Contains(msg, "authentication"):
		return fmt.Errorf("%s: %w (%w): check %s", where, ErrAuth, err, cfg.authSetting())
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%s: %w: the server's certificate is not signed by a CA this client trusts (%w): "+
			"check %s (a PEM file of the CA that signed it)", where, ErrTLS, err, ca)
	case errors.As(err, &hostname):
		return fmt.Errorf("%s: %w: the server's certificate is not valid for the host connected to (%w): "+
			"check the host names in %s against the certificate", where, ErrTLS, err, urlSetting)
	case errors.As(err, &invalidCert):
		return fmt.Errorf("%s: %w: the server's certificate is invalid (%w): check its dates and usage", where, ErrTLS, err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Errorf("%s: %w: the server requires TLS (%w): set %s (or use tls:// URLs)", where, ErrTLS, err, ca)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("%s: %w: TLS is asked for (%s, %s or a tls:// URL) but the server does not offer it (%w)",
			where, ErrTLS, ca, cert, err)
	case errors.As(err, &alert), strings.Contains(msg, "remote error: tls"),
		strings.Contains(msg, "closed by remote after tls handshake"):
		// A server that verifies clients refuses a missing or untrusted
		// certificate with an alert, or (TLS 1.3, the client writing
		// first) by closing the connection.
		if cfg.CertFile == "" {
			return fmt.Errorf("%s: %w: the server refused the TLS connection, it may require a client certificate (%w): "+
				"set %s and %s", where, ErrTLS, err, cert, key)
		}
		return fmt.Errorf("%s: %w: the server refused this client's certificate (%w): "+
			"check %s and %s (signed by a CA the server trusts)", where, ErrTLS, err, cert, key)
	case errors.As(err, &recordHeader), strings.Contains(msg, "tls:"), strings.Contains(msg, "tls error"):
		return fmt.Errorf("%s: %w (%w): check %s, %s, %s and that the URL's port speaks TLS",
			where, ErrTLS, err, ca, cert, key)
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &dnsErr), errors.As(err, &opErr):
		return fmt.Errorf("%s: %w (%w): check %s and that the server is running and reachable",
			where, ErrUnreachable, err, urlSetting)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// authSetting names the settings behind the credentials in use.
func (c Config) authSetting() string {
	switch {
	case urlHasUser(c.URL):
		return "the user and password in " + setting(FlagURL, EnvURL)
	case c.CredsFile != "":
		return setting(FlagCreds, EnvCreds) + " (the credentials file)"
	case c.NKeyFile != "":
		return setting(FlagNKey, EnvNKey) + " (the NKey seed file; the server must list its public key)"
	case c.User != "":
		return setting(FlagUser, EnvUser) + " and " + setting(FlagPassword, EnvPassword)
	case c.Token != "":
		return setting(FlagToken, EnvToken)
	}
	return "the credentials: the server requires them and none are set (" + setting(FlagUser, EnvUser) + " and " +
		setting(FlagPassword, EnvPassword) + ", " + setting(FlagCreds, EnvCreds) + ", " + setting(FlagNKey, EnvNKey) +
		" or " + setting(FlagToken, EnvToken) + ")"
}

func urlHasUser(urls string) bool {
	for _, p := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// redactURL hides the password of one URL, and a user with no password
// (nats.go takes it for a token).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		u.User = url.User("xxxxx")
		return u.String()
	}
	return u.Redacted()
}
