// Package source finds raw reports and hands them to a Sink: dir.go reads
// a directory tree, imap.go a mailbox on a server, mailbox.go an mbox or
// Maildir export (read-only). A source never deletes or changes a file; it moves one
// aside only when told where to (archive and invalid directories), and only
// after the Sink has saved what the file held.
package source

import (
	"io"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink takes the files that sources find. collector.Store implements it.
type Sink interface {
	// Seen reports whether the file at path (absolute) with this mark was
	// read already, and whether it was rejected.
	Seen(path, mark string) (seen, rejected bool)
	// IngestFile reads one file; an error means the file was rejected,
	// except report.ErrRead: the file could not be read, try again.
	// Nothing is saved until Commit.
	IngestFile(source, path, mark string, r io.Reader) error
	// RejectFile marks a file rejected without reading it (a message over
	// the size limit); err gives the reason.
	RejectFile(source, path, mark string, err error)
	// Remember marks a path read with this mark, holding no report (a
	// source's note of a complete pass); saved with the next Commit.
	Remember(source, path, mark string)
	// Commit saves everything ingested so far, atomically.
	Commit() error
	// PruneFiles forgets the files below root that a full scan did not
	// find.
	PruneFiles(root string, present map[string]bool)
	// Staged says how many reports were read, and how many of them were
	// duplicates, so far.
	Staged() (reports, duplicates uint64)
}

// Metrics are the sources' own metrics; they count since start.
type Metrics struct {
	scans    *prometheus.CounterVec
	files    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	lastScan *prometheus.GaugeVec

	imapUp      *prometheus.GaugeVec
	imapErrors  *prometheus.CounterVec
	imapFetched *prometheus.CounterVec
	imapMoved   *prometheus.CounterVec
	imapPending *prometheus.GaugeVec

	mailboxRead *prometheus.GaugeVec
	mailboxSize *prometheus.GaugeVec
}

// NewMetrics creates and registers the source metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dmarc_source_scans_total",
			Help: "Complete scans of a source since start (every file listed and read, but those still being written); after the first, every file present at start was read.",
		}, []string{"source"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dmarc_source_files_total",
			Help: "Files read from a source since start, by outcome (ingested, rejected).",
		}, []string{"source", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dmarc_source_errors_total",
			Help: "Errors reading, listing or moving files of a source since start (the file is tried again).",
		}, []string{"source"}),
		lastScan: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dmarc_source_last_scan_timestamp_seconds",
			Help: "When the last complete scan of a source ended.",
		}, []string{"source"}),
	}
	m.imapUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dmarc_imap_up",
		Help: "Whether the IMAP source is connected and logged in (1) or not (0).",
	}, []string{"source"})
	m.imapErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dmarc_imap_connection_errors_total",
		Help: "IMAP sessions that failed since start, by kind (auth, tls, network, protocol); each is retried with backoff.",
	}, []string{"source", "kind"})
	m.imapFetched = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dmarc_imap_messages_fetched_total",
		Help: "Messages downloaded from an IMAP source since start.",
	}, []string{"source"})
	m.imapMoved = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dmarc_imap_messages_moved_total",
		Help: "Messages moved, after their reports were saved, to the archive folder or (no usable report) the invalid folder, since start.",
	}, []string{"source", "folder"})
	m.imapPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dmarc_imap_messages_pending",
		Help: "Messages of the IMAP folder not read yet, as of the last listing.",
	}, []string{"source"})
	m.mailboxRead = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dmarc_source_pass_read_bytes",
		Help: "Bytes of an mbox or Maildir source read by its current or last pass: with dmarc_source_pass_size_bytes, how far a backfill is.",
	}, []string{"source"})
	m.mailboxSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dmarc_source_pass_size_bytes",
		Help: "Bytes of an mbox or Maildir source when its current or last pass began.",
	}, []string{"source"})
	reg.MustRegister(m.scans, m.files, m.errors, m.lastScan, m.imapUp, m.imapErrors, m.imapFetched, m.imapMoved, m.imapPending,
		m.mailboxRead, m.mailboxSize)
	return m
}

// init creates a source's series at zero so that rates work from the start.
func (m *Metrics) init(source string) {
	m.scans.WithLabelValues(source)
	m.files.WithLabelValues(source, "ingested")
	m.files.WithLabelValues(source, "rejected")
	m.errors.WithLabelValues(source)
}
