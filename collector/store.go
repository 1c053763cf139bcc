// Package collector turns reports into counters and serves them to
// Prometheus. It keeps nothing of its own: what it counts is saved in the
// archive (package archive), from which a start loads it.
//
// Files are ingested into a pending batch (IngestFile) and saved and made
// live together by Commit: an input's reports, its counter increments,
// its dedup keys and its "read" mark reach the archive in one
// transaction, so that after a crash at any moment a restart neither
// loses a report (its file is read again) nor counts one twice.
package collector

import (
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Options configure a Store.
type Options struct {
	// Archive keeps what the Store counts; the Store loads its totals from
	// it at Open.
	Archive *archive.Archive
	// Dir is the storage path, where a state file of an earlier version
	// (state.json) is imported from at Open.
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
	// MaxRawBytes is the largest report whose bytes the archive keeps,
	// compressed, for a "show the report" view; 0 keeps none.
	MaxRawBytes int
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
	// Shard, when set, are the domains whose series this exporter serves
	// (one shard of several sharing an archive); the others are counted
	// and saved, not served.
	Shard  []string
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is the counted state: live counters served to Prometheus and a
// pending batch of what was ingested since the last Commit.
type Store struct {
	arc    *archive.Archive
	saveMu sync.Mutex // serialises Commit, so saves happen in order

	mu         sync.RWMutex
	opts       Options
	live       totals
	reporters  map[reporterKey]*reporterStats // the watchdog's view, live
	selectors  map[string]map[string]struct{} // DKIM selectors seen in reports, per domain
	identities int                            // report identities in the archive
	// queue are the batches of the inputs staged since the last Commit, in
	// order; pending is them merged, for the checks of what was read and
	// counted, and committing the same of those Commit is writing (nil
	// between commits).
	queue      []*batch
	pending    *batch
	committing *batch
	created    time.Time              // when the archive began
	fresh      map[freshKey]time.Time // series made live lately: served at 0 (fresh.go)
	// Label values in use, live and pending, for their caps: reporters per
	// domain, and the source_asn, source_country and source_name values and
	// the dmarc_source_messages_total series of each domain.
	reporterSets                             map[string]map[string]struct{}
	sourceASNs, sourceCountries, sourceNames map[string]map[string]struct{}
	sourceSeries                             map[string]int
	lastExpiry                               time.Time // of report identities

	textBlocks blocks // the memory of past /metrics texts, for the next

	// Health of the archive writes, guarded by mu.
	lastSave   time.Time
	saveErrors uint64
	recreated  uint64 // times the archive file was written anew
	// staged counts the reports read and duplicates among them, for logs.
	staged struct{ reports, duplicates uint64 }
}

// Open loads the live state from the archive, after importing a state
// file of an earlier version found in opts.Dir.
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
		arc:          opts.Archive,
		opts:         opts,
		live:         totals{},
		reporters:    map[reporterKey]*reporterStats{},
		selectors:    map[string]map[string]struct{}{},
		pending:      newBatch(),
		reporterSets: map[string]map[string]struct{}{},
		sourceASNs:   map[string]map[string]struct{}{}, sourceCountries: map[string]map[string]struct{}{},
		sourceNames: map[string]map[string]struct{}{}, sourceSeries: map[string]int{},
		fresh: map[freshKey]time.Time{},
	}
	if err := importStateFile(opts.Archive, opts.Dir, opts.Now(), opts.Logger); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the live state from the archive and derives the label sets
// the caps need.
func (s *Store) load() error {
	var err error
	if s.created, err = s.arc.Created(s.opts.Now()); err != nil {
		return err
	}
	byName := storedByName()
	var unknown []string
	err = s.arc.Totals(func(name, key string, v uint64) {
		f := byName[name]
		if f == nil {
			if !slices.Contains(unknown, name) {
				unknown = append(unknown, name)
			}
			return
		}
		m := s.live[f]
		if m == nil {
			m = map[string]uint64{}
			s.live[f] = m
		}
		m[key] = v
	})
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		s.opts.Logger.Warn("the archive holds counters this version does not serve", "families", unknown)
	}
	if err := s.arc.Reporters(func(r archive.Reporter) {
		s.reporters[reporterKey{r.Domain, r.Reporter}] = &reporterStats{LastEnd: r.LastEnd, LastReceived: r.LastReceived, Ends: r.Ends}
	}); err != nil {
		return err
	}
	if err := s.arc.Selectors(func(sel archive.Selector) {
		addSelectors(s.selectors, sel.Domain, map[string]struct{}{sel.Selector: {}})
	}); err != nil {
		return err
	}
	if s.identities, err = s.arc.Identities(); err != nil {
		return err
	}
	s.noteLabels(s.live)
	return nil
}

