package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadConfigs: each file in testdata/*.bad.yml fails with an error that
// names the problem and, for YAML errors, its line.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-key.bad.yml":             "line 4: unknown key archve_dir (did you mean archive_dir?)",
		"typo-key.bad.yml":                "line 3: unknown key rescan_intervall (did you mean rescan_interval?)",
		"wrong-type.bad.yml":              `line 3: limits.reporters_per_domain: expected a whole number, got a string ("many")`,
		"domains-not-list.bad.yml":        `line 1: domains: expected a list, got a string ("example.com")`,
		"bad-domain.bad.yml":              `domains[0]: "exa mple.com" is not a domain name`,
		"duplicate-domain.bad.yml":        `domains[1]: "example.com." listed twice`,
		"no-path.bad.yml":                 "directories[0]: path is required",
		"bad-duration.bad.yml":            `line 3: not a valid duration string: "soon"`,
		"short-rescan.bad.yml":            "directories[0]: rescan_interval 10ms is shorter than 1s",
		"expected-unknown-domain.bad.yml": `expected_reporters: "example.org" is not one of the domains`,
		"imap-password.bad.yml":           "imap[0] (dmarc@example.com@imap.example.com/INBOX): password must not be written in the configuration: use password_file or password_env",
		"imap-plaintext.bad.yml":          "tls: plain sends the password in clear text; set insecure: true to allow it",
		"imap-oauth-no-token.bad.yml":     "oauth2 needs a refresh token, or a client secret for the client credentials flow",
		"senders-network.bad.yml":         `senders.trusted: example.com: "192.0.2.0/33" is not a network`,
		"imap-size.bad.yml":               `line 5: "lots" is not a size (such as 32MiB or 500KB)`,
		"mailbox-name-twice.bad.yml":      `maildir[0]: name "takeout" used twice`,
		"mailbox-no-path.bad.yml":         "maildir[0]: path is missing",
		"remote-write-url.bad.yml":        `remote_write.url "prometheus:9090/api/v1/write": want http(s)://host/path`,
		"remote-write-age.bad.yml":        "remote_write.max_sample_age must be at least 1d",
		"remote-write-header.bad.yml":     "remote_write.headers: Content-Type is set by the protocol",
		"archive-url-password.bad.yml":    "archive.url: a password must not be written in the configuration",
	}
	files, _ := filepath.Glob("testdata/*.bad.yml")
	if len(files) != len(want) {
		t.Fatalf("%d bad configs in testdata, %d expected errors", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("loaded")
			}
			if w := want[filepath.Base(f)]; !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q, want it to contain %q", err, w)
			}
			if !strings.HasPrefix(err.Error(), f+": ") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// TestExample: the example configuration in the repository is valid and
// means what its comments say.
func TestExample(t *testing.T) {
	c, err := Load("../examples/dmarc-exporter.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Domains) != 2 || len(c.Directories) != 1 || len(c.IMAP) != 1 {
		t.Fatalf("%+v", c)
	}
	d := c.Directories[0]
	if d.Name != "reports" || time.Duration(d.RescanInterval) != 5*time.Minute || time.Duration(d.SettleTime) != 2*time.Second {
		t.Errorf("directory %+v", d)
	}
	if m := c.IMAP[0]; m.Name != "rua" || m.Port != 993 || m.MaxMessageSize != 32<<20 || m.ArchiveFolder != "DMARC/Archive" {
		t.Errorf("imap %+v", m)
	}
	if tr := c.Senders.Trusted["example.com"]; len(tr.Prefixes) != 1 || tr.Prefixes[0].String() != "192.0.2.0/24" || !tr.SPF || len(tr.Services) != 2 || !*c.Senders.ReverseDNS {
		t.Errorf("senders %+v", c.Senders)
	}
	if c.Limits != (Limits{ReportersPerDomain: 100, Domains: 100, LabelLength: 64, SourcesPerDomain: 100}) {
		t.Errorf("limits %+v", c.Limits)
	}
}

// TestIMAPDefaults: ports follow the TLS mode, OAuth2 implies XOAUTH2.
func TestIMAPDefaults(t *testing.T) {
	c, err := Parse([]byte(`imap:
  - host: imap.example.com
    username: rua@example.com
    password_env: IMAP_PASSWORD
  - host: imap.example.com
    name: oauth
    tls: starttls
    username: rua@example.com
    oauth2:
      token_url: https://oauth2.googleapis.com/token
      client_id: id
      client_secret_env: SECRET
      refresh_token_file: /run/secrets/refresh
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.IMAP[0], c.IMAP[1]
	if a.Port != 993 || a.Folder != "INBOX" || a.Auth != "plain" || a.Name != "rua@example.com@imap.example.com/INBOX" ||
		a.MaxMessageSize != DefaultIMAPMaxMessageSize || a.PollInterval != DefaultIMAPPollInterval {
		t.Errorf("imap[0] %+v", a)
	}
	if b.Port != 143 || b.Auth != "xoauth2" {
		t.Errorf("imap[1] %+v", b)
	}
	if _, err := Parse([]byte("imap:\n  - host: h\n    username: u\n    password_env: P\n  - host: h\n    username: u\n    password_env: Q\n")); err == nil ||
		!strings.Contains(err.Error(), "used twice") {
		t.Errorf("two sources with one name: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("directories:\n  - path: /srv/reports\ndomains: [Example.COM.]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Domains[0] != "example.com" {
		t.Errorf("domain %q not normalised", c.Domains[0])
	}
	d := c.Directories[0]
	if d.Name != "/srv/reports" || d.RescanInterval != DefaultRescanInterval || d.SettleTime != DefaultSettleTime {
		t.Errorf("directory defaults %+v", d)
	}
	if c.State.DedupRetention != DefaultDedupRetention || c.Limits.ReportersPerDomain != DefaultReportersPerDomain {
		t.Errorf("defaults %+v %+v", c.State, c.Limits)
	}
	if _, err := Parse(nil); err != nil {
		t.Errorf("empty configuration: %v", err)
	}
}
