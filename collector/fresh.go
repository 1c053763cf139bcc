package collector

import "time"

// A counter series that appears already holding its first report's count
// is invisible to increase() and rate(): Prometheus sees no step, only a
// start. So a new series is served at 0 for Options.NewSeriesDelay (by
// default two scrapes at the usual one-minute interval), and with its
// value after: the first report then counts like every other. This holds
// for every Prometheus that scrapes at least that often, HA pairs
// included, and needs no state beyond when each series became live.

// Distinct key types for series whose key types are shared by two maps.
type (
	freshTLSFailed   tlsKey
	freshTLSReporter reporterKey
	freshFailReport  reporterKey
	freshDomain      string
)

// markFresh notes the series that batch adds to old. s.mu is held.
func (s *Store) markFresh(old, batch *counters, now time.Time) {
	if s.opts.NewSeriesDelay <= 0 {
		return
	}
	mark := func(k any, known bool) {
		if !known {
			s.fresh[k] = now
		}
	}
	for k := range batch.messages {
		_, ok := old.messages[k]
		mark(k, ok)
	}
	for k := range batch.reporters {
		_, ok := old.reporters[k]
		mark(k, ok)
	}
	for k := range batch.overrides {
		_, ok := old.overrides[k]
		mark(k, ok)
	}
	for k := range batch.domains {
		_, ok := old.domains[k]
		mark(freshDomain(k), ok)
	}
	for k := range batch.rejected {
		_, ok := old.rejected[k]
		mark(k, ok)
	}
	for k := range batch.tlsSessions {
		_, ok := old.tlsSessions[k]
		mark(k, ok)
	}
	for k := range batch.tlsFailed {
		_, ok := old.tlsFailed[k]
		mark(freshTLSFailed(k), ok)
	}
	for k := range batch.tlsReporters {
		_, ok := old.tlsReporters[k]
		mark(freshTLSReporter(k), ok)
	}
	for k := range batch.failureReporters {
		_, ok := old.failureReporters[k]
		mark(freshFailReport(k), ok)
	}
	for k := range batch.failures {
		_, ok := old.failures[k]
		mark(k, ok)
	}
	for k, t := range s.fresh {
		if now.Sub(t) >= s.opts.NewSeriesDelay {
			delete(s.fresh, k)
		}
	}
}

// served is the value to serve for a counter: 0 while its series is fresh.
// s.mu is held.
func (s *Store) served(k any, v uint64, now time.Time) float64 {
	if t, ok := s.fresh[k]; ok && now.Sub(t) < s.opts.NewSeriesDelay {
		return 0
	}
	return float64(v)
}