// noteLabels adds the label values of the series of t to the sets the
// caps count: reporters per domain, and each domain's source labels and
// series. t's series must not be live yet, but for load. s.mu is held.
func (s *Store) noteLabels(t totals) {
	labels := make([]string, 0, 8)
	for _, f := range []*family{reportsFamily, tlsReportsFamily, failureDuplicatesFamily} {
		for key := range t[f] {
			labels = splitLabels(labels, key)
			setOf(s.reporterSets, labels[0])[labels[1]] = struct{}{}
		}
	}
	for key := range t[domainReportsFamily] {
		setOf(s.reporterSets, key)
	}
	for key := range t[sourcesFamily] {
		labels = splitLabels(labels, key)
		domain := labels[0]
		s.sourceSeries[domain]++
		setOf(s.sourceASNs, domain)[labels[1]] = struct{}{}
		setOf(s.sourceCountries, domain)[labels[3]] = struct{}{}
		setOf(s.sourceNames, domain)[labels[4]] = struct{}{}
	}
}

// storedByName are the stored families by metric name, as the archive's
// totals name them.
func storedByName() map[string]*family {
	byName := map[string]*family{}
	for _, f := range families {
		if f.stored {
			byName[f.name] = f
		}
	}
	return byName
}

// setOf returns the set of key in m, created when missing.
func setOf(m map[string]map[string]struct{}, key string) map[string]struct{} {
	set := m[key]
	if set == nil {
		set = map[string]struct{}{}
		m[key] = set
	}
	return set
}

// SetConfig applies a reloaded configuration: domains and limits. Counted
// data is kept; a domain no longer configured is no longer exported.
func (s *Store) SetConfig(domains, sources []string, limits config.Limits, dedupRetention time.Duration, failureSamples int,
	expected map[string][]string, maxRaw int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.ExpectedReporters = expected
	s.opts.FailureSamples = failureSamples
	s.opts.MaxRawBytes = maxRaw
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

// Commit writes what was ingested since the last Commit to the archive,
// one transaction per input (its reports, records, counter increments,
// identities and mark), and makes each input live once its transaction is
// committed: what is served has been saved. When a write fails, that
// input and those after it stay pending, the error is returned and
// counted, and the next Commit tries again.
func (s *Store) Commit() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	queue := s.queue
	if len(queue) == 0 {
		s.mu.Unlock()
		return nil
	}
	s.queue = nil
	s.committing = s.pending // still seen by Seen and the dedup checks
	s.pending = newBatch()
	s.mu.Unlock()

	if recreated, err := s.arc.EnsureFile(); err != nil {
		s.opts.Logger.Error("archive file", "err", err)
	} else if recreated {
		s.opts.Logger.Warn("the archive file was deleted while in use: written anew from what is open",
			"archive", s.arc.Path())
		s.mu.Lock()
		s.recreated++
		s.mu.Unlock()
	}

	for i, b := range queue {
		s.mu.Lock()
		ab := s.archiveBatch(b)
		s.mu.Unlock()
		if err := s.arc.Apply(ab); err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			// The inputs not written go back before those staged meanwhile;
			// one whose report another exporter counted meanwhile is
			// dropped, to be read again (its sources move nothing this
			// time): then the report is known.
			rest := queue[i:len(queue):len(queue)]
			if errors.Is(err, archive.ErrCountedElsewhere) {
				rest = rest[1:]
				s.opts.Logger.Info("another exporter sharing the archive counted a report of this input meanwhile: it is read again", "err", err)
			} else {
				s.saveErrors++
			}
			rest = append(rest, s.queue...)
			s.queue, s.pending, s.committing = nil, newBatch(), nil
			for _, r := range rest {
				s.enqueue(r)
			}
			return err
		}
		s.mu.Lock()
		s.makeLive(b)
		s.mu.Unlock()
	}

	s.mu.Lock()
	s.committing = nil
	now := s.opts.Now()
	s.lastSave = now
	expire := now.Sub(s.lastExpiry) >= time.Hour
	if expire {
		s.lastExpiry = now
	}
	cutoff, maxKeys := now.Add(-s.opts.DedupRetention), s.opts.MaxDedupKeys
	s.mu.Unlock()

	// Report identities past state.dedup_retention, hourly, without the
	// lock: scrapes and ingest go on meanwhile.
	if expire {
		if _, err := s.arc.ExpireIdentities(cutoff, maxKeys); err != nil {
			s.opts.Logger.Warn("expire report identities", "err", err)
		} else if n, err := s.arc.Identities(); err == nil {
			s.mu.Lock()
			s.identities = n
			s.mu.Unlock()
		}
	}
	return nil
}

