package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// commitEvery bounds the files read between two commits (each file is a
// transaction of its own) and so the files waiting to be moved: a file is
// moved after the commit that saved it.
const commitEvery = 20

// Dir reads every file below a directory: all of them at start, then new
// ones as file system events announce them, with a periodic rescan in case
// an event was missed. A file is read once its modification time is
// SettleTime old, so that a file still being written is not read half-way;
// names starting with "." or ending in ".tmp" or ".part" are never read,
// since that is how writers mark files in progress.
type Dir struct {
	cfg     config.Directory
	sink    Sink
	metrics *Metrics
	log     *slog.Logger
}

// NewDir returns a directory source.
func NewDir(cfg config.Directory, sink Sink, m *Metrics, log *slog.Logger) *Dir {
	m.init(cfg.Name)
	// Absolute paths, so that an archive directory inside the source
	// directory is recognised however either was written.
	for _, p := range []*string{&cfg.Path, &cfg.ArchiveDir, &cfg.InvalidDir} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	return &Dir{cfg: cfg, sink: sink, metrics: m, log: log.With("input", cfg.Name)}
}

// Run scans until ctx is done.
func (d *Dir) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("source %s: watch: %w", d.cfg.Name, err)
	}
	defer w.Close()
	rescan := time.NewTicker(time.Duration(d.cfg.RescanInterval))
	defer rescan.Stop()
	soon := time.NewTimer(0) // the first scan starts at once
	defer soon.Stop()
	settle := time.Duration(d.cfg.SettleTime)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-soon.C:
			if wait := d.scan(ctx, w); wait > 0 {
				soon.Reset(wait)
			}
		case <-rescan.C:
			soon.Reset(0)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Rename) != 0 && !inProgress(filepath.Base(ev.Name)) {
				soon.Reset(settle) // wait for writes to settle, then scan
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.log.Warn("file system events", "err", err)
			soon.Reset(0)
		}
	}
}

// outcome of a file, for moving it after the state is saved.
type done struct {
	path, rel string
	rejected  bool
}

// scan reads every new, settled file and returns, when some file was not
// settled yet, how long to wait before scanning again.
func (d *Dir) scan(ctx context.Context, w *fsnotify.Watcher) (wait time.Duration) {
	// The directory itself may be a symbolic link (a mount, a shared
	// folder): the walk starts from where it leads.
	root, err := realDir(d.cfg.Path)
	if err != nil {
		d.log.Warn("source directory cannot be read", "path", d.cfg.Path, "err", err)
		d.metrics.errors.WithLabelValues(d.cfg.Name).Inc()
		return 0
	}
	outputs := d.outputs()
	settle := time.Duration(d.cfg.SettleTime)
	present := map[string]bool{}
	var toMove []done
	read, refused := 0, 0
	began := time.Now()
	reports0, dups0 := d.sink.Staged()
	complete := true
	flush := func() {
		if err := d.sink.Commit(); err != nil {
			d.log.Error("save to the archive", "err", err)
			d.metrics.errors.WithLabelValues(d.cfg.Name).Inc()
			return // nothing is moved before it is saved
		}
		for _, f := range toMove {
			d.move(f)
		}
		toMove = toMove[:0]
	}
	err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			d.log.Warn("list", "path", path, "err", err)
			d.metrics.errors.WithLabelValues(d.cfg.Name).Inc()
			complete = false
			return nil
		}
		if e.IsDir() {
			if path != root && (outputs[path] || strings.HasPrefix(e.Name(), ".")) {
				return filepath.SkipDir
			}
			if err := w.Add(path); err != nil {
				d.log.Debug("watch", "path", path, "err", err)
			}
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			// Not followed: a link within the tree names a file read where
			// it is; one that leads out of it is said once per scan.
			if target, err := filepath.EvalSymlinks(path); err == nil && !within(target, root) {
				d.log.Warn("symbolic link leads outside the source directory: not read", "path", path, "target", target)
			}
			return nil
		}
		if !e.Type().IsRegular() || inProgress(e.Name()) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // gone since listed
		}
		// A file is known by its path under the directory as configured,
		// whatever links lead there: its mark stays when a link changes.
		rel, _ := filepath.Rel(root, path)
		name := filepath.Join(d.cfg.Path, rel)
		present[name] = true
		mark := fmt.Sprintf("%d:%d", info.Size(), info.ModTime().UnixNano())
		if seen, rejected := d.sink.Seen(name, mark); seen {
			// Read before a crash that came between saving and moving.
			if d.cfg.ArchiveDir != "" && !rejected || d.cfg.InvalidDir != "" && rejected {
				toMove = append(toMove, done{path, rel, rejected})
			}
			return nil
		}
		// A modification time in the future (clock skew on a network file
		// system) cannot tell whether the file settled: read it.
		if age := time.Since(info.ModTime()); age >= 0 && age < settle {
			wait = max(wait, settle-age)
			return nil
		}
		rejected, err := d.ingest(path, name, mark)
		if err != nil {
			d.log.Warn("read", "path", name, "err", err)
			d.metrics.errors.WithLabelValues(d.cfg.Name).Inc()
			complete = false
			return nil
		}
		toMove = append(toMove, done{path, rel, rejected})
		if rejected {
			refused++
		}
		if read++; read%commitEvery == 0 {
			flush()
		}
		return nil
	})
	flush()
	if err != nil {
		return 0 // stopped
	}
	if complete {
		d.sink.PruneFiles(d.cfg.Path, present)
		// Logged, then counted: whoever sees the count finds the line.
		reports, dups := d.sink.Staged()
		d.log.Info("scan complete", "files", len(present), "read", read, "counted", read-refused, "refused", refused,
			"reports", reports-reports0, "duplicates", dups-dups0, "took", time.Since(began).Round(time.Millisecond))
		d.metrics.scans.WithLabelValues(d.cfg.Name).Inc()
		d.metrics.lastScan.WithLabelValues(d.cfg.Name).SetToCurrentTime()
	}
	if wait > 0 {
		wait += 100 * time.Millisecond
	}
	return wait
}

