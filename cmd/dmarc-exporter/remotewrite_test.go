package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/history"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// writeReport writes an aggregate report of example.com, one record
// per count, as a reporter sends it.
func writeReport(t *testing.T, dir, reporter, id string, begin, end time.Time, counts ...int) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?>
<feedback><report_metadata><org_name>%s</org_name><email>dmarc@%s</email><report_id>%s</report_id>
<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>
<policy_published><domain>example.com</domain><p>reject</p></policy_published>
`, reporter, reporter, id, begin.Unix(), end.Unix())
	for i, n := range counts {
		dmarc := "pass"
		if i%2 == 1 {
			dmarc = "fail"
		}
		fmt.Fprintf(&b, `<record><row><source_ip>192.0.2.%d</source_ip><count>%d</count><policy_evaluated><disposition>none</disposition>
<dkim>%s</dkim><spf>%s</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from></identifiers>
<auth_results><spf><domain>example.com</domain><result>%s</result></spf></auth_results></record>
`, i+1, n, dmarc, dmarc, dmarc)
	}
	b.WriteString("</feedback>\n")
	if err := os.WriteFile(filepath.Join(dir, reporter+"!example.com!"+id+".xml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// archiveDays are the messages per report day of the archive, computed
// by the history package from the archive itself.
func archiveDays(t *testing.T, storage string) map[time.Time]uint64 {
	t.Helper()
	arc, err := archive.OpenExisting(storage)
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	series, err := history.FromArchive(context.Background(), arc, archive.GroupFilter{}, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	days := map[time.Time]uint64{}
	series.Each(history.MessagesName, func(_ []string, samples []history.Sample) error {
		for _, s := range samples {
			days[s.Day] += s.Value
		}
		return nil
	})
	return days
}

// TestRemoteWrite pushes report-time samples to a real Prometheus 2.42
// with its remote-write receiver: the receiver down for a while, the
// exporter killed in the middle of a push and started again, late reports
// for a day already pushed, a restart that must resend nothing. In the
// end Prometheus sums each report day exactly as the archive does, and
// the days older than max_sample_age are skipped with a metric and a log
// line that says how to load them.
func TestRemoteWrite(t *testing.T) {
	dir := t.TempDir()
	reports := filepath.Join(dir, "reports")
	os.MkdirAll(reports, 0o755)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	day := func(n int) time.Time { return today.AddDate(0, 0, -n) }
	for n := 2; n <= 6; n++ {
		writeReport(t, reports, "google.com", fmt.Sprintf("g%d", n), day(n), day(n-1).Add(-time.Second), n, 10*n)
	}
	// Two days, split 12 hours each; and one too old to push.
	writeReport(t, reports, "yahoo.com", "y-split", day(4).Add(12*time.Hour), day(2).Add(12*time.Hour), 7, 3)
	writeReport(t, reports, "yahoo.com", "y-old", day(200), day(199).Add(-time.Second), 5)
	// Today and tomorrow, 12 hours each: today's half is pushed (before
	// now), tomorrow's is not (receivers refuse the future).
	writeReport(t, reports, "yahoo.com", "y-today", today.Add(12*time.Hour), today.Add(36*time.Hour), 9)

	promAddr := testenv.FreeAddr(t)
	storage := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`domains: [example.com]
directories:
  - path: %q
remote_write:
  url: http://%s/api/v1/write
  interval: 1s
  max_sample_age: 30d