// enqueue stages the batch of one input (or of forgotten marks) for the
// next Commit. s.mu is held.
func (s *Store) enqueue(b *batch) {
	s.queue = append(s.queue, b)
	s.pending.merge(b)
}

// makeLive adds a batch the archive holds to what is served. s.mu is held.
func (s *Store) makeLive(b *batch) {
	s.markFresh(b.totals, s.opts.Now())
	s.live.merge(b.totals)
	for k, r := range b.reporters {
		live := s.reporters[k]
		if live == nil {
			live = &reporterStats{}
			s.reporters[k] = live
		}
		live.add(r)
	}
	for d, sels := range b.selectors {
		addSelectors(s.selectors, d, sels)
	}
	s.identities += len(b.ids)
}

// archiveBatch is what the archive writes for b: b's rows, the counter
// increments, the watchdog's new view of the reporters b touches, the
// selectors b adds. s.mu is held.
func (s *Store) archiveBatch(b *batch) *archive.Batch {
	ab := &archive.Batch{Forget: b.forget, Aggregates: b.aggregates, TLS: b.tls, Failures: b.failures,
		Totals: s.increments(b.totals)}
	for _, in := range b.inputs {
		ab.Inputs = append(ab.Inputs, in)
	}
	for id, t := range b.ids {
		ab.Identities = append(ab.Identities, archive.Identity{ID: id, FirstSeen: time.Unix(t, 0)})
	}
	for k, r := range b.reporters {
		next := reporterStats{}
		if live := s.reporters[k]; live != nil {
			next = *live
		}
		next.add(r)
		ab.Reporters = append(ab.Reporters, archive.Reporter{Domain: k.domain, Reporter: k.reporter,
			LastEnd: next.LastEnd, LastReceived: next.LastReceived, Ends: next.Ends})
	}
	for d, sels := range b.selectors {
		trial := map[string]map[string]struct{}{d: maps.Clone(s.selectors[d])}
		for _, sel := range addSelectors(trial, d, sels) {
			ab.Selectors = append(ab.Selectors, archive.Selector{Domain: d, Selector: sel})
		}
	}
	return ab
}

// increments are the totals of a batch as the archive writes them: a zero
// increment, which creates a series, only for a series not live yet.
// s.mu is held.
func (s *Store) increments(t totals) map[string]map[string]uint64 {
	out := make(map[string]map[string]uint64, len(t))
	for f, series := range t {
		m := make(map[string]uint64, len(series))
		for k, v := range series {
			if v > 0 || !s.live.has(f, k) {
				m[k] = v
			}
		}
		if len(m) > 0 {
			out[f.name] = m
		}
	}
	return out
}

// PruneFiles forgets the read marks of the inputs below root that are no
// longer there (moved away or deleted), given every path a full scan found.
func (s *Store) PruneFiles(root string, present map[string]bool) {
	prefix := strings.TrimSuffix(root, string(filepath.Separator)) + string(filepath.Separator)
	paths, err := s.arc.InputsUnder(prefix)
	if err != nil {
		s.opts.Logger.Warn("prune read marks", "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := newBatch()
	for _, p := range paths {
		if !present[p] {
			if _, pending := s.pending.inputs[p]; !pending {
				gone.forget = append(gone.forget, p)
			}
		}
	}
	if len(gone.forget) > 0 {
		s.enqueue(gone)
	}
}
