package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/history"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// TestExportOpenMetrics: the corpus's report-time series, exported,
// turned into blocks by Debian's promtool and served by a real Prometheus
// 2.42, give each report day's messages per domain as the archive has
// them, and in all every message counted.
func TestExportOpenMetrics(t *testing.T) {
	e, storage := startCorpus(t)
	e.stop()
	dir := t.TempDir()
	om := filepath.Join(dir, "days.om")
	var out, errOut bytes.Buffer
	if status := run([]string{"export", "--storage.path=" + storage, "openmetrics", "-o", om}, &out, &errOut); status != 0 {
		t.Fatalf("export: status %d\n%s", status, errOut.String())
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed (Debian package prometheus; make deps installs it)")
	}
	blocks := filepath.Join(dir, "tsdb")
	if b, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=8760h", om, blocks).CombinedOutput(); err != nil {
		t.Fatalf("promtool: %v\n%s", err, b)
	}
	prom := testenv.StartPrometheus(t, "--config.file=/dev/null", "--storage.tsdb.path="+blocks,
		"--storage.tsdb.retention.time=100y")

	// The archive's days, computed apart from the export.
	arc, err := archive.Open(storage)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	want := map[time.Time]map[string]uint64{} // day -> domain -> messages
	series, err := history.FromArchive(context.Background(), arc, archive.GroupFilter{}, time.Time{}, time.Now().UTC().Truncate(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	series.Each(history.MessagesName, func(labels []string, samples []history.Sample) error {
		for _, s := range samples {
			if want[s.Day] == nil {
				want[s.Day] = map[string]uint64{}
			}
			want[s.Day][labels[0]] += s.Value
			total += s.Value
		}
		return nil
	})
	db := openArchiveDB(t, storage)
	counted := queryInts(t, db, `SELECT sum(r.count) FROM aggregate_records r JOIN aggregate_reports a ON a.id = r.report
		WHERE r.problem NOT LIKE 'count%' AND a.begin_time < ?`, time.Now().UTC().Truncate(24*time.Hour).Unix())[0]
	if int64(total) != counted || len(want) < 10 {
		t.Fatalf("the days hold %d messages in %d days; the archive counted %d", total, len(want), counted)
	}

	// A daily sum per domain, at the midnight that ends the day.
	var sum float64
	for d, domains := range want {
		res, err := prom.Query(`sum by (domain) (sum_over_time(dmarc_report_day_messages[1d]))`, d.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, r := range res {
			got[r.Labels["domain"]] = uint64(r.Value)
			sum += r.Value
		}
		for domain, n := range domains {
			if got[domain] != n {
				t.Errorf("%s, %s: Prometheus sums %d messages, the archive %d", d.Format(time.DateOnly), domain, got[domain], n)
			}
		}
		if len(got) != len(domains) {
			t.Errorf("%s: Prometheus has domains %v, the archive %v", d.Format(time.DateOnly), got, domains)
		}
	}
	if uint64(sum) != total {
		t.Errorf("the daily sums add up to %v, the archive's to %d", sum, total)
	}
	// The source classes add up to the same.
	res, err := prom.Query(`sum(sum_over_time(dmarc_report_day_source_messages[100y]))`, time.Now())
	if err != nil || len(res) != 1 || uint64(res[0].Value) != total {
		t.Errorf("the source classes sum to %v (%v), want %d", res, err, total)
	}
}
