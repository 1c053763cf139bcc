package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// TestArchiveCommands: stats counts what the exporter archived from the
// corpus; check passes a sound archive and names the problem of a broken
// one; vacuum keeps every row.
func TestArchiveCommands(t *testing.T) {
	state := t.TempDir()
	e := startExporter(t, "--source.dir="+filepath.Join(testdata, "corpus/aggregate"), "--storage.path="+state, "--metrics.new-series-delay=0s")
	e.waitScans(1, "corpus/aggregate")
	reports := 0.0
	for _, m := range e.families()["dmarc_reports_total"].GetMetric() {
		reports += value(m)
	}
	e.stop()

	cmd := func(wantStatus int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if status := run(append(args, "--storage.path="+state), &out, &errOut); status != wantStatus {
			t.Fatalf("%v: status %d, want %d\n%s%s", args, status, wantStatus, out.String(), errOut.String())
		}
		return out.String() + errOut.String()
	}
	stats := cmd(0, "archive", "stats")
	// Every report counted is archived.
	for _, want := range []string{fmt.Sprintf(`(?m)^\s+%v\s+aggregate_reports$`, reports), `(?m)^\s+[1-9]\d*\s+aggregate_records$`, fmt.Sprintf(`(?m)^schema version\s+%d$`, archive.SchemaVersion()),
		`(?m)^oldest report\s+\d{4}-\d\d-\d\d$`, `(?m)^bytes per record\s+\d+$`} {
		if !regexp.MustCompile(want).MatchString(stats) {
			t.Errorf("stats lack %s:\n%s", want, stats)
		}
	}
	if out := cmd(0, "archive", "check"); !strings.Contains(out, "is sound") {
		t.Errorf("check of a sound archive: %s", out)
	}
	if out := cmd(0, "archive", "vacuum"); !strings.Contains(out, "before") {
		t.Errorf("vacuum: %s", out)
	}
	if again := cmd(0, "archive", "stats"); rows(again) != rows(stats) {
		t.Errorf("rows changed by vacuum:\n%s\n%s", stats, again)
	}

	// A record whose report is gone (written without foreign keys).
	db, err := sql.Open("sqlite", filepath.Join(state, archive.FileName))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO aggregate_records (report, n, source_ip, count, disposition, dkim, spf, dmarc, reasons, header_from,
		envelope_from, envelope_to, problem, extensions, source_asn, source_org, source_country, source_name, source_class, class_reason)
		VALUES (999999, 0, '', 1, '', '', '', '', '[]', '', '', '', '', '[]', 0, '', '', '', '', '')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out := cmd(1, "archive", "check"); !strings.Contains(out, "aggregate_records row") || !strings.Contains(out, "aggregate_reports") {
		t.Errorf("check of a broken archive: %s", out)
	}
}

// rows is the table part of archive stats.
func rows(stats string) string {
	_, table, _ := strings.Cut(stats, "table")
	return table
}
