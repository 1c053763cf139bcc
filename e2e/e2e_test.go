// Package e2e runs dmarc-exporter with a real Prometheus and a real
// Alertmanager (Debian packages prometheus and prometheus-alertmanager,
// installed by `make deps`): the shipped rules fire and reach a webhook,
// and every query of the rules and dashboards runs. A missing binary fails.
package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

func lookPath(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("none of %v installed (Debian packages prometheus, prometheus-alertmanager; make deps)", names)
	return ""
}

// start runs a command until the test ends and waits for url to answer.
func start(t *testing.T, name, readyURL string, cmd *exec.Cmd) {
	t.Helper()
	logs := &strings.Builder{}
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s log:\n%s", name, logs.String())
			mu.Unlock()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready at %s: %v", name, readyURL, err)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEnd: exporter → Prometheus with rules/ → Alertmanager → webhook.
func TestEndToEnd(t *testing.T) {
	promBin := lookPath(t, "prometheus")
	amBin := lookPath(t, "prometheus-alertmanager", "alertmanager")
	dir := t.TempDir()

	// The exporter, built from this tree.
	bin, err := testenv.BuildExporter(dir, "../cmd/dmarc-exporter")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	asnDB := testenv.WriteMMDB(t, "GeoLite2-ASN", testenv.CorpusNetworks, testenv.GeoLiteASN)
	args := []string{"--storage.path=" + state, "--senders.asn-database=" + asnDB, "--dns.resolver=127.0.0.1:1"}
	for _, kind := range []string{"aggregate", "email", "failure", "smtp_tls"} {
		args = append(args, "--source.dir=../testdata/corpus/"+kind)
	}
	// A first run reads the reports and saves them.
	exporterAddr := testenv.FreeAddr(t)
	first := exec.Command(bin, append(args, "--web.listen-address="+exporterAddr)...)
	start(t, "exporter (first run)", "http://"+exporterAddr+"/-/ready", first)
	waitFor(t, "the first run to read every source", func() bool {
		m := get(t, "http://"+exporterAddr+"/metrics")
		for _, kind := range []string{"aggregate", "email", "failure", "smtp_tls"} {
			if !strings.Contains(m, `dmarc_source_scans_total{source="../testdata/corpus/`+kind+`"} 1`) {
				return false
			}
		}
		return true
	})
	first.Process.Signal(os.Interrupt)
	first.Wait()

	// The clock under the test's control: Google last reported for
	// marketdojo.com five days ago, as far as the state knows.
	silenced := ageReporter(t, filepath.Join(state, archive.FileName), "marketdojo.com", "google.com", 5*24*time.Hour)

	exporterAddr = testenv.FreeAddr(t)
	start(t, "exporter", "http://"+exporterAddr+"/-/ready",
		exec.Command(bin, append(args, "--web.listen-address="+exporterAddr)...))

	// A second exporter watches the DNS records of a domain, which an
	// authoritative test server serves, and reads a real Dovecot mailbox,
	// so that the DNS and IMAP panels have data.
	dnsServer := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	mailCfg := mailbox(t, dir)
	dnsExporterAddr := testenv.FreeAddr(t)
	start(t, "exporter (DNS)", "http://"+dnsExporterAddr+"/-/ready", exec.Command(bin,
		"--web.listen-address="+dnsExporterAddr, "--storage.path="+filepath.Join(dir, "state-dns"),
		"--config.file="+mailCfg, "--source.dir=../testdata/derived", "--domain=good.example.test", "--dns.resolver="+dnsServer.Addr))

	// The webhook Alertmanager delivers to.
	alerts := make(chan map[string]string, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Alerts []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		json.NewDecoder(r.Body).Decode(&msg)
		for _, a := range msg.Alerts {
			if a.Status == "firing" {
				alerts <- a.Labels
			}
		}
	}))
	defer hook.Close()

	amAddr := testenv.FreeAddr(t)
	amCfg := filepath.Join(dir, "alertmanager.yml")
	write(t, amCfg, fmt.Sprintf(`route:
  receiver: hook
  group_by: [alertname, domain, reporter]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
        send_resolved: false
`, hook.URL))
	start(t, "alertmanager", "http://"+amAddr+"/-/ready", exec.Command(amBin, "--config.file="+amCfg,
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr, "--cluster.listen-address="))

	// The shipped rules, with their `for:` durations cut to a second: the
	// test cannot wait an hour.
	rules, err := os.ReadFile("../rules/dmarc.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	fastRules := regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAllString(string(rules), "$1 1s")
	write(t, filepath.Join(dir, "rules.yml"), fastRules)
	promAddr := testenv.FreeAddr(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	write(t, promCfg, fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: dmarc
    static_configs:
      - targets: [%q, %q]
`, filepath.Join(dir, "rules.yml"), amAddr, exporterAddr, dnsExporterAddr))
	start(t, "prometheus", "http://"+promAddr+"/-/ready", exec.Command(promBin, "--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "prom"), "--web.listen-address="+promAddr))

	// The silent reporter's alert reaches the webhook with its labels.
	deadline := time.After(60 * time.Second)
	for got := false; !got; {
		select {
		case a := <-alerts:
			if a["alertname"] == "DMARCReporterSilent" {
				want := map[string]string{"domain": silenced[0], "reporter": silenced[1], "severity": "warning", "job": "dmarc"}
				for k, v := range want {
					if a[k] != v {
						t.Errorf("alert label %s=%q, want %q (%v)", k, a[k], v, a)
					}
				}
				got = true
			}
		case <-deadline:
			t.Fatal("DMARCReporterSilent did not reach the webhook")
		}
	}

	// Every query of the rules and dashboards runs; every panel has data.
	api := "http://" + promAddr + "/api/v1/query"
	for _, q := range ruleQueries(t) {
		if _, err := query(api, q); err != nil {
			t.Errorf("rule expression %q: %v", q, err)
		}
	}
	// (cmd/dmarc-exporter's TestRemoteWrite runs the report-day dashboard
	// on the series it pushes.)
	for _, p := range testenv.PanelQueries(t, "../dashboards/*.json") {
		var n int
		var err error
		for i := 0; i < 20; i++ { // rate windows need a few scrapes
			if n, err = query(api, p.Expr); err != nil || n > 0 || strings.Contains(p.File, "report-days") {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("%s: panel %q: %q: %v", p.File, p.Title, p.Expr, err)
		} else if n == 0 && !strings.Contains(p.File, "report-days") { // the report-day series: TestRemoteWrite has them
			t.Errorf("%s: panel %q: %q returns no data", p.File, p.Title, p.Expr)
		}
	}
}

// mailbox starts a Dovecot holding one report mail and returns a
// configuration file that reads it.
func mailbox(t *testing.T, dir string) string {
	t.Helper()
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{"rua": "pw"}})
	d.AppendFile(t, "rua", "pw", "INBOX", "../testdata/corpus/email/freitagsrunde__google.eml")
	write(t, filepath.Join(dir, "pw"), "pw")
	_, port, _ := strings.Cut(d.IMAPSAddr, ":")
	cfg := filepath.Join(dir, "mailbox.yml")
	write(t, cfg, fmt.Sprintf("imap:\n  - {name: rua, host: localhost, port: %s, ca_file: %s, username: rua, password_file: %s, archive_folder: Archive}\n",
		port, d.CAFile, filepath.Join(dir, "pw")))
	return cfg
}

// ageReporter rewrites the archive so that a reporter sent daily
// reports, the newest received age ago, and returns its domain and
// reporter.
func ageReporter(t *testing.T, path, domain, reporter string, age time.Duration) [2]string {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A daily reporter (three reports, a day apart), last heard of age ago.
	last := time.Now().Add(-age)
	ends, _ := json.Marshal([]int64{last.Add(-48 * time.Hour).Unix(), last.Add(-24 * time.Hour).Unix(), last.Unix()})
	res, err := db.Exec("UPDATE reporters SET last_received = ?, ends = ? WHERE domain = ? AND reporter = ?",
		last.Unix(), string(ends), domain, reporter)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("archive has no reporter %s for %s", reporter, domain)
	}
	return [2]string{domain, reporter}
}

func get(t *testing.T, u string) string {
	resp, err := http.Get(u)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// query runs an instant query and returns the number of series.
func query(api, expr string) (int, error) {
	resp, err := http.Get(api + "?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s", r.Error)
	}
	return len(r.Data.Result), nil
}

func ruleQueries(t *testing.T) []string {
	var out []string
	for _, r := range testenv.LoadRules(t, "../rules/dmarc.rules.yml") {
		out = append(out, r.Expr)
	}
	return out
}
