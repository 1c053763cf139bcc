package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver, to look into the archive

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// TestExporterOnPostgres: on a PostgreSQL archive (a throwaway cluster of
// Debian's postgresql), the exporter counts the corpus exactly as on
// SQLite, its explorer lists the same reports, and a restart loads the
// same counters without reading anything again.
func TestExporterOnPostgres(t *testing.T) {
	e, _ := startCorpus(t)
	want := countsOf(t, e)
	var wantFailed struct {
		Total int `json:"total"`
	}
	getJSON(t, e.url+"/api/v1/reports?status=failed", &wantFailed)
	e.stop()

	pg := testenv.StartPostgres(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("failure_samples: 100\narchive:\n  url: %q\ndirectories:\n", pg.URL)
	for _, d := range corpusDirs() {
		cfg += fmt.Sprintf("  - path: %q\n", d)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	args := []string{"--config.file=" + cfgFile, "--storage.path=" + filepath.Join(dir, "data"), "--metrics.new-series-delay=0s"}
	for run := range 2 {
		e := startExporter(t, args...)
		e.waitScans(1, corpusDirs()...)
		if got := countsOf(t, e); got != want {
			t.Errorf("run %d: on PostgreSQL the counters differ from SQLite's:\n%s", run, lineDiff(want, got))
		}
		var failed struct {
			Total int `json:"total"`
		}
		getJSON(t, e.url+"/api/v1/reports?status=failed", &failed)
		if failed.Total != wantFailed.Total || failed.Total == 0 {
			t.Errorf("run %d: the explorer lists %d failed reports on PostgreSQL, %d on SQLite", run, failed.Total, wantFailed.Total)
		}
		if run == 1 && e.metric("dmarc_source_files_total", "outcome", "ingested") != 0 {
			t.Errorf("the restart read files again")
		}
		e.stop()
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "dmarc.db")); err == nil {
		t.Error("an SQLite archive was made beside the PostgreSQL one")
	}
	// The commands that read the archive take its URL for --storage.path.
	var stdout, stderr bytes.Buffer
	code := run([]string{"reports", "--storage.path=" + pg.URL, "--format=json", "list", "--status=failed"}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 || !strings.Contains(out, fmt.Sprintf(`"total": %d`, wantFailed.Total)) {
		t.Errorf("reports list on the PostgreSQL archive: status %d\n%s%s", code, out, stderr.String())
	}
}

// TestTwoExportersOnPostgres: two exporters sharing one PostgreSQL
// archive, each reading its own sources (shards), both serve every
// counter, exactly as one exporter reading all the sources.
func TestTwoExportersOnPostgres(t *testing.T) {
	agg, mail := filepath.Join(testdata, "corpus", "aggregate"), filepath.Join(testdata, "corpus", "email")
	one := startExporter(t, "--source.dir="+agg, "--source.dir="+mail, "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	one.waitScans(1, agg, mail)
	want := countsOf(t, one)
	one.stop()

	pg := testenv.StartPostgres(t)
	var shards []*exporter
	for _, dir := range []string{agg, mail} {
		d := t.TempDir()
		cfg := filepath.Join(d, "config.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("archive:\n  url: %q\n  refresh_interval: 1s\ndirectories:\n  - path: %q\n", pg.URL, dir)), 0o644)
		e := startExporter(t, "--config.file="+cfg, "--storage.path="+filepath.Join(d, "data"), "--metrics.new-series-delay=0s")
		e.waitScans(1, dir)
		shards = append(shards, e)
	}
	for i, e := range shards {
		e.waitFor("the other shard's counters", func() bool { return countsOf(t, e) == want })
		if got := countsOf(t, e); got != want {
			t.Errorf("shard %d serves other counters than one exporter reading both sources:\n%s", i, lineDiff(want, got))
		}
	}
	// A shard told to serve one domain serves its series only.
	d := t.TempDir()
	cfg := filepath.Join(d, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("archive:\n  url: %q\ndirectories:\n  - path: %q\n", pg.URL, t.TempDir())), 0o644)
	one = startExporter(t, "--config.file="+cfg, "--storage.path="+filepath.Join(d, "data"), "--metrics.new-series-delay=0s",
		"--shard.domain=marketdojo.com")
	domains := map[string]bool{}
	for _, m := range one.families()["dmarc_messages_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "domain" {
				domains[l.GetValue()] = true
			}
		}
	}
	if len(domains) != 1 || !domains["marketdojo.com"] {
		t.Errorf("the shard of marketdojo.com serves the domains %v", domains)
	}
}

// TestHAPairOnPostgres: two exporters on one configuration and one
// PostgreSQL archive. Exactly one reads the source; killed in the middle
// of its scan, the other takes the source over; in the end every file is
// moved once, every report counted once: the survivor, and the killed one
// started again, serve exactly what one exporter alone serves.
func TestHAPairOnPostgres(t *testing.T) { testHAPair(t, false) }

// TestHAPairDatabaseRestart: the same, with the database restarted in
// the middle of the leader's scan instead: both exporters go on, and in
// the end both serve exactly what one exporter alone serves.
func TestHAPairDatabaseRestart(t *testing.T) { testHAPair(t, true) }

func testHAPair(t *testing.T, restartDatabase bool) {
	agg := filepath.Join(testdata, "corpus", "aggregate")
	// What one exporter alone makes of the same files.
	refSrc, refDone := t.TempDir(), t.TempDir()
	files := copyTree(t, refSrc, 20, agg)
	ref := startExporter(t, "--config.file="+writeConfig(t, fmt.Sprintf("directories:\n  - path: %q\n    archive_dir: %q\n", refSrc, refDone)),
		"--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	ref.waitScans(1, refSrc)
	want := countsOf(t, ref)
	ref.stop()
	moved := countFiles(refDone)

	pg := testenv.StartPostgres(t)
	src, done := t.TempDir(), t.TempDir()
	copyTree(t, src, 20, agg)
	cfg := writeConfig(t, fmt.Sprintf("archive:\n  url: %q\n  refresh_interval: 1s\n  lease_ttl: 3s\ndirectories:\n  - name: reports\n    path: %q\n    archive_dir: %q\n",
		pg.URL, src, done))
	args := []string{"--config.file=" + cfg, "--metrics.new-series-delay=0s"}
	pair := []*exporter{
		startExporter(t, append(args, "--storage.path="+t.TempDir())...),
		startExporter(t, append(args, "--storage.path="+t.TempDir())...),
	}
	leader := func() int {
		n, who := 0, -1
		for i, e := range pair {
			if e.cmd.ProcessState == nil && e.metric("dmarc_exporter_source_leader", "source", "reports") == 1 {
				n++
				who = i
			}
		}
		if n > 1 {
			t.Fatalf("%d exporters read the source at once", n)
		}
		return who
	}
	pair[0].waitFor("a leader", func() bool { return leader() >= 0 })
	first := leader()
	pair[first].waitFor("the leader in the middle of its scan", func() bool {
		return pair[first].metric("dmarc_source_files_total", "source", "reports") >= 100
	})
	if restartDatabase {
		pg.Stop(t)
		if countFiles(done) >= moved {
			t.Fatal("the leader finished before the database stopped: the restart is not tested")
		}
		time.Sleep(time.Second)
		pg.Start(t)
		for i, e := range pair {
			e.waitFor(fmt.Sprintf("exporter %d to count every report after the restart", i), func() bool { return countsOf(t, e) == want })
		}
		pair[0].waitFor("every file moved", func() bool { return countFiles(done) == moved })
		if left := countFiles(src); left+moved != files {
			t.Errorf("%d files left in the source and %d moved, of %d", left, moved, files)
		}
		return
	}
	pair[first].cmd.Process.Kill()
	pair[first].cmd.Wait()
	if countFiles(done) >= moved {
		t.Fatal("the leader finished before it was killed: the takeover is not tested")
	}
	other := pair[1-first]
	other.waitFor("the other exporter to take the source over", func() bool { return leader() == 1-first })
	other.waitFor("every report counted", func() bool { return countsOf(t, other) == want })
	other.waitFor("every file moved", func() bool { return countFiles(done) == moved })
	if left := countFiles(src); left+moved != files {
		t.Errorf("%d files left in the source and %d moved, of %d", left, moved, files)
	}
	again := startExporter(t, append(args, "--storage.path="+t.TempDir())...)
	if got := countsOf(t, again); got != want {
		t.Errorf("the killed exporter, started again, serves other counters:\n%s", lineDiff(want, got))
	}
}

// writeConfig writes a configuration file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestArchiveCopy: an SQLite archive copied into PostgreSQL with `archive
// copy` serves, under archive.url, exactly the counters and reports it
// did, and reads nothing again.
func TestArchiveCopy(t *testing.T) {
	e, storage := startCorpus(t)
	want := countsOf(t, e)
	var wantReports struct {
		Total int `json:"total"`
	}
	getJSON(t, e.url+"/api/v1/reports", &wantReports)
	e.stop()
	pg := testenv.StartPostgres(t)
	var out, errOut bytes.Buffer
	if status := run([]string{"archive", "--storage.path=" + storage, "copy", "--to=" + pg.URL}, &out, &errOut); status != 0 ||
		!strings.Contains(out.String(), "aggregate_records") {
		t.Fatalf("archive copy: status %d\n%s%s", status, out.String(), errOut.String())
	}
	// A second copy into the same database is refused.
	if status := run([]string{"archive", "--storage.path=" + storage, "copy", "--to=" + pg.URL}, &out, &errOut); status == 0 {
		t.Error("a copy into a used archive was not refused")
	}
	cfg := "failure_samples: 100\narchive:\n  url: " + fmt.Sprintf("%q", pg.URL) + "\ndirectories:\n"
	for _, d := range corpusDirs() {
		cfg += fmt.Sprintf("  - path: %q\n", d)
	}
	moved := startExporter(t, "--config.file="+writeConfig(t, cfg), "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	moved.waitScans(1, corpusDirs()...)
	if got := countsOf(t, moved); got != want {
		t.Errorf("after the copy the counters differ:\n%s", lineDiff(want, got))
	}
	if n := moved.metric("dmarc_source_files_total", "outcome", "ingested"); n != 0 {
		t.Errorf("after the copy %v files were read again", n)
	}
	var reports struct {
		Total int `json:"total"`
	}
	getJSON(t, moved.url+"/api/v1/reports", &reports)
	if reports.Total != wantReports.Total {
		t.Errorf("after the copy the explorer lists %d reports, before %d", reports.Total, wantReports.Total)
	}
}

// TestHAPairAlertsOnce: a real Prometheus scrapes both exporters of a
// pair, with the shipped rules loaded: a silent reporter raises one
// DMARCReporterSilent alert, not one per exporter.
func TestHAPairAlertsOnce(t *testing.T) {
	agg := filepath.Join(testdata, "corpus", "aggregate")
	pg := testenv.StartPostgres(t)
	cfg := writeConfig(t, fmt.Sprintf("archive:\n  url: %q\n  refresh_interval: 1s\n  lease_ttl: 3s\ndirectories:\n  - path: %q\n", pg.URL, agg))
	args := []string{"--config.file=" + cfg, "--metrics.new-series-delay=0s"}
	e := startExporter(t, append(args, "--storage.path="+t.TempDir())...)
	e.waitScans(1, agg)
	e.stop()

	// A daily reporter last heard of five days ago.
	db, err := sql.Open("pgx", pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	last := time.Now().Add(-5 * 24 * time.Hour)
	ends := fmt.Sprintf("[%d,%d,%d]", last.Add(-48*time.Hour).Unix(), last.Add(-24*time.Hour).Unix(), last.Unix())
	if res, err := db.Exec("UPDATE reporters SET last_received = $1, ends = $2 WHERE domain = 'marketdojo.com' AND reporter = 'google.com'",
		last.Unix(), ends); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatal("no reporter google.com for marketdojo.com in the archive")
	}

	pair := []*exporter{startExporter(t, append(args, "--storage.path="+t.TempDir())...), startExporter(t, append(args, "--storage.path="+t.TempDir())...)}
	for _, e := range pair {
		e.waitFor("the silent reporter", func() bool {
			return e.metric("dmarc_reporter_silent", "domain", "marketdojo.com", "reporter", "google.com") == 1
		})
	}
	// The shipped rules, with their `for:` shortened: the test cannot wait an hour.
	rules, err := os.ReadFile("../../rules/dmarc.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rules.yml"), regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(rules, []byte("$1 1s")), 0o644)
	os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: dmarc
    static_configs:
      - targets: [%q, %q]
`, filepath.Join(dir, "rules.yml"), strings.TrimPrefix(pair[0].url, "http://"), strings.TrimPrefix(pair[1].url, "http://"))), 0o644)
	prom := testenv.StartPrometheus(t, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"))
	query := `ALERTS{alertname="DMARCReporterSilent",alertstate="firing",domain="marketdojo.com",reporter="google.com"}`
	var res []testenv.QueryResult
	pair[0].waitFor("the alert", func() bool {
		res, err = prom.Query(query, time.Now())
		return err == nil && len(res) > 0
	})
	time.Sleep(3 * time.Second) // a few more evaluations: a second alert would show
	if res, err = prom.Query(query, time.Now()); err != nil || len(res) != 1 {
		t.Fatalf("%d DMARCReporterSilent alerts for one silent reporter (%v): %v", len(res), err, res)
	}
	if inst, ok := res[0].Labels["instance"]; ok {
		t.Errorf("the alert names one exporter, %s", inst)
	}
}

// TestHAPairIMAP: two exporters on one Dovecot mailbox and one
// PostgreSQL archive. The one draining the mailbox is killed in the
// middle of it; the other takes the mailbox over; in the end every mail
// is moved out of the inbox once and every report counted once, as one
// exporter reading the same mails counts them.
func TestHAPairIMAP(t *testing.T) {
	mails := filepath.Join(testdata, "corpus", "email")
	const copies = 8
	refDir := t.TempDir()
	n := copyTree(t, refDir, copies, mails)
	ref := startExporter(t, "--source.dir="+refDir, "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	ref.waitScans(1, refDir)
	want := countsOf(t, ref)
	ref.stop()

	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{"rua": "pw"}})
	files, _ := filepath.Glob(filepath.Join(refDir, "*"))
	for _, f := range files {
		d.AppendFile(t, "rua", "pw", "INBOX", f)
	}
	pg := testenv.StartPostgres(t)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	_, port, _ := strings.Cut(d.IMAPAddr, ":")
	cfg := writeConfig(t, fmt.Sprintf(`archive:
  url: %q
  refresh_interval: 1s
  lease_ttl: 3s
imap:
  - name: rua
    host: localhost
    port: %s
    tls: starttls
    ca_file: %s
    username: rua
    password_file: %s
    archive_folder: Archive
    invalid_folder: Invalid
    batch_size: 10
`, pg.URL, port, d.CAFile, pw))
	args := []string{"--config.file=" + cfg, "--metrics.new-series-delay=0s"}
	pair := []*exporter{startExporter(t, append(args, "--storage.path="+t.TempDir())...), startExporter(t, append(args, "--storage.path="+t.TempDir())...)}
	leader := func() int {
		who := -1
		for i, e := range pair {
			if e.cmd.ProcessState == nil && e.metric("dmarc_exporter_source_leader", "source", "rua") == 1 {
				if who >= 0 {
					t.Fatal("both exporters read the mailbox at once")
				}
				who = i
			}
		}
		return who
	}
	pair[0].waitFor("a leader", func() bool { return leader() >= 0 })
	first := leader()
	pair[first].waitFor("the leader in the middle of the mailbox", func() bool {
		return pair[first].metric("dmarc_imap_messages_moved_total", "source", "rua") >= 20
	})
	pair[first].cmd.Process.Kill()
	pair[first].cmd.Wait()
	if left := d.Count(t, "rua", "pw", "INBOX"); left == 0 {
		t.Fatal("the leader emptied the mailbox before it was killed: the takeover is not tested")
	}
	other := pair[1-first]
	other.waitFor("the other exporter to take the mailbox over", func() bool { return leader() == 1-first })
	other.waitFor("the inbox drained", func() bool { return d.Count(t, "rua", "pw", "INBOX") == 0 })
	if moved := d.Count(t, "rua", "pw", "Archive") + d.Count(t, "rua", "pw", "Invalid"); moved != n {
		t.Errorf("%d mails moved out of the inbox, of %d: a mail was moved twice or lost", moved, n)
	}
	other.waitFor("every report counted", func() bool { return countsOf(t, other) == want })
}

// TestOverlappingShards: two exporters on one PostgreSQL archive read the
// same reports at the same time through sources of their own: each
// report is counted once (the archive refuses a report another exporter
// counted meanwhile, and its input is read again, as a duplicate).
func TestOverlappingShards(t *testing.T) {
	agg := filepath.Join(testdata, "corpus", "aggregate")
	src := t.TempDir()
	copyTree(t, src, 5, agg)
	one := startExporter(t, "--source.dir="+src, "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	one.waitScans(1, src)
	messages := func(e *exporter) string {
		var out []string
		for _, l := range strings.Split(countsOf(t, e), "\n") {
			if strings.HasPrefix(l, "dmarc_messages_total{") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	want := messages(one)
	one.stop()

	pg := testenv.StartPostgres(t)
	var shards []*exporter
	for _, name := range []string{"a", "b"} {
		cfg := writeConfig(t, fmt.Sprintf("archive:\n  url: %q\n  refresh_interval: 1s\ndirectories:\n  - name: %s\n    path: %q\n    rescan_interval: 2s\n", pg.URL, name, src))
		shards = append(shards, startExporter(t, "--config.file="+cfg, "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s"))
	}
	for i, e := range shards {
		e.waitScans(1, []string{"a", "b"}[i])
	}
	for i, e := range shards {
		e.waitFor("the other's counts", func() bool { return messages(e) == want })
		if got := messages(e); got != want {
			t.Errorf("shard %d counts messages differently from one exporter:\n%s", i, lineDiff(want, got))
		}
	}
}
