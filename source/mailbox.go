package source

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Mailbox reads mail exports, read-only: an mbox file, a Maildir, a
// directory of those or of report files, or a zip of any of them (a
// Google Takeout archive). Nothing is moved, changed or deleted: what was
// read is remembered in the archive under a key of the message's place
// ("mailbox:" + the path, then the message's position), with a mark that
// tells a changed message. An mbox is streamed, one message in memory at a
// time, so that a mailbox of many gigabytes reads in bounded memory.
type Mailbox struct {
	Name, Path string
	// Interval is the time between two passes of Run; a mailbox whose
	// files did not change since the last complete pass is not read again.
	Interval time.Duration
	// Progress, when set, is called as the pass reads (the import
	// command's progress bar).
	Progress func(Progress)

	sink    Sink
	metrics *Metrics
	log     *slog.Logger
}

// Progress is how far a pass is.
type Progress struct {
	Read, Size       int64 // bytes
	Inputs, Refused  int   // messages and files read; refused of them
	Reports, Skipped uint64
	Done             bool
}

// maxMessage bounds a message's size: a larger one is refused unread.
const maxMessage = 64 << 20

// NewMailbox returns a mailbox source.
func NewMailbox(name, path string, interval time.Duration, sink Sink, m *Metrics, log *slog.Logger) *Mailbox {
	m.init(name)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return &Mailbox{Name: name, Path: path, Interval: interval, sink: sink, metrics: m, log: log.With("input", name)}
}

// Run reads the mailbox at start and every Interval until ctx is done.
func (b *Mailbox) Run(ctx context.Context) {
	for {
		if err := b.Pass(ctx); err != nil && ctx.Err() == nil {
			b.log.Error("mailbox pass", "path", b.Path, "err", err)
			b.metrics.errors.WithLabelValues(b.Name).Inc()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.Interval):
		}
	}
}

// pass is the state of one pass.
type pass struct {
	b         *Mailbox
	ctx       context.Context
	real      string // the path, symbolic links resolved
	root      string // the key prefix: "mailbox:" + the path
	present   map[string]bool
	progress  Progress
	reports0  uint64
	dups0     uint64
	uncommit  int
	lastEvent time.Time
}

// Pass reads every message and file of the mailbox once, commits, and
// forgets the marks of those no longer there. A mailbox whose files did
// not change since the last complete pass (names, sizes, times; kept in
// the archive) is not read again.
func (b *Mailbox) Pass(ctx context.Context) error {
	// A path through a symbolic link is read where it leads.
	real, err := filepath.EvalSymlinks(b.Path)
	if err != nil {
		return fmt.Errorf("mailbox %s: %w", b.Path, err)
	}
	size, fingerprint, err := survey(real)
	if err != nil {
		return fmt.Errorf("mailbox %s: %w", b.Path, err)
	}
	root := "mailbox:" + b.Path
	if seen, _ := b.sink.Seen(root+"#pass", fingerprint); seen {
		b.log.Info("mailbox unchanged since its last complete pass", "path", b.Path, "bytes", size)
		if b.Progress != nil {
			b.Progress(Progress{Read: size, Size: size, Done: true})
		}
		return nil
	}
	p := &pass{b: b, ctx: ctx, real: real, root: root, present: map[string]bool{}}
	p.progress.Size = size
	p.reports0, p.dups0 = b.sink.Staged()
	b.metrics.mailboxSize.WithLabelValues(b.Name).Set(float64(size))
	began := time.Now()
	if err := p.walk(); err != nil {
		p.commit() // what was read stays read
		return err
	}
	b.sink.Remember(b.Name, root+"#pass", fingerprint)
	if err := p.commit(); err != nil {
		return err
	}
	b.sink.PruneFiles(p.root, p.present)
	p.progress.Done = true
	p.report(true)
	reports, dups := b.sink.Staged()
	b.log.Info("mailbox read", "path", b.Path, "inputs", p.progress.Inputs, "refused", p.progress.Refused,
		"already_read", p.progress.Skipped, "reports", reports-p.reports0, "duplicates", dups-p.dups0,
		"bytes", size, "took", time.Since(began).Round(time.Millisecond))
	b.metrics.scans.WithLabelValues(b.Name).Inc()
	b.metrics.lastScan.WithLabelValues(b.Name).SetToCurrentTime()
	return nil
}

