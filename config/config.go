// Package config is the exporter's YAML configuration: what it reads, which
// domains it counts, and the bounds that keep hostile reports from growing
// its memory. Files are decoded strictly: an unknown key or a wrong type is
// an error that names its line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/idna"
)

// Config is the whole configuration file.
type Config struct {
	// Domains are the protected domains. A report counts for a domain when
	// its policy domain is that domain or below it. With none, every policy
	// domain is counted, up to Limits.Domains.
	Domains []string `yaml:"domains"`
	// Directories are directory sources.
	Directories []Directory `yaml:"directories"`
	// IMAP are mailbox sources.
	IMAP []IMAP `yaml:"imap"`
	// Mbox and Maildir are mailboxes read from files, read-only: a mail
	// export (Google Takeout) or a local delivery.
	Mbox    []Mailbox `yaml:"mbox"`
	Maildir []Mailbox `yaml:"maildir"`
	// RemoteWrite, when its URL is set, pushes the report-time series
	// (messages per report day) to a Prometheus remote-write receiver.
	RemoteWrite RemoteWrite `yaml:"remote_write"`
	Limits      Limits      `yaml:"limits"`
	State       State       `yaml:"state"`
	// Archive configures what the archive keeps and for how long.
	Archive Archive `yaml:"archive"`
	// FailureSamples is how many recent failure reports, redacted (no
	// local parts of addresses, no subject), are kept and served on
	// /failure-samples. 0, the default, keeps none.
	FailureSamples int `yaml:"failure_samples"`
	// ExpectedReporters lists, per domain, reporters (as the reporter label
	// writes them: google.com, microsoft.com, ...) that the watchdog
	// watches even before their first report.
	ExpectedReporters map[string][]string `yaml:"expected_reporters"`
	DNS               DNS                 `yaml:"dns"`
	Senders           Senders             `yaml:"senders"`
}

// DNS configures the DNS record monitor, which watches the records of the
// configured domains (it is off when no domain is configured).
type DNS struct {
	// Interval between two lookups of each record (default 1h); 0 turns
	// the monitor off.
	Interval *Duration `yaml:"interval"`
	// DKIMSelectors lists, per domain, selectors to watch besides those
	// seen in the domain's reports.
	DKIMSelectors map[string][]string `yaml:"dkim_selectors"`
}

// Directory is a directory source: every file below Path is read once.
type Directory struct {
	// Name labels the source's metrics; the path when empty.
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	// ArchiveDir and InvalidDir, when set, receive the files that were read
	// and those that were rejected. Files are never deleted; without these
	// they stay where they are.
	ArchiveDir string `yaml:"archive_dir"`
	InvalidDir string `yaml:"invalid_dir"`
	// RescanInterval is how often the whole tree is scanned again, as a
	// safety net for missed file system events.
	RescanInterval Duration `yaml:"rescan_interval"`
	// SettleTime is how long a file must stay unchanged before it is read,
	// so that a file still being written is not read half-way.
	SettleTime Duration `yaml:"settle_time"`
}

// RemoteWrite is where the report-time series are pushed.
type RemoteWrite struct {
	// URL is the receiver's write endpoint (Prometheus:
	// http://host:9090/api/v1/write, with --web.enable-remote-write-receiver).
	URL string `yaml:"url"`
	// Interval is how often new reports are looked for and pushed.
	Interval Duration `yaml:"interval"`
	// MaxSampleAge: samples of days older than this are not sent (the
	// receiver's out-of-order window; export openmetrics loads them).
	MaxSampleAge Duration `yaml:"max_sample_age"`
	// BasicAuth and Headers (X-Scope-OrgID for Mimir, say) go with every
	// request.
	BasicAuth *BasicAuth        `yaml:"basic_auth"`
	Headers   map[string]string `yaml:"headers"`
}

// BasicAuth is a user and the file of its password.
type BasicAuth struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Mailbox is an mbox file or a Maildir directory read as a source. It is
// never changed: what was read is remembered in the archive, by the
// message's place and a hash of it.
type Mailbox struct {
	// Name labels the source's metrics; the path when empty.
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	// RescanInterval is how often the mailbox is looked at again; an
	// unchanged one (size and time) is not read again.
	RescanInterval Duration `yaml:"rescan_interval"`
}

