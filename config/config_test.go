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
		"unknown-key.bad.yml":             "line 4: field archve_dir not found in type config.Directory",
		"wrong-type.bad.yml":              "line 3: cannot unmarshal !!str `many` into int",
		"bad-domain.bad.yml":              `domains[0]: "exa mple.com" is not a domain name`,
		"duplicate-domain.bad.yml":        `domains[1]: "example.com." listed twice`,
		"no-path.bad.yml":                 "directories[0]: path is required",
		"bad-duration.bad.yml":            `line 3: not a valid duration string: "soon"`,
		"short-rescan.bad.yml":            "directories[0]: rescan_interval 10ms is shorter than 1s",
		"expected-unknown-domain.bad.yml": `expected_reporters: "example.org" is not one of the domains`,
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
	if len(c.Domains) != 2 || len(c.Directories) != 1 {
		t.Fatalf("%+v", c)
	}
	d := c.Directories[0]
	if d.Name != "reports" || time.Duration(d.RescanInterval) != 5*time.Minute || time.Duration(d.SettleTime) != 2*time.Second {
		t.Errorf("directory %+v", d)
	}
	if c.Limits != (Limits{ReportersPerDomain: 100, Domains: 100, LabelLength: 64}) {
		t.Errorf("limits %+v", c.Limits)
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