// survey sums the sizes of the files below path and makes a fingerprint
// of their names, sizes and times.
func survey(path string) (size int64, fingerprint string, err error) {
	h := fnv.New64a()
	err = filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		size += info.Size()
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return size, fmt.Sprintf("%x", h.Sum64()), err
}

// walk reads the mailbox's path: a file, or every file below a directory
// in name order.
func (p *pass) walk() error {
	info, err := os.Stat(p.real)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return p.file(p.real, p.root)
	}
	return filepath.WalkDir(p.real, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := p.ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "tmp" && isMaildir(filepath.Dir(path)) {
			return filepath.SkipDir // messages being delivered
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(p.real, path)
		return p.file(path, p.root+"/"+maildirKey(filepath.ToSlash(rel)))
	})
}

// isMaildir tells a Maildir: a directory with cur and new.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err != nil || !st.IsDir() {
			return false
		}
	}
	return true
}

// maildirKey keys a Maildir message by its folder and unique name: the
// same whether in new/ or cur/, whatever its flags (":2,S" and such).
func maildirKey(rel string) string {
	dir, name := filepath.Split(rel)
	parent := strings.TrimSuffix(dir, "/")
	if base := filepath.Base(parent); base == "cur" || base == "new" {
		unique, _, _ := strings.Cut(name, ":")
		if folder := strings.TrimSuffix(strings.TrimSuffix(parent, base), "/"); folder != "" {
			return folder + "/maildir:" + unique
		}
		return "maildir:" + unique
	}
	return rel
}

// file reads one file: an mbox, a zip, or one input (a mail or a report).
func (p *pass) file(path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 5)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case bytes.Equal(head, []byte("From ")):
		return p.mbox(&countingReader{r: f, p: p}, key)
	case bytes.HasPrefix(head, []byte("PK\x03\x04")) && strings.HasSuffix(strings.ToLower(path), ".zip"):
		if err := p.zip(f, info.Size(), key); !errors.Is(err, errNotMailZip) {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	// A Maildir message does not change once delivered (its flags are in
	// its name): its size marks it. Another file is marked as the
	// directory source marks it, by size and time.
	mark := fmt.Sprintf("%d:%d", info.Size(), info.ModTime().UnixNano())
	if strings.Contains(key, "/maildir:") {
		mark = fmt.Sprint(info.Size())
	}
	return p.input(key, mark, f, info.Size())
}

// errNotMailZip: a zip that holds no mbox or Maildir, which is read as
// one input like any file (a zipped report).
var errNotMailZip = errors.New("not a zip of mailboxes")

// zip reads the mboxes and messages of a zip (a Google Takeout export):
// each entry is streamed. A zip of no mbox and no Maildir is a zipped
// report, read as one input.
func (p *pass) zip(f *os.File, size int64, key string) error {
	// The compressed bytes count as they are read: the progress of a
	// single large mbox entry moves.
	z, err := zip.NewReader(&countingReaderAt{r: f, p: p}, size)
	if err != nil {
		return errNotMailZip
	}
	mail := false
	for _, e := range z.File {
		name := e.Name
		if strings.HasSuffix(strings.ToLower(name), ".mbox") || strings.Contains(name, "/cur/") || strings.Contains(name, "/new/") {
			mail = true
		}
	}
	if !mail {
		return errNotMailZip
	}
	files := slices.Clone(z.File)
	slices.SortFunc(files, func(a, b *zip.File) int { return strings.Compare(a.Name, b.Name) })
	for _, e := range files {
		if e.FileInfo().IsDir() || strings.Contains(e.Name, "/tmp/") {
			continue
		}
		if err := p.ctx.Err(); err != nil {
			return err
		}
		r, err := e.Open()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
		entryKey := key + "/" + maildirKey(e.Name)
		br := &peekReader{r: r}
		if head := br.peek(5); bytes.Equal(head, []byte("From ")) {
			err = p.mbox(br, entryKey)
		} else {
			err = p.input(entryKey, fmt.Sprintf("%d:%d", e.UncompressedSize64, e.CRC32), br, 0)
		}
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
	}
	return nil
}