// Limits bound the label values that reports can create.
type Limits struct {
	// ReportersPerDomain caps distinct reporter label values per domain.
	ReportersPerDomain int `yaml:"reporters_per_domain"`
	// Domains caps distinct domain label values when Domains is empty.
	Domains int `yaml:"domains"`
	// LabelLength caps the length of a label value taken from a report.
	LabelLength int `yaml:"label_length"`
	// SourcesPerDomain caps, per domain, the distinct values of each of
	// source_asn, source_name and source_country.
	SourcesPerDomain int `yaml:"sources_per_domain"`
}

// Archive configures what the archive keeps.
type Archive struct {
	// URL, when set, is a PostgreSQL archive (postgres://user@host/db)
	// instead of the SQLite file under --storage.path. The password goes
	// in the URL's own ways (a .pgpass file, PGPASSWORD), not here.
	URL string `yaml:"url"`
	// RefreshInterval is how often an exporter on a PostgreSQL archive
	// takes in what other exporters sharing it counted: at most the
	// scrape interval.
	RefreshInterval Duration `yaml:"refresh_interval"`
	// LeaseTTL is how long an exporter on a PostgreSQL archive holds a
	// source's lease without renewing it: another takes the source over
	// within 4/3 of it once the holder died.
	LeaseTTL Duration `yaml:"lease_ttl"`
	// Retention is how long reports and their records are kept, from the
	// end of their date range or when they were read, whichever is later
	// (failure reports: from when they were received). The counters are
	// not touched by retention.
	Retention Duration `yaml:"retention"`
	// KeepRaw keeps each aggregate and SMTP TLS report as received
	// (compressed), for a "show the report" view; on by default.
	KeepRaw *bool `yaml:"keep_raw"`
	// MaxRawBytes is the largest report (uncompressed) whose bytes are
	// kept; a larger one is archived without them.
	MaxRawBytes int `yaml:"max_raw_bytes"`
}

// RawLimit is the largest report whose bytes the archive keeps; 0 when
// keep_raw is off.
func (a Archive) RawLimit() int {
	if a.KeepRaw != nil && !*a.KeepRaw {
		return 0
	}
	return a.MaxRawBytes
}

// State configures what is remembered to refuse duplicates.
type State struct {
	// DedupRetention is how long a report's identity is remembered to
	// refuse a second delivery of it.
	DedupRetention Duration `yaml:"dedup_retention"`
}

// Duration is a duration as Prometheus writes them ("90s", "5m", "800d");
// a wrong one is an error that names its line.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d Duration) String() string { return model.Duration(d).String() }

// Defaults.
const (
	DefaultRescanInterval     = Duration(5 * time.Minute)
	DefaultSettleTime         = Duration(2 * time.Second)
	DefaultReportersPerDomain = 100
	DefaultDomains            = 100
	DefaultLabelLength        = 64
	DefaultSourcesPerDomain   = 100
	DefaultDedupRetention     = Duration(800 * 24 * time.Hour)
	DefaultArchiveRetention   = Duration(400 * 24 * time.Hour)
	DefaultMaxRawBytes        = 4 << 20
	MaxFailureSamples         = 1000
	DefaultDNSInterval        = Duration(time.Hour)

	DefaultRemoteWriteInterval     = Duration(time.Minute)
	DefaultRemoteWriteMaxSampleAge = Duration(30 * 24 * time.Hour)
)