// ingest reads one file into the sink under its name. An error is an I/O
// error: the file is tried again later. A rejected file is logged with its
// reason.
func (d *Dir) ingest(file, name, mark string) (rejected bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := d.sink.IngestFile(d.cfg.Name, name, mark, f); errors.Is(err, report.ErrRead) {
		return false, err
	} else if err != nil {
		d.log.Warn("rejected", "file", name, "reason", err)
		d.metrics.files.WithLabelValues(d.cfg.Name, "rejected").Inc()
		return true, nil
	}
	d.log.Debug("ingested", "file", name)
	d.metrics.files.WithLabelValues(d.cfg.Name, "ingested").Inc()
	return false, nil
}

// outputs are the archive and invalid directories, which may lie inside
// the source directory and are not read, by their real paths: one given
// through a symbolic link is recognised where the walk meets it.
func (d *Dir) outputs() map[string]bool {
	out := map[string]bool{}
	for _, dir := range []string{d.cfg.ArchiveDir, d.cfg.InvalidDir} {
		if dir == "" {
			continue
		}
		out[filepath.Clean(dir)] = true
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			out[real] = true
		}
	}
	return out
}

// realDir returns the real path of a directory (symbolic links resolved),
// or why it cannot be read.
func realDir(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	f, err := os.Open(real)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.ReadDir(1); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return real, nil
}

// within reports whether path is root or below it.
func within(path, root string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func inProgress(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".part") ||
		strings.HasSuffix(name, "~")
}

// move puts a read file into the archive or invalid directory, under the
// same relative path; a name already taken gets a numbered suffix. Nothing
// is moved when the directory is not configured.
func (d *Dir) move(f done) {
	dest := d.cfg.ArchiveDir
	if f.rejected {
		dest = d.cfg.InvalidDir
	}
	if dest == "" {
		return
	}
	target := filepath.Join(dest, f.rel)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		d.moveFailed(f, err)
		return
	}
	for i := 1; ; i++ {
		_, err := os.Lstat(target)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil || i > 1000 {
			d.moveFailed(f, fmt.Errorf("no free name for %s in %s: %v", f.rel, dest, err))
			return
		}
		target = fmt.Sprintf("%s.%d", filepath.Join(dest, f.rel), i)
	}
	if err := moveFile(f.path, target); err != nil {
		d.moveFailed(f, err)
		return
	}
	d.log.Debug("moved", "file", f.path, "to", target)
}

func (d *Dir) moveFailed(f done, err error) {
	d.log.Error("move", "file", f.path, "err", err)
	d.metrics.errors.WithLabelValues(d.cfg.Name).Inc()
}

// moveFile renames, or, when the target is on another file system, copies
// to a hidden temporary name beside the target, syncs, renames it to the
// target and then removes the original: a crash mid-copy leaves a
// ".name.tmp-*" file, which no source reads, never a truncated file under
// the report's name.
func moveFile(from, to string) error {
	err := os.Rename(from, to)
	if err == nil {
		return nil
	}
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(to), "."+filepath.Base(to)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // nothing to remove once renamed
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), to); err != nil {
		return err
	}
	if err := os.Remove(from); err != nil {
		// The original stays (a read-only source): drop the copy, or every
		// rescan would add one more.
		os.Remove(to)
		return err
	}
	return nil
}
