// Package source finds raw reports and hands them to a Sink: dir.go reads
// a directory tree. A source never deletes or changes a file; it moves one
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
	// Commit saves everything ingested so far, atomically.
	Commit() error
	// PruneFiles forgets the files below root that a full scan did not
	// find.
	PruneFiles(root string, present map[string]bool)
}

// Metrics are the sources' own metrics; they count since start.
type Metrics struct {
	scans    *prometheus.CounterVec
	files    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	lastScan *prometheus.GaugeVec
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
	reg.MustRegister(m.scans, m.files, m.errors, m.lastScan)
	return m
}

// init creates a source's series at zero so that rates work from the start.
func (m *Metrics) init(source string) {
	m.scans.WithLabelValues(source)
	m.files.WithLabelValues(source, "ingested")
	m.files.WithLabelValues(source, "rejected")
	m.errors.WithLabelValues(source)
}
