// Package dashboards holds the Grafana dashboards of dmarc-exporter, as
// JSON for Grafana's current schema. They are edited as JSON (a diff shows
// exactly what changed in Grafana's own format) and checked here: valid
// JSON, fixed uids, unique panel ids, every panel and query on the
// ${datasource} variable, and every metric a query names served by the
// real exporter (or recorded by rules/dmarc.rules.yml), the IMAP source's
// against a real Dovecot.
package dashboards

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dmarc-exporter/dmarc-exporter/explorer"
	"github.com/dmarc-exporter/dmarc-exporter/history"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

type dashboard struct {
	UID         string `json:"uid"`
	Title       string `json:"title"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		FieldConfig struct {
			Defaults struct {
				Links []struct {
					Title string `json:"title"`
					URL   string `json:"url"`
				} `json:"links"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr       string `json:"expr"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

// Load returns every dashboard of this folder by file name.
func load(t *testing.T) map[string]dashboard {
	t.Helper()
	files, _ := filepath.Glob("*.json")
	if len(files) < 2 {
		t.Fatalf("%d dashboards", len(files))
	}
	out := map[string]dashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

func TestDashboardsWellFormed(t *testing.T) {
	uids := map[string]bool{}
	for f, d := range load(t) {
		if d.UID == "" || uids[d.UID] {
			t.Errorf("%s: uid %q missing or not unique", f, d.UID)
		}
		uids[d.UID] = true
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
		}
		if vars["datasource"] != "datasource" || vars["domain"] != "query" {
			t.Errorf("%s: variables %v, want datasource and domain", f, vars)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d repeated", f, p.ID)
			}
			ids[p.ID] = true
			if p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel %q on datasource %q", f, p.Title, p.Datasource.UID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, q := range p.Targets {
				if q.Datasource.UID != "${datasource}" {
					t.Errorf("%s: a query of %q on datasource %q", f, p.Title, q.Datasource.UID)
				}
			}
		}
	}
}

// variableRE finds Grafana's ${...} variables.
var variableRE = regexp.MustCompile(`\$\{([^}]+)\}`)

// TestDashboardsExplorerLinks: every data link leads to a page of the
// report explorer with a query it reads, once Grafana has put in values.
func TestDashboardsExplorerLinks(t *testing.T) {
	n := 0
	for f, d := range load(t) {
		for _, p := range d.Panels {
			for _, l := range p.FieldConfig.Defaults.Links {
				n++
				rest, ok := strings.CutPrefix(l.URL, "${explorer}/")
				if !ok {
					t.Errorf("%s: panel %q links to %s, not under ${explorer}", f, p.Title, l.URL)
					continue
				}
				filled := variableRE.ReplaceAllStringFunc(rest, func(v string) string {
					switch v {
					case "${__from}":
						return "1704067200000"
					case "${__to}":
						return "1706745600000"
					}
					if strings.Contains(v, "source_asn") {
						return "unknown" // the label without an ASN database
					}
					if strings.Contains(v, "class") {
						return "unknown"
					}
					return "example.com"
				})
				u, err := url.Parse("/" + filled)
				if err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, err)
					continue
				}
				if !slices.Contains([]string{"/reports", "/sources", "/tls", "/failures"}, u.Path) {
					t.Errorf("%s: panel %q links to %s, not an explorer page", f, p.Title, u.Path)
				}
				if _, err := explorer.ParseQuery(u.Query()); err != nil {
					t.Errorf("%s: panel %q: the explorer refuses %s: %v", f, p.Title, filled, err)
				}
			}
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		if strings.Contains(fmt.Sprint(d.Panels), "${explorer}") && !vars["explorer"] {
			t.Errorf("%s: links use ${explorer}, which is not a variable", f)
		}
	}
	if n < 8 {
		t.Errorf("%d data links to the explorer, want the domain, reporter and source panels' (8 at least)", n)
	}
}

// metricRE finds the metric and recording rule names a query uses.
var metricRE = regexp.MustCompile(`\b((?:dmarc_|smtp_tls_|domain:)[a-zA-Z0-9_:]*)`)

// TestDashboardsQueryServedMetrics runs the real exporter on the test
// reports and checks that every metric a dashboard names is served.
func TestDashboardsQueryServedMetrics(t *testing.T) {
	// Once on every kind of test report, once on a domain whose DNS
	// records a test server serves: the union is everything served.
	var args []string
	for _, kind := range []string{"aggregate", "email", "failure", "smtp_tls"} {
		args = append(args, "--source.dir=../testdata/corpus/"+kind)
	}
	asnDB := testenv.WriteMMDB(t, "GeoLite2-ASN", testenv.CorpusNetworks, testenv.GeoLiteASN)
	args = append(args, "--senders.asn-database="+asnDB, "--dns.resolver=127.0.0.1:1")
	served := exporterMetrics(t, "dmarc_source_scans_total", 4, args...)
	dnsServer := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	for name := range exporterMetrics(t, "dmarc_dns_record_hash", 4, "--source.dir=../testdata/derived",
		"--domain=good.example.test", "--dns.resolver="+dnsServer.Addr) {
		served[name] = true
	}
	// And once on a real mailbox, for the IMAP source's own metrics.
	mail := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{"rua": "pw"}})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("pw"), 0o600)
	_, port, _ := strings.Cut(mail.IMAPSAddr, ":")
	cfg := fmt.Sprintf("imap:\n  - {name: rua, host: localhost, port: %s, ca_file: %s, username: rua, password_file: %s, archive_folder: A}\n",
		port, mail.CAFile, filepath.Join(dir, "pw"))
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644)
	for name := range exporterMetrics(t, "dmarc_source_scans_total", 1, "--config.file="+filepath.Join(dir, "config.yml")) {
		served[name] = true
	}
	// The report-time series are pushed by remote write and written by
	// export openmetrics, not served on /metrics.
	for _, f := range history.Families {
		served[f.Name] = true
	}
	recorded := recordingRules(t)
	for f, d := range load(t) {
		for _, a := range d.Annotations.List {
			for _, m := range metricRE.FindAllString(a.Expr, -1) {
				if !served[m] && !recorded[m] {
					t.Errorf("%s: annotation %q names %s, which the exporter does not serve", f, a.Name, m)
				}
			}
		}
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				for _, m := range metricRE.FindAllString(q.Expr, -1) {
					if !served[m] && !recorded[m] {
						t.Errorf("%s: panel %q names %s, which the exporter does not serve", f, p.Title, m)
					}
				}
			}
		}
	}
}

func recordingRules(t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, r := range testenv.LoadRules(t, "../rules/dmarc.rules.yml") {
		if r.Record != "" {
			out[r.Record] = true
		}
	}
	return out
}

// exporterMetrics builds and runs the exporter with args, waits until the
// family waitFor has n series of value 1 or more, and returns the names of
// the metric families it serves.
func exporterMetrics(t *testing.T, waitFor string, n int, args ...string) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin, err := testenv.BuildExporter(dir, "../cmd/dmarc-exporter")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, append(args, "--web.listen-address="+addr, "--storage.path="+dir)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not serve %d series of %s", n, waitFor)
		}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, m := range mfs[waitFor].GetMetric() {
			if m.GetCounter().GetValue() >= 1 || m.GetGauge().GetValue() >= 1 {
				done++
			}
		}
		if done < n {
			continue
		}
		out := map[string]bool{}
		for name := range mfs {
			out[name] = true
		}
		return out
	}
}
