package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
}
