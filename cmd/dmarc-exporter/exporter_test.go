package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// These tests run the real binary, built once by TestMain, and read its
// /metrics over HTTP, as Prometheus would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dmarc-exporter-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binary, err = testenv.BuildExporter(dir, "."); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type exporter struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *testenv.SyncBuffer
}

// startExporter starts the binary and waits until it answers; it is killed
// when the test ends.
func startExporter(t *testing.T, args ...string) *exporter {
	t.Helper()
	return startExporterWhen(t, func(code int) bool { return code == http.StatusOK }, args...)
}

// startExporterWhen starts the binary and waits until /-/healthy answers
// with a status that ready accepts.
func startExporterWhen(t *testing.T, ready func(code int) bool, args ...string) *exporter {
	t.Helper()
	addr := testenv.FreeAddr(t)
	e := &exporter{t: t, url: "http://" + addr, logs: &testenv.SyncBuffer{}}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--dns.resolver") }) {
		// No resolver: source names are "unknown" wherever the tests run,
		// with or without a network.
		args = append(args, "--dns.resolver=127.0.0.1:1")
	}
	e.cmd = exec.Command(binary, append(args, "--web.listen-address="+addr, "--log.level=debug")...)
	e.cmd.Stdout = e.logs
	e.cmd.Stderr = e.logs
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.kill)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(e.url + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			if ready(resp.StatusCode) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not start: %v\n%s", err, e.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *exporter) kill() {
	if e.cmd.ProcessState == nil {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	}
}

// stop ends the exporter as a service manager does and checks its exit.
func (e *exporter) stop() {
	e.t.Helper()
	e.cmd.Process.Signal(syscall.SIGTERM)
	if err := e.cmd.Wait(); err != nil {
		e.t.Fatalf("exit: %v\n%s", err, e.logs)
	}
}