// mbox reads the messages of an mbox stream, each an input keyed by its
// offset and marked by a hash of its text.
func (p *pass) mbox(r io.Reader, key string) error {
	return mboxMessages(r, maxMessage, func(offset int64, msg []byte, tooBig bool) error {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		k := fmt.Sprintf("%s/@%d", key, offset)
		if tooBig {
			p.present[k] = true
			if seen, _ := p.b.sink.Seen(k, "too-big"); !seen {
				p.b.sink.RejectFile(p.b.Name, k, "too-big", fmt.Errorf("message larger than %d MiB", maxMessage>>20))
				p.b.log.Warn("rejected", "message", k, "reason", "larger than the limit")
				p.progress.Inputs++
				p.progress.Refused++
				p.counted(true)
			}
			return nil
		}
		h := fnv.New64a()
		h.Write(msg)
		return p.input(k, fmt.Sprintf("%d:%x", len(msg), h.Sum64()), bytes.NewReader(msg), 0)
	})
}

// input reads one input unless it was read already with this mark. size
// is what it adds to the bytes read: a file's size (read or not), 0 for a
// message of an mbox, whose bytes the stream counts.
func (p *pass) input(key, mark string, r io.Reader, size int64) error {
	p.present[key] = true
	p.progress.Read += size
	if seen, _ := p.b.sink.Seen(key, mark); seen {
		p.progress.Skipped++
		p.report(false)
		return nil
	}
	p.progress.Inputs++
	err := p.b.sink.IngestFile(p.b.Name, key, mark, r)
	if errors.Is(err, report.ErrRead) {
		return err
	}
	if err != nil {
		p.progress.Refused++
		p.b.log.Warn("rejected", "message", key, "reason", err)
	} else {
		p.b.log.Debug("ingested", "message", key)
	}
	p.counted(err != nil)
	return nil
}

// counted commits every commitEvery inputs and reports progress.
func (p *pass) counted(refused bool) {
	outcome := "ingested"
	if refused {
		outcome = "rejected"
	}
	p.b.metrics.files.WithLabelValues(p.b.Name, outcome).Inc()
	if p.uncommit++; p.uncommit >= commitEvery {
		if err := p.commit(); err != nil {
			p.b.log.Error("save to the archive", "err", err)
		}
	}
	p.report(false)
}

func (p *pass) commit() error {
	p.uncommit = 0
	if err := p.b.sink.Commit(); err != nil {
		p.b.metrics.errors.WithLabelValues(p.b.Name).Inc()
		return err
	}
	return nil
}

// report updates the progress metrics and callback, at most every 100 ms
// unless forced.
func (p *pass) report(force bool) {
	if !force && time.Since(p.lastEvent) < 100*time.Millisecond {
		return
	}
	p.lastEvent = time.Now()
	reports, _ := p.b.sink.Staged()
	p.progress.Reports = reports - p.reports0
	p.b.metrics.mailboxRead.WithLabelValues(p.b.Name).Set(float64(p.progress.Read))
	if p.b.Progress != nil {
		p.b.Progress(p.progress)
	}
}

// countingReader counts the bytes of the pass's files as they are read.
type countingReader struct {
	r io.Reader
	p *pass
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.progress.Read += int64(n)
	return n, err
}

// countingReaderAt counts the bytes of a zip as they are read.
type countingReaderAt struct {
	r io.ReaderAt
	p *pass
}

func (c *countingReaderAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.p.progress.Read += int64(n)
	return n, err
}

// peekReader lets the first bytes of a stream be looked at before it is
// read from the start.
type peekReader struct {
	r    io.Reader
	head []byte
}

func (p *peekReader) peek(n int) []byte {
	if p.head == nil {
		p.head = make([]byte, n)
		m, _ := io.ReadFull(p.r, p.head)
		p.head = p.head[:m]
	}
	return p.head
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}