// Default returns a configuration with every default set and no sources.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Limits.ReportersPerDomain == 0 {
		c.Limits.ReportersPerDomain = DefaultReportersPerDomain
	}
	if c.Limits.Domains == 0 {
		c.Limits.Domains = DefaultDomains
	}
	if c.Limits.LabelLength == 0 {
		c.Limits.LabelLength = DefaultLabelLength
	}
	if c.Limits.SourcesPerDomain == 0 {
		c.Limits.SourcesPerDomain = DefaultSourcesPerDomain
	}
	if c.DNS.Interval == nil {
		d := DefaultDNSInterval
		c.DNS.Interval = &d
	}
	if c.State.DedupRetention == 0 {
		c.State.DedupRetention = DefaultDedupRetention
	}
	if c.Archive.Retention == 0 {
		c.Archive.Retention = DefaultArchiveRetention
	}
	if c.Archive.MaxRawBytes == 0 {
		c.Archive.MaxRawBytes = DefaultMaxRawBytes
	}
	for i := range c.Directories {
		d := &c.Directories[i]
		if d.Name == "" {
			d.Name = d.Path
		}
		if d.RescanInterval == 0 {
			d.RescanInterval = DefaultRescanInterval
		}
		if d.SettleTime == 0 {
			d.SettleTime = DefaultSettleTime
		}
	}
	for i := range c.IMAP {
		c.IMAP[i].setDefaults()
	}
	for _, list := range [][]Mailbox{c.Mbox, c.Maildir} {
		for i := range list {
			m := &list[i]
			if m.Name == "" {
				m.Name = m.Path
			}
			if m.RescanInterval == 0 {
				m.RescanInterval = DefaultRescanInterval
			}
		}
	}
	if c.Archive.RefreshInterval == 0 {
		c.Archive.RefreshInterval = Duration(15 * time.Second)
	}
	if c.Archive.LeaseTTL == 0 {
		c.Archive.LeaseTTL = Duration(45 * time.Second)
	}
	if c.RemoteWrite.Interval == 0 {
		c.RemoteWrite.Interval = DefaultRemoteWriteInterval
	}
	if c.RemoteWrite.MaxSampleAge == 0 {
		c.RemoteWrite.MaxSampleAge = DefaultRemoteWriteMaxSampleAge
	}
	c.Senders.setDefaults()
}

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and checks a configuration.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(data, err)
	}
	if err := c.Complete(); err != nil {
		return nil, err
	}
	return c, nil
}

// Complete sets defaults and checks the configuration; call it after
// adding sources or domains from the command line.
func (c *Config) Complete() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	seen := map[string]bool{}
	for i, d := range c.Domains {
		n := NormalizeDomain(d)
		if !validDomain(n) {
			return fmt.Errorf("domains[%d]: %q is not a domain name", i, d)
		}
		if seen[n] {
			return fmt.Errorf("domains[%d]: %q listed twice", i, d)
		}
		seen[n] = true
		c.Domains[i] = n
	}
	expected := map[string][]string{}
	for domain, reporters := range c.ExpectedReporters {
		d := NormalizeDomain(domain)
		if !validDomain(d) {
			return fmt.Errorf("expected_reporters: %q is not a domain name", domain)
		}
		if len(c.Domains) > 0 && !seen[d] {
			return fmt.Errorf("expected_reporters: %q is not one of the domains", domain)
		}
		for _, r := range reporters {
			r = strings.ToLower(strings.TrimSpace(r))
			if !validDomain(r) {
				return fmt.Errorf("expected_reporters: %s: %q is not a reporter name (a domain such as google.com)", domain, r)
			}
			if !slices.Contains(expected[d], r) { // listed twice, or under two spellings of the domain
				expected[d] = append(expected[d], r)
			}
		}
	}
	c.ExpectedReporters = expected
	names := map[string]bool{}
	for i, d := range c.Directories {
		if d.Path == "" {
			return fmt.Errorf("directories[%d]: path is required", i)
		}
		if names[d.Name] {
			return fmt.Errorf("directories[%d]: name %q used twice", i, d.Name)
		}
		names[d.Name] = true
		if time.Duration(d.RescanInterval) < time.Second {
			return fmt.Errorf("directories[%d]: rescan_interval %s is shorter than 1s", i, d.RescanInterval)
		}
	}
	if err := c.Senders.validate(c.Domains); err != nil {
		return err
	}
	for i := range c.IMAP {
		m := &c.IMAP[i]
		if err := m.validate(); err != nil {
			return fmt.Errorf("imap[%d] (%s): %w", i, m.Name, err)
		}
		if names[m.Name] {
			return fmt.Errorf("imap[%d]: name %q used twice", i, m.Name)
		}
		names[m.Name] = true
	}
	for _, kind := range []struct {
		name string
		list []Mailbox
	}{{"mbox", c.Mbox}, {"maildir", c.Maildir}} {
		for i, m := range kind.list {
			if m.Path == "" {
				return fmt.Errorf("%s[%d]: path is missing", kind.name, i)
			}
			if names[m.Name] {
				return fmt.Errorf("%s[%d]: name %q used twice", kind.name, i, m.Name)
			}
			names[m.Name] = true
			if time.Duration(m.RescanInterval) < time.Second {
				return fmt.Errorf("%s[%d]: rescan_interval %s is shorter than 1s", kind.name, i, m.RescanInterval)
			}
		}
	}
	if time.Duration(c.Archive.RefreshInterval) < time.Second {
		return fmt.Errorf("archive.refresh_interval must be at least 1s")
	}
	if time.Duration(c.Archive.LeaseTTL) < 3*time.Second {
		return fmt.Errorf("archive.lease_ttl must be at least 3s")
	}
	if u := c.Archive.URL; u != "" {
		parsed, err := url.Parse(u)
		switch {
		case err != nil || parsed.Scheme != "postgres" && parsed.Scheme != "postgresql":
			return fmt.Errorf("archive.url: want postgres://user@host:port/database")
		case parsed.User != nil:
			if _, set := parsed.User.Password(); set {
				return fmt.Errorf("archive.url: a password must not be written in the configuration: use a .pgpass file or PGPASSWORD")
			}
		}
	}
	if rw := c.RemoteWrite; rw.URL != "" {
		u, err := url.Parse(rw.URL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
			return fmt.Errorf("remote_write.url %q: want http(s)://host/path", rw.URL)
		case time.Duration(rw.Interval) < time.Second:
			return fmt.Errorf("remote_write.interval must be at least 1s")
		case time.Duration(rw.MaxSampleAge) < 24*time.Hour:
			return fmt.Errorf("remote_write.max_sample_age must be at least 1d")
		case rw.BasicAuth != nil && (rw.BasicAuth.Username == "" || rw.BasicAuth.PasswordFile == ""):
			return fmt.Errorf("remote_write.basic_auth needs username and password_file")
		}
		for name, value := range rw.Headers {
			switch {
			case !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value):
				return fmt.Errorf("remote_write.headers: %q: not a valid header", name)
			case slices.Contains([]string{"authorization", "content-type", "content-encoding", "content-length", "host",
				"user-agent", "x-prometheus-remote-write-version"}, strings.ToLower(name)):
				return fmt.Errorf("remote_write.headers: %s is set by the protocol (use basic_auth for credentials)", name)
			}
		}
	}
	switch {
	case c.Limits.ReportersPerDomain < 1:
		return fmt.Errorf("limits.reporters_per_domain must be at least 1")
	case c.Limits.Domains < 1:
		return fmt.Errorf("limits.domains must be at least 1")
	case c.Limits.SourcesPerDomain < 1:
		return fmt.Errorf("limits.sources_per_domain must be at least 1")
	case c.Limits.LabelLength < 16:
		return fmt.Errorf("limits.label_length must be at least 16")
	case time.Duration(c.State.DedupRetention) < 24*time.Hour:
		return fmt.Errorf("state.dedup_retention must be at least 1d")
	case time.Duration(c.Archive.Retention) < 24*time.Hour:
		return fmt.Errorf("archive.retention must be at least 1d")
	case c.Archive.MaxRawBytes < 0:
		return fmt.Errorf("archive.max_raw_bytes must not be negative")
	case *c.DNS.Interval != 0 && time.Duration(*c.DNS.Interval) < time.Minute:
		return fmt.Errorf("dns.interval must be 0 (off) or at least 1m")
	case c.FailureSamples < 0 || c.FailureSamples > MaxFailureSamples:
		return fmt.Errorf("failure_samples must be between 0 and %d", MaxFailureSamples)
	}
	return nil
}