func (e *exporter) families() map[string]*dto.MetricFamily {
	e.t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return mfs
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// waitScans waits until every source completed n scans.
func (e *exporter) waitScans(n int, sources ...string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		done := 0
		if mf := e.families()["dmarc_source_scans_total"]; mf != nil {
			for _, m := range mf.GetMetric() {
				if value(m) >= float64(n) {
					done++
				}
			}
		}
		if done >= len(sources) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("sources %v did not complete %d scans\n%s", sources, n, e.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// volatile families change from run to run.
var volatile = map[string]bool{
	"dmarc_exporter_build_info":                                   true,
	"dmarc_exporter_state_last_write_timestamp_seconds":           true,
	"dmarc_exporter_config_last_reload_success_timestamp_seconds": true,
	"dmarc_source_last_scan_timestamp_seconds":                    true,
	"dmarc_source_scans_total":                                    true,
	"dmarc_reporter_last_report_timestamp_seconds":                true, // ingest time
}

// exposition renders the dmarc_ families as sorted "name{labels} value"
// lines; with counters true, only the report counters and gauges.
func exposition(mfs map[string]*dto.MetricFamily, counters bool) string {
	var lines []string
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "dmarc_") && !strings.HasPrefix(name, "smtp_tls_") || volatile[name] ||
			strings.HasPrefix(name, "dmarc_enrichment_") { // lookup counts depend on timing
			continue
		}
		// Counted data, not the health of this process, when comparing runs.
		if counters && (strings.HasPrefix(name, "dmarc_exporter_") || strings.HasPrefix(name, "dmarc_imap_") ||
			strings.HasPrefix(name, "dmarc_source_") && name != "dmarc_source_messages_total") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			lines = append(lines, fmt.Sprintf("%s{%s} %g", name, strings.Join(labels, ","), value(m)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// TestExporterGolden ingests the corpus from four directories and compares
// the whole dmarc_ exposition, read over HTTP, with a golden file.
func TestExporterGolden(t *testing.T) {
	agg, mail := filepath.Join(testdata, "corpus/aggregate"), filepath.Join(testdata, "corpus/email")
	failure, tls := filepath.Join(testdata, "corpus/failure"), filepath.Join(testdata, "corpus/smtp_tls")
	e := startExporter(t, "--source.dir="+agg, "--source.dir="+mail, "--source.dir="+failure, "--source.dir="+tls,
		"--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	e.waitScans(1, agg, mail, failure, tls)
	mfs := e.families()
	got := exposition(mfs, false)
	path := filepath.Join(testdata, "golden", "metrics.txt")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("exposition differs from %s (run with -update and review the diff):\n%s", path, lineDiff(string(want), got))
	}

	// The messages counted are the sum of the record counts of every
	// distinct report, however often it was delivered.
	var sum float64
	for _, m := range mfs["dmarc_messages_total"].GetMetric() {
		sum += value(m)
	}
	if want := distinctMessages(t, agg, mail); sum != float64(want) {
		t.Errorf("sum of dmarc_messages_total = %v, want %d", sum, want)
	}
	e.stop()
}

// distinctMessages sums the valid record counts of every distinct report
// in the directories, with the parser alone.
func distinctMessages(t *testing.T, dirs ...string) uint64 {
	seen := map[string]bool{}
	var total uint64
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			var reports []uint64
			var ids []string
			err := report.Walk(bytes.NewReader(data), report.DefaultLimits(), func(d report.Document) error {
				if d.Kind != report.KindAggregate {
					return nil // counted in other metrics

				}
				dec := report.NewAggregateDecoder(d.Body, report.DefaultLimits())
				h, err := dec.Header()
				if err != nil {
					return err
				}
				var n uint64
				for r, err := range dec.All() {
					if err != nil {
						return err
					}
					n += r.Count
				}
				reports = append(reports, n)
				ids = append(ids, fmt.Sprint(h.Metadata.Email, h.Metadata.ReportID, h.Metadata.Begin, h.Metadata.End, h.Policy.Domain))
				return nil
			})
			if err != nil {
				continue // a rejected file counts nothing
			}
			for i, id := range ids {
				if !seen[id] {
					seen[id] = true
					total += reports[i]
				}
			}
		}
	}
	return total
}

func lineDiff(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var out []string
	for l := range w {
		if !g[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range g {
		if !w[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// copyTree copies the files of dirs into dst, copies times over, with
// modification times in the past so that they count as settled.
func copyTree(t *testing.T, dst string, copies int, dirs ...string) int {
	t.Helper()
	n := 0
	old := time.Now().Add(-time.Hour)
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for c := range copies {
				target := filepath.Join(dst, fmt.Sprintf("%d-%s-%s", c, filepath.Base(dir), filepath.Base(f)))
				if err := os.WriteFile(target, data, 0o644); err != nil {
					t.Fatal(err)
				}
				os.Chtimes(target, old, old)
				n++
			}
		}
	}
	return n
}

func countFiles(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	return len(files)
}

// TestCrash kills the exporter with SIGKILL at random moments during ingest,
// many times, restarts it, and checks that the counters equal those of a
// clean run: no report lost, none counted twice, no file lost.
func TestCrash(t *testing.T) {
	corpus := []string{filepath.Join(testdata, "corpus/aggregate"), filepath.Join(testdata, "corpus/email")}
	run := func(dir string, kills int, rng *rand.Rand) (string, int) {
		src, archive, invalid, state := filepath.Join(dir, "src"), filepath.Join(dir, "archive"), filepath.Join(dir, "invalid"), filepath.Join(dir, "state")
		for _, d := range []string{src, archive, invalid} {
			os.MkdirAll(d, 0o755)
		}
		// Every report many times over (all but the first are duplicates),
		// so that ingest takes long enough to be interrupted often.
		files := copyTree(t, src, 8, corpus...)
		cfg := filepath.Join(dir, "config.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("directories:\n  - name: src\n    path: %s\n    archive_dir: %s\n    invalid_dir: %s\n", src, archive, invalid)), 0o644)
		args := []string{"--config.file=" + cfg, "--storage.path=" + state, "--metrics.new-series-delay=0s"}
		midIngest := 0
		for i := range kills {
			e := startExporter(t, args...)
			if i%2 == 0 {
				// Wait for a first save (files move only after one),
				// then kill a little later: mid-ingest.
				before := countFiles(archive) + countFiles(invalid)
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) &&
					countFiles(archive)+countFiles(invalid) == before && countFiles(src) > 0; {
					time.Sleep(time.Millisecond)
				}
			}
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
			e.cmd.Process.Signal(syscall.SIGKILL)
			e.cmd.Wait()
			if left := countFiles(src); left > 0 && left < files {
				midIngest++
			}
		}
		if kills > 0 {
			t.Logf("%d of %d kills came mid-ingest", midIngest, kills)
		}
		if kills > 0 && midIngest < 2 {
			t.Fatalf("only %d of %d kills came mid-ingest: the test proves nothing", midIngest, kills)
		}
		e := startExporter(t, args...)
		e.waitScans(1, "src") // reads what is left, moves what was read before a crash
		got := exposition(e.families(), true)
		e.stop()
		left, _ := filepath.Glob(filepath.Join(src, "*"))
		archived, _ := filepath.Glob(filepath.Join(archive, "*"))
		rejected, _ := filepath.Glob(filepath.Join(invalid, "*"))
		if len(left) != 0 || len(archived)+len(rejected) != files {
			t.Errorf("%d files: %d left, %d archived, %d invalid", files, len(left), len(archived), len(rejected))
		}
		return got, len(rejected)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	clean, cleanRejected := run(t.TempDir(), 0, rng)
	crashed, crashRejected := run(t.TempDir(), 15, rng)
	if clean != crashed {
		t.Errorf("counters after crashes differ from a clean run:\n%s", lineDiff(clean, crashed))
	}
	if cleanRejected != crashRejected {
		t.Errorf("%d files rejected after crashes, %d in a clean run", crashRejected, cleanRejected)
	}
}

// TestReload: a bad configuration on reload keeps the running one and says
// so in a gauge; a good one takes effect; both POST /-/reload and SIGHUP.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	src := filepath.Join(testdata, "corpus/aggregate")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("domains: [example.com]\ndirectories:\n  - name: corpus\n    path: %s\n", src))
	e := startExporter(t, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "state"), "--web.enable-lifecycle")
	e.waitScans(1, "corpus")
	domains := func() []string {
		var out []string
		for _, m := range e.families()["dmarc_domain_reports_total"].GetMetric() {
			out = append(out, m.GetLabel()[0].GetValue())
		}
		sort.Strings(out)
		return out
	}
	gauge := func() float64 {
		return value(e.families()["dmarc_exporter_config_last_reload_successful"].GetMetric()[0])
	}
	post := func() int {
		resp, err := http.Post(e.url+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := domains(); fmt.Sprint(got) != "[example.com]" {
		t.Fatalf("domains %v", got)
	}

	write("domains: [example.com]\nno_such_key: 1\n")
	resp, err := http.Post(e.url+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("bad reload answered %d", resp.StatusCode)
	}
	// The reason stays in the log: it names paths and quotes files.
	if strings.Contains(string(body), "no_such_key") || strings.Contains(string(body), dir) {
		t.Errorf("the answer to a bad reload gives its reason away: %s", body)
	}
	if gauge() != 0 {
		t.Error("config_last_reload_successful not 0 after a bad reload")
	}
	// The log reaches the test through a pipe: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.logs.String(), "line 2: unknown key no_such_key"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say why the reload failed:\n%s", e.logs)
		}
	}
	if got := domains(); fmt.Sprint(got) != "[example.com]" {
		t.Fatalf("domains %v after a bad reload", got)
	}

	write(fmt.Sprintf("domains: [example.com, example.net]\ndirectories:\n  - name: corpus\n    path: %s\n", src))
	e.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for gauge() != 1 || fmt.Sprint(domains()) != "[example.com example.net]" {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP reload not applied: gauge %v, domains %v", gauge(), domains())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := post(); code != http.StatusOK {
		t.Errorf("good reload answered %d", code)
	}
	e.stop()
}

func TestConfigCheck(t *testing.T) {
	// The example names its source relative to the repository's root.
	check := exec.Command(binary, "--config.file=examples/dmarc-exporter.yml", "--config.check")
	check.Dir = filepath.Join("..", "..")
	out, err := check.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Errorf("example config: %v: %s", err, out)
	}
	// A source directory that is not there, or may not be read.
	unreadable := t.TempDir()
	os.Chmod(unreadable, 0)
	defer os.Chmod(unreadable, 0o700)
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), unreadable} {
		out, err := exec.Command(binary, "--source.dir="+dir, "--config.check").CombinedOutput()
		if os.Geteuid() == 0 && dir == unreadable {
			continue // root reads it all the same
		}
		if err == nil || !strings.Contains(string(out), "directory source "+dir) {
			t.Errorf("source %s: %v: %s", dir, err, out)
		}
	}
	out, err = exec.Command(binary, "--config.file="+filepath.Join("..", "..", "config", "testdata", "unknown-key.bad.yml"), "--config.check").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line 4: unknown key archve_dir (did you mean archive_dir?)") {
		t.Errorf("bad config: %v: %s", err, out)
	}
}

// TestWebConfig: --web.config.file (exporter-toolkit) protects /metrics
// with basic auth.
func TestWebConfig(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte(fmt.Sprintf("basic_auth_users:\n  prometheus: %s\n", hash)), 0o600)
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(binary, "--source.dir="+filepath.Join(testdata, "derived"), "--storage.path="+dir,
		"--web.listen-address="+addr, "--web.config.file="+webCfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(10 * time.Second); get("", "") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not listening\n%s", logs.String())
		}
	}
	if code := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d", code)
	}
	if code := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", code)
	}
	if code := get("prometheus", "s3cret"); code != http.StatusOK {
		t.Errorf("right password: %d", code)
	}
}
