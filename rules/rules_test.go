// Package rules holds the Prometheus alert and recording rules of
// dmarc-exporter (dmarc.rules.yml) and their promtool tests
// (dmarc.test.yml). This test runs promtool, which must be installed
// (Debian package prometheus; `make deps`): a missing promtool fails.
package rules

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

func promtool(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (install the Debian package prometheus, or run make deps): %v", err)
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheck(t *testing.T) { promtool(t, "check", "rules", "dmarc.rules.yml") }

func TestPromtoolTest(t *testing.T) { promtool(t, "test", "rules", "dmarc.test.yml") }

type testFile struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlert: every alert has a severity, a summary, a description and
// a runbook section, and a test case that fires and one that does not.
func TestEveryAlert(t *testing.T) {
	var tests testFile
	data, err := os.ReadFile("dmarc.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatalf("dmarc.test.yml: %v", err)
	}
	runbook, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	anchor := regexp.MustCompile(`#([a-z0-9-]+)$`)
	alerts := 0
	for _, r := range testenv.LoadRules(t, "dmarc.rules.yml") {
		if r.Alert == "" {
			continue
		}
		alerts++
		switch r.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
		}
		for _, k := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[k] == "" {
				t.Errorf("%s: no %s", r.Alert, k)
			}
		}
		m := anchor.FindStringSubmatch(r.Annotations["runbook_url"])
		if m == nil || m[1] != strings.ToLower(r.Alert) || !strings.Contains(string(runbook), "## "+r.Alert+"\n") {
			t.Errorf("%s: runbook_url %q does not lead to a section of docs/runbook.md", r.Alert, r.Annotations["runbook_url"])
		}
		// A case that fires, and one that does not (besides the
		// series of a firing case that must not fire).
		if !fires[r.Alert] {
			t.Errorf("%s: no test case fires it", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no test case expects it silent", r.Alert)
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts", alerts)
	}
}
