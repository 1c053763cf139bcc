package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"go.yaml.in/yaml/v3"
)

// IMAP is a mailbox source: the rua mailbox, read over IMAP.
type IMAP struct {
	// Name labels the source's metrics; username@host/folder when empty.
	Name string `yaml:"name"`
	Host string `yaml:"host"`
	// Port defaults to 993 with tls, 143 otherwise.
	Port int `yaml:"port"`
	// TLS is "tls" (implicit TLS, the default), "starttls", or "plain"
	// (no TLS at all), which needs Insecure as well.
	TLS      string `yaml:"tls"`
	Insecure bool   `yaml:"insecure"`
	// CAFile is a PEM file of certificates to trust besides the system's
	// (for a self-signed server); InsecureSkipVerify trusts any.
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// ServerName is the name the certificate is checked against; Host
	// when empty.
	ServerName string `yaml:"server_name"`

	Username string `yaml:"username"`
	// The password is read at each login from a file or an environment
	// variable, never from this file.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// Password only exists to refuse it with a clear error.
	Password string `yaml:"password"`
	// Auth is the mechanism: "plain" (the default with a password),
	// "login", or, with OAuth2, "xoauth2" (the default) or "oauthbearer".
	Auth   string  `yaml:"auth"`
	OAuth2 *OAuth2 `yaml:"oauth2"`

	// Folder is read (default INBOX). Folder names use "/" between levels,
	// whatever the server's separator.
	Folder string `yaml:"folder"`
	// ArchiveFolder receives the messages whose reports were saved, and
	// InvalidFolder those without a usable report. Without them, messages
	// stay where they are, flagged \Seen. They are created when missing.
	ArchiveFolder string `yaml:"archive_folder"`
	InvalidFolder string `yaml:"invalid_folder"`

	// PollInterval is how often the folder is checked when the server
	// has no IDLE; with IDLE, how often the folder is listed in full
	// anyway, in case a notification was missed.
	PollInterval Duration `yaml:"poll_interval"`
	// Timeout bounds connecting and each command.
	Timeout Duration `yaml:"timeout"`
	// MaxMessageSize: a larger message is moved to the invalid folder
	// without being downloaded.
	MaxMessageSize Bytes `yaml:"max_message_size"`
	// BatchSize is how many messages are downloaded, then parsed and
	// saved, at a time.
	BatchSize int `yaml:"batch_size"`
}

// OAuth2 gets access tokens for XOAUTH2 and OAUTHBEARER: with a refresh
// token (Google, Microsoft 365 delegated access), or with the client
// credentials alone (Microsoft 365 application access).
type OAuth2 struct {
	TokenURL string `yaml:"token_url"`
	ClientID string `yaml:"client_id"`
	// The client secret and refresh token are read from files or
	// environment variables, like passwords.
	ClientSecretFile string   `yaml:"client_secret_file"`
	ClientSecretEnv  string   `yaml:"client_secret_env"`
	RefreshTokenFile string   `yaml:"refresh_token_file"`
	RefreshTokenEnv  string   `yaml:"refresh_token_env"`
	Scopes           []string `yaml:"scopes"`
}

// Bytes is a size as "32MiB", "500KB" or a number of bytes.
type Bytes int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		v, err = units.ParseStrictBytes(s)
	}
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a size (such as 32MiB or 500KB)", n.Line, s)
	}
	*b = Bytes(v)
	return nil
}

// IMAP defaults.
const (
	DefaultIMAPPollInterval   = Duration(5 * time.Minute)
	DefaultIMAPTimeout        = Duration(time.Minute)
	DefaultIMAPMaxMessageSize = Bytes(32 << 20)
	DefaultIMAPBatchSize      = 20
	// MaxIMAPMessageSize bounds max_message_size: a message is held in
	// memory whole.
	MaxIMAPMessageSize = Bytes(256 << 20)
)

