package source

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

const corpus = "../testdata/corpus/aggregate/"

// testStore is a real Store in a temporary directory, with the defaults.
func testStore(t testing.TB) *collector.Store {
	t.Helper()
	dir := t.TempDir()
	arc, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arc.Close() })
	store, err := collector.Open(collector.Options{
		Archive:        arc,
		Dir:            dir,
		Limits:         config.Default().Limits,
		DedupRetention: 24 * time.Hour,
		ReportLimits:   report.DefaultLimits(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// runDir starts a directory source on dir with a real Store as its sink;
// its log goes to logs.
func runDir(t *testing.T, cfg config.Directory) (*collector.Store, *Metrics) {
	store, m, _ := runDirLogged(t, cfg)
	return store, m
}

func runDirLogged(t *testing.T, cfg config.Directory) (*collector.Store, *Metrics, *testenv.SyncBuffer) {
	t.Helper()
	store := testStore(t)
	m := NewMetrics(prometheus.NewRegistry())
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewDir(cfg, store, m, slog.New(slog.NewTextHandler(logs, nil))).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return store, m, logs
}

func copyFile(t *testing.T, from, to string, age time.Duration) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Now().Add(-age)
	os.Chtimes(to, mt, mt)
}

// eventually waits for cond, failing after a while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func ingested(m *Metrics, source, outcome string) float64 {
	return testutil.ToFloat64(m.files.WithLabelValues(source, outcome))
}

// TestDirMoves: good files go to the archive, bad ones to the invalid
// directory, both inside the source directory and not read again; files in
// progress are left alone.
func TestDirMoves(t *testing.T) {
	dir := t.TempDir()
	archive, invalid := filepath.Join(dir, "archive"), filepath.Join(dir, "invalid")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	copyFile(t, corpus+"dmarcviewer__yahoo.xml", filepath.Join(dir, "sub", "yahoo.xml"), time.Hour)
	copyFile(t, corpus+"godmarcanalyzer__malformed3.xml", filepath.Join(dir, "broken.xml"), time.Hour)
	copyFile(t, corpus+"mailauth__002.xml", filepath.Join(dir, "google.xml.part"), time.Hour)
	_, m, logs := runDirLogged(t, config.Directory{Name: "d", Path: dir, ArchiveDir: archive, InvalidDir: invalid,
		RescanInterval: config.Duration(time.Hour), SettleTime: config.Duration(50 * time.Millisecond)})
	eventually(t, "first scan", func() bool { return testutil.ToFloat64(m.scans.WithLabelValues("d")) >= 1 })
	if !strings.Contains(logs.String(), "msg=\"scan complete\" input=d files=2 read=2 counted=1 refused=1") {
		t.Errorf("no line for the scan:\n%s", logs)
	}
	if ingested(m, "d", "ingested") != 1 || ingested(m, "d", "rejected") != 1 {
		t.Fatalf("ingested %v, rejected %v", ingested(m, "d", "ingested"), ingested(m, "d", "rejected"))
	}
	for _, p := range []string{filepath.Join(archive, "sub", "yahoo.xml"), filepath.Join(invalid, "broken.xml"), filepath.Join(dir, "google.xml.part")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
}

// TestDirWatch: a file that appears later is read through a file system
// event, and not before it has settled: a file still being written is not
// read half-way.
func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	settle := 400 * time.Millisecond
	store, m := runDir(t, config.Directory{Name: "w", Path: dir,
		RescanInterval: config.Duration(time.Hour), SettleTime: config.Duration(settle)})
	eventually(t, "first scan", func() bool { return testutil.ToFloat64(m.scans.WithLabelValues("w")) >= 1 })

	data, err := os.ReadFile(corpus + "niciliketo__report1.xml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "google.xml")
	if err := os.WriteFile(path, data[:len(data)/2], 0o644); err != nil { // half written
		t.Fatal(err)
	}
	time.Sleep(settle / 2)
	if ingested(m, "w", "ingested")+ingested(m, "w", "rejected") != 0 {
		t.Fatal("a file was read before it settled")
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data[len(data)/2:])
	f.Close()
	eventually(t, "the new file to be read", func() bool { return ingested(m, "w", "ingested") == 1 })
	if ingested(m, "w", "rejected") != 0 {
		t.Fatal("the file was read half-written")
	}
	// Visible once saved.
	eventually(t, "the report to be counted", func() bool { return testutil.CollectAndCount(store, "dmarc_reports_total") == 1 })
}
