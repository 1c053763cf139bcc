// Package collector holds what the exporter has counted from reports,
// keeps it in a state file that survives restarts and crashes, and serves
// it to Prometheus.
//
// Files are ingested into a pending batch (IngestFile) and made live and
// saved together by Commit: a report's increments, its dedup key and its
// file's "read" mark reach the state file in one atomic write, so that
// after a crash at any moment a restart neither loses a report (its file
// is read again) nor counts one twice.
package collector

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// StateFileName is the name of the state file under the storage path.
const StateFileName = "state.json"

// Options configure a Store.
type Options struct {
	// Dir is the storage path; the state file is Dir/state.json.
	Dir string
	// Domains are the configured (normalised) domains; empty to accept
	// every policy domain up to Limits.Domains.
	Domains []string
	// Sources are the names of the configured sources, whose rejection
	// counters are served at 0 from the start.
	Sources        []string
	Limits         config.Limits
	DedupRetention time.Duration
	// MaxDedupKeys bounds the remembered report identities; the oldest go
	// first. Anyone can send reports, so this must be bounded too.
	MaxDedupKeys int
	ReportLimits report.Limits
	// FailureSamples is how many redacted failure reports to keep for the
	// detail view; 0 keeps none.
	FailureSamples int
	// ExpectedReporters are, per domain, reporter labels the watchdog
	// watches before they were ever seen.
	ExpectedReporters map[string][]string
	// Enricher identifies and classifies the sources of records for
	// dmarc_source_messages_total; nil counts no sources.
	Enricher *enrich.Enricher
	// NewSeriesDelay is how long a new counter series is served at 0
	// (fresh.go); 0 serves values at once.
	NewSeriesDelay time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Store is the counted state: live counters served to Prometheus and a
// pending batch of what was ingested since the last Commit.
type Store struct {
	path   string
	saveMu sync.Mutex // serialises Commit, so saves happen in order

	mu           sync.RWMutex
	opts         Options
	live         *counters
	pending      *counters
	committing   *counters         // the batch being written by Commit, or nil
	dirty        bool              // live differs from the state file
	created      time.Time         // when the state began
	fresh        map[any]time.Time // series made live lately: served at 0 (fresh.go)
	in           *interner
	reporterSets map[string]map[string]struct{} // domain -> reporters, live and pending
	// Per domain, the source_asn, source_country and source_name values
	// in use, live and pending, for their caps.
	sourceASNs, sourceCountries, sourceNames map[string]map[string]struct{}
	sourceSeries                             map[string]int // dmarc_source_messages_total series per domain

	lastTextSize atomic.Int64 // size of the last /metrics text, to size the next

	// Health of the state file, guarded by mu.
	lastSave   time.Time
	saveErrors uint64
}

// Open loads the state file under opts.Dir, or starts empty when there is
// none.
func Open(opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxDedupKeys == 0 {
		opts.MaxDedupKeys = 1_000_000
	}
	s := &Store{
		path:         filepath.Join(opts.Dir, StateFileName),
		opts:         opts,
		pending:      newCounters(),
		dirty:        true, // the first Commit writes the file
		in:           newInterner(),
		reporterSets: map[string]map[string]struct{}{},
		sourceASNs:   map[string]map[string]struct{}{}, sourceCountries: map[string]map[string]struct{}{},
		sourceNames: map[string]map[string]struct{}{}, sourceSeries: map[string]int{},
		fresh: map[any]time.Time{},
	}
	live, created, err := loadState(s.path, s.in, opts.Now())
	if err != nil {
		return nil, err
	}
	s.created = created
	s.live = live
	for k := range live.reporters {
		if s.reporterSets[k.domain] == nil {
			s.reporterSets[k.domain] = map[string]struct{}{}
		}
		s.reporterSets[k.domain][k.reporter] = struct{}{}
	}
	for _, m := range []map[reporterKey]*kindStats{live.tlsReporters, live.failureReporters} {
		for k := range m {
			if s.reporterSets[k.domain] == nil {
				s.reporterSets[k.domain] = map[string]struct{}{}
			}
			s.reporterSets[k.domain][k.reporter] = struct{}{}
		}
	}
	for k := range live.sources {
		s.sourceSeries[k.domain]++
		for _, m := range []struct {
			sets  map[string]map[string]struct{}
			value string
		}{{s.sourceASNs, k.asn}, {s.sourceCountries, k.country}, {s.sourceNames, k.name}} {
			if m.sets[k.domain] == nil {
				m.sets[k.domain] = map[string]struct{}{}
			}
			m.sets[k.domain][m.value] = struct{}{}
		}
	}
	for d := range live.domains {
		if s.reporterSets[d] == nil {
			s.reporterSets[d] = map[string]struct{}{}
		}
	}
	return s, nil
}

// SetConfig applies a reloaded configuration: domains and limits. Counted
// data is kept; a domain no longer configured is no longer exported.
func (s *Store) SetConfig(domains, sources []string, limits config.Limits, dedupRetention time.Duration, failureSamples int,
	expected map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.ExpectedReporters = expected
	s.opts.FailureSamples = failureSamples
	if over := len(s.live.samples) - failureSamples; over > 0 {
		s.live.samples = slices.Delete(slices.Clone(s.live.samples), 0, over)
		s.dirty = true
	}
	s.opts.Domains = slices.Clone(domains)
	s.opts.Sources = slices.Clone(sources)
	s.opts.Limits = limits
	s.opts.DedupRetention = dedupRetention
}

// SetEnricher replaces the enricher (after a reload).
func (s *Store) SetEnricher(e *enrich.Enricher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Enricher = e
}

// Commit writes the state file with the pending batch added, and only
// once it is written makes the batch live: what is served has been saved.
// When the write fails, the batch goes back to pending, the error is
// returned and counted, and the next Commit tries again.
func (s *Store) Commit() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	if s.pending.empty() && !s.dirty {
		s.mu.Unlock()
		return nil
	}
	batch := s.pending
	s.pending = newCounters()
	s.committing = batch // still seen by Seen and the dedup checks
	next := s.live.clone()
	next.merge(batch, s.opts.FailureSamples)
	s.expireDedup(next)
	f := next.toFile()
	f.Created = s.created.Unix()
	s.mu.Unlock()

	err := writeState(s.path, f)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.committing = nil
	if err != nil {
		batch.merge(s.pending, len(batch.samples)+len(s.pending.samples)) // older first
		s.pending = batch
		s.saveErrors++
		return fmt.Errorf("write state: %w", err)
	}
	s.markFresh(s.live, batch, s.opts.Now())
	s.live = next
	s.dirty = false
	s.lastSave = s.opts.Now()
	return nil
}

// expireDedup forgets report identities older than the retention, and the
// oldest beyond MaxDedupKeys. s.mu is held.
func (s *Store) expireDedup(c *counters) {
	cutoff := s.opts.Now().Add(-s.opts.DedupRetention).Unix()
	for k, t := range c.dedup {
		if t < cutoff {
			delete(c.dedup, k)
		}
	}
	if over := len(c.dedup) - s.opts.MaxDedupKeys; over > 0 {
		times := make([]int64, 0, len(c.dedup))
		for _, t := range c.dedup {
			times = append(times, t)
		}
		slices.Sort(times)
		limit := times[over-1]
		for k, t := range c.dedup {
			if t <= limit && over > 0 {
				delete(c.dedup, k)
				over--
			}
		}
	}
}

// PruneFiles forgets the read marks of the files below root that are no
// longer there (moved away or deleted), given every path a full scan found.
func (s *Store) PruneFiles(root string, present map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := strings.TrimSuffix(root, string(filepath.Separator)) + string(filepath.Separator)
	for k := range s.live.files {
		if strings.HasPrefix(k, prefix) && !present[k] {
			delete(s.live.files, k)
			s.dirty = true
		}
	}
}
