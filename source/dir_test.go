package source

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	if !strings.Contains(logs.String(), "msg=\"scan complete\" input=d files=2 read=2 counted=1 refused=1 reports=1 duplicates=0") {
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

// TestDirSymlinks: a source directory given as a symbolic link is read; an
// archive directory inside it, given through a link, is not read again; a
// link that leads out of the tree is not followed, and said; a source
// that cannot be read is never a complete scan.
func TestDirSymlinks(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.MkdirAll(filepath.Join(real, "done"), 0o755)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	// The archive directory: a link inside the source to its "done" folder.
	archiveLink := filepath.Join(real, "archive")
	os.Symlink(filepath.Join(real, "done"), archiveLink)
	outside := filepath.Join(base, "outside.xml")
	copyFile(t, corpus+"dmarcviewer__yahoo.xml", outside, time.Hour)
	os.Symlink(outside, filepath.Join(real, "outside.xml"))
	copyFile(t, corpus+"dmarcviewer__yahoo.xml", filepath.Join(real, "yahoo.xml"), time.Hour)
	copyFile(t, corpus+"mailauth__002.xml", filepath.Join(real, "google.xml"), time.Hour)

	store, m, logs := runDirLogged(t, config.Directory{Name: "d", Path: link, ArchiveDir: archiveLink,
		RescanInterval: config.Duration(time.Second), SettleTime: config.Duration(50 * time.Millisecond)})
	eventually(t, "three scans", func() bool { return testutil.ToFloat64(m.scans.WithLabelValues("d")) >= 3 })
	if got := ingested(m, "d", "ingested"); got != 2 {
		t.Errorf("%v files ingested through the linked source, want 2", got)
	}
	if files, _ := os.ReadDir(filepath.Join(real, "done")); len(files) != 2 {
		t.Errorf("%d files in the archive directory, want 2", len(files))
	}
	var out strings.Builder
	store.WriteText(&out)
	if regexp.MustCompile(`dmarc_reports_duplicate_total\{[^}]*\} [1-9]`).MatchString(out.String()) {
		t.Errorf("files read again from the archive directory:\n%s", out.String())
	}
	if !strings.Contains(logs.String(), "symbolic link leads outside the source directory") {
		t.Errorf("the link out of the tree is not said:\n%s", logs)
	}

	// A source that is not there: errors, and no complete scan.
	_, m2 := runDir(t, config.Directory{Name: "gone", Path: filepath.Join(base, "missing"),
		RescanInterval: config.Duration(time.Second), SettleTime: config.Duration(50 * time.Millisecond)})
	eventually(t, "an error", func() bool { return testutil.ToFloat64(m2.errors.WithLabelValues("gone")) >= 1 })
	if got := testutil.ToFloat64(m2.scans.WithLabelValues("gone")); got != 0 {
		t.Errorf("%v complete scans of a source that is not there", got)
	}
}

// TestMoveAcrossFileSystems: a file moved to another file system arrives
// whole under its name, by way of a hidden temporary name, and leaves its
// source. Mounting the second file system (a tmpfs) needs root.
func TestMoveAcrossFileSystems(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	other := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", other).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", other).Run() })
	from := filepath.Join(t.TempDir(), "report.xml")
	copyFile(t, corpus+"dmarcviewer__yahoo.xml", from, 0)
	want, _ := os.ReadFile(from)
	to := filepath.Join(other, "report.xml")
	if err := moveFile(from, to); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(to); err != nil || !bytes.Equal(got, want) {
		t.Errorf("moved file: %v, same bytes %v", err, bytes.Equal(got, want))
	}
	if _, err := os.Stat(from); err == nil {
		t.Error("the original is still there")
	}
	if entries, _ := os.ReadDir(other); len(entries) != 1 {
		t.Errorf("%d entries in the target directory, want the file alone", len(entries))
	}
}