// SourceNames lists the names of every source.
func (c *Config) SourceNames() []string {
	var names []string
	for _, d := range c.Directories {
		names = append(names, d.Name)
	}
	for _, m := range c.IMAP {
		names = append(names, m.Name)
	}
	for _, m := range append(slices.Clone(c.Mbox), c.Maildir...) {
		names = append(names, m.Name)
	}
	return names
}

// Covering returns the most specific of domains that is name or a domain
// above it ("" for none): the configured domain a report's policy domain
// counts for.
func Covering(name string, domains []string) string {
	best := ""
	for _, d := range domains {
		if (name == d || strings.HasSuffix(name, "."+d)) && len(d) > len(best) {
			best = d
		}
	}
	return best
}

// NormalizeDomain lower-cases a domain name, drops a trailing dot, and
// writes an internationalised name in its A-label form (RFC 5891,
// "exämple.com" is "xn--exmple-cua.com"), so that two names never share a
// label and a report's name matches the configured one however either
// was written. A name that is no valid IDN is left as it is.
func NormalizeDomain(s string) string {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if ascii, err := idna.Punycode.ToASCII(s); err == nil {
		return ascii
	}
	return s
}

// validDomain checks the syntax of a host name (RFC 1123 labels; "_" is
// allowed, as in DNS names used for mail).
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
