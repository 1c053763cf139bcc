package main

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// TestDiskFull runs the exporter with its archive on a tmpfs too small for
// the corpus: writes fail, the state-write error counter grows (the
// DMARCExporterStateWriteFailing alert), and no file is moved whose reports
// are not in the archive. Once the tmpfs is grown, everything is counted
// once: the counters equal those of a run with room to spare. Mounting
// needs root; the test is skipped otherwise.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	corpus := []string{filepath.Join(testdata, "corpus/aggregate"), filepath.Join(testdata, "corpus/email")}
	setup := func(dir string) (args []string, src, moved string, files int) {
		src, moved = filepath.Join(dir, "src"), filepath.Join(dir, "moved")
		os.MkdirAll(src, 0o755)
		files = copyTree(t, src, 2, corpus...)
		cfg := filepath.Join(dir, "config.yml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("directories:\n  - name: src\n    path: %s\n    archive_dir: %s\n    invalid_dir: %s\n    rescan_interval: 1s\n",
			src, moved, moved)), 0o644)
		return []string{"--config.file=" + cfg, "--storage.path=" + filepath.Join(dir, "state"), "--metrics.new-series-delay=0s"}, src, moved, files
	}

	cleanArgs, _, _, _ := setup(t.TempDir())
	e := startExporter(t, cleanArgs...)
	e.waitScans(1, "src")
	clean := exposition(e.families(), true)
	e.stop()

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	os.MkdirAll(state, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", state).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", state).Run() })
	args, src, moved, files := setup(dir)
	e = startExporter(t, args...)
	waitUntil(t, "three failed writes", func() bool { return metric(e, "dmarc_exporter_state_write_errors_total") >= 3 })
	if inArchive, movedFiles := committedInputs(t, state), countFiles(moved); movedFiles > inArchive {
		t.Errorf("%d files moved, but only %d inputs are in the archive", movedFiles, inArchive)
	}
	if countFiles(src) == 0 {
		t.Fatal("every file was read and moved: the tmpfs was not too small")
	}
	t.Logf("disk full: %d of %d files moved, %d inputs in the archive", countFiles(moved), files, committedInputs(t, state))

	if out, err := exec.Command("mount", "-o", "remount,size=64m", state).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	waitUntil(t, "every file moved", func() bool { return countFiles(src) == 0 && countFiles(moved) == files })
	e.stop()
	e = startExporter(t, args...)
	e.waitScans(1, "src")
	if got := exposition(e.families(), true); got != clean {
		t.Errorf("counters after a full disk differ from a run with room:\n%s", lineDiff(clean, got))
	}
}

// committedInputs counts the inputs marked as read in the archive.
func committedInputs(t *testing.T, state string) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(state, archive.FileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM inputs").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// metric is the sum of a family's values.
func metric(e *exporter, name string) float64 {
	sum := 0.0
	if mf := e.families()[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			sum += value(m)
		}
	}
	return sum
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