func (m *IMAP) setDefaults() {
	if m.TLS == "" {
		m.TLS = "tls"
	}
	if m.Port == 0 {
		m.Port = 143
		if m.TLS == "tls" {
			m.Port = 993
		}
	}
	if m.Folder == "" {
		m.Folder = "INBOX"
	}
	if m.Auth == "" {
		m.Auth = "plain"
		if m.OAuth2 != nil {
			m.Auth = "xoauth2"
		}
	}
	if m.Name == "" {
		m.Name = m.Username + "@" + m.Host + "/" + m.Folder
	}
	if m.PollInterval == 0 {
		m.PollInterval = DefaultIMAPPollInterval
	}
	if m.Timeout == 0 {
		m.Timeout = DefaultIMAPTimeout
	}
	if m.MaxMessageSize == 0 {
		m.MaxMessageSize = DefaultIMAPMaxMessageSize
	}
	if m.BatchSize == 0 {
		m.BatchSize = DefaultIMAPBatchSize
	}
}

func (m *IMAP) validate() error {
	switch {
	case m.Host == "":
		return fmt.Errorf("host is required")
	case m.Port < 1 || m.Port > 65535:
		return fmt.Errorf("port %d is not a port", m.Port)
	case m.Username == "":
		return fmt.Errorf("username is required")
	case m.Password != "":
		return fmt.Errorf("password must not be written in the configuration: use password_file or password_env")
	case m.TLS != "tls" && m.TLS != "starttls" && m.TLS != "plain":
		return fmt.Errorf("tls must be tls, starttls or plain, not %q", m.TLS)
	case m.TLS == "plain" && !m.Insecure:
		return fmt.Errorf("tls: plain sends the password in clear text; set insecure: true to allow it")
	case time.Duration(m.PollInterval) < time.Second:
		return fmt.Errorf("poll_interval %s is shorter than 1s", m.PollInterval)
	case time.Duration(m.Timeout) < time.Second:
		return fmt.Errorf("timeout %s is shorter than 1s", m.Timeout)
	case m.BatchSize < 1 || m.BatchSize > 1000:
		return fmt.Errorf("batch_size must be between 1 and 1000")
	case m.MaxMessageSize < 1024 || m.MaxMessageSize > MaxIMAPMessageSize:
		return fmt.Errorf("max_message_size must be between 1KiB and 256MiB")
	}
	for _, f := range []string{m.Folder, m.ArchiveFolder, m.InvalidFolder} {
		if strings.ContainsAny(f, "*%\r\n") || strings.HasPrefix(f, "/") || strings.HasSuffix(f, "/") {
			return fmt.Errorf("folder %q is not a folder name", f)
		}
	}
	if m.ArchiveFolder != "" && strings.EqualFold(m.ArchiveFolder, m.Folder) || m.InvalidFolder != "" && strings.EqualFold(m.InvalidFolder, m.Folder) {
		return fmt.Errorf("archive_folder and invalid_folder must differ from folder")
	}
	switch m.Auth {
	case "plain", "login":
		if m.OAuth2 != nil {
			return fmt.Errorf("auth %s uses a password, not oauth2", m.Auth)
		}
		if (m.PasswordFile == "") == (m.PasswordEnv == "") {
			return fmt.Errorf("give one of password_file and password_env")
		}
	case "xoauth2", "oauthbearer":
		if m.OAuth2 == nil {
			return fmt.Errorf("auth %s needs oauth2", m.Auth)
		}
		if m.PasswordFile != "" || m.PasswordEnv != "" {
			return fmt.Errorf("auth %s takes no password", m.Auth)
		}
		return m.OAuth2.validate()
	default:
		return fmt.Errorf("auth must be plain, login, xoauth2 or oauthbearer, not %q", m.Auth)
	}
	return nil
}

func (o *OAuth2) validate() error {
	if u, err := url.Parse(o.TokenURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("oauth2.token_url %q is not an http(s) URL", o.TokenURL)
	}
	if o.ClientID == "" {
		return fmt.Errorf("oauth2.client_id is required")
	}
	if o.ClientSecretFile != "" && o.ClientSecretEnv != "" {
		return fmt.Errorf("give at most one of oauth2.client_secret_file and oauth2.client_secret_env")
	}
	if o.RefreshTokenFile != "" && o.RefreshTokenEnv != "" {
		return fmt.Errorf("give at most one of oauth2.refresh_token_file and oauth2.refresh_token_env")
	}
	if o.RefreshTokenFile == "" && o.RefreshTokenEnv == "" && o.ClientSecretFile == "" && o.ClientSecretEnv == "" {
		return fmt.Errorf("oauth2 needs a refresh token, or a client secret for the client credentials flow")
	}
	return nil
}