`, reports, promAddr)), 0o644)
	args := []string{"--config.file=" + cfg, "--storage.path=" + storage, "--metrics.new-series-delay=0s"}

	// The receiver is down: the push is written down and retried; the
	// exporter dies in the middle of it.
	e := startExporter(t, args...)
	e.waitScans(1, reports)
	e.waitFor("a retried push", func() bool { return e.metric("dmarc_exporter_remote_write_retries_total") >= 1 })
	e.cmd.Process.Signal(syscall.SIGKILL)
	e.cmd.Wait()
	db := openArchiveDB(t, storage)
	var pendingPush string
	db.QueryRow("SELECT value FROM meta WHERE key LIKE 'remote_write.%pending'").Scan(&pendingPush)
	if !strings.Contains(pendingPush, `"UpTo"`) {
		t.Fatalf("no push written down before sending: %q", pendingPush)
	}

	promCfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promCfg, []byte("storage:\n  tsdb:\n    out_of_order_time_window: 60d\n"), 0o644)
	prom := testenv.StartPrometheusAt(t, promAddr, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.enable-remote-write-receiver")

	// Started again, it redoes the push it wrote down.
	e = startExporter(t, args...)
	newest := func() float64 {
		var n int64
		db.QueryRow("SELECT max(id) FROM aggregate_reports").Scan(&n)
		return float64(n)
	}
	e.waitFor("the interrupted push done", func() bool {
		return e.metric("dmarc_exporter_remote_write_watermark_report") == newest()
	})
	if !strings.Contains(e.logs.String(), "redoing the push") {
		t.Error("the restart did not redo the push written down")
	}
	if e.metric("dmarc_exporter_remote_write_samples_total", "outcome", "future") == 0 {
		t.Error("tomorrow's share of a report was not skipped as in the future")
	}
	if e.metric("dmarc_exporter_remote_write_samples_total", "outcome", "too_old") == 0 ||
		!strings.Contains(e.logs.String(), "export openmetrics") {
		t.Error("the report of 200 days ago was not skipped as too old, with its log line")
	}

	// Late reports for days already pushed, and a new day.
	writeReport(t, reports, "google.com", "g3-late", day(3), day(2).Add(-time.Second), 11, 1)
	writeReport(t, reports, "google.com", "g1", day(1), today.Add(-time.Second), 4)
	e.waitScans(2, reports)
	e.waitFor("the second push", func() bool {
		return e.metric("dmarc_exporter_remote_write_watermark_report") == newest()
	})
	e.stop()

	// A restart resends nothing.
	e = startExporter(t, args...)
	time.Sleep(3 * time.Second) // three push intervals
	if sent := e.metric("dmarc_exporter_remote_write_samples_total", "outcome", "sent"); sent != 0 {
		t.Errorf("a restart after complete pushes sent %v samples", sent)
	}
	e.stop()

	want := archiveDays(t, storage)
	if len(want) < 9 {
		t.Fatalf("the archive has %d report days", len(want))
	}
	for d, n := range want {
		res, err := prom.Query(`sum(sum_over_time(dmarc_report_day_messages[1d]))`, d.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		if len(res) == 1 {
			got = res[0].Value
		}
		switch {
		case d.After(today):
			if got != 0 {
				t.Errorf("%s is yet to come, yet Prometheus has %v messages", d.Format(time.DateOnly), got)
			}
		case d.Before(today.AddDate(0, 0, -30)):
			if got != 0 {
				t.Errorf("%s is older than max_sample_age, yet Prometheus has %v messages", d.Format(time.DateOnly), got)
			}
		case got != float64(n):
			t.Errorf("%s: Prometheus sums %v messages, the archive %d", d.Format(time.DateOnly), got, n)
		}
	}
	// Every panel of the report-day dashboard shows the pushed days.
	for _, q := range testenv.PanelQueries(t, "../../dashboards/dmarc-report-days.json") {
		// At the midnight that begins day 3, as Grafana's daily step.
		res, err := prom.Query(q.Expr, day(3))
		if err != nil || len(res) == 0 {
			t.Errorf("report-day dashboard, panel %q: %q gives %v (%v)", q.Title, q.Expr, res, err)
		}
	}
	if res, err := prom.Query(`sum(sum_over_time(dmarc_report_day_messages[1d] offset -1d))`, day(3)); err != nil || len(res) != 1 || res[0].Value != float64(want[day(3)]) {
		t.Errorf("the dashboard's day 3 (at its first midnight) is %v (%v), want %d", res, err, want[day(3)])
	}

	// The late report's series has two samples on its day: one per push.
	res, err := prom.Query(`count_over_time(dmarc_report_day_messages{reporter="google.com",dmarc="pass"}[1d])`, day(2))
	if err != nil || len(res) != 1 || res[0].Value != 2 {
		t.Errorf("the late report's day has samples %v (%v), want 2: one per push", res, err)
	}
}
