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
	markNew(s.fresh, now, old.messages, batch.messages, asIs)
	markNew(s.fresh, now, old.reporters, batch.reporters, asIs)
	markNew(s.fresh, now, old.overrides, batch.overrides, asIs)
	markNew(s.fresh, now, old.sources, batch.sources, asIs)
	markNew(s.fresh, now, old.domains, batch.domains, func(k string) any { return freshDomain(k) })
	markNew(s.fresh, now, old.rejected, batch.rejected, asIs)
	markNew(s.fresh, now, old.tlsSessions, batch.tlsSessions, asIs)
	markNew(s.fresh, now, old.tlsFailed, batch.tlsFailed, func(k tlsKey) any { return freshTLSFailed(k) })
	markNew(s.fresh, now, old.tlsReporters, batch.tlsReporters, func(k reporterKey) any { return freshTLSReporter(k) })
	markNew(s.fresh, now, old.failureReporters, batch.failureReporters, func(k reporterKey) any { return freshFailReport(k) })
	markNew(s.fresh, now, old.failures, batch.failures, asIs)
	for k, t := range s.fresh {
		if now.Sub(t) >= s.opts.NewSeriesDelay {
			delete(s.fresh, k)
		}
	}
}

// markNew notes, under key(k), every key of batch that old lacks.
func markNew[K comparable, V any](fresh map[any]time.Time, now time.Time, old, batch map[K]V, key func(K) any) {
	for k := range batch {
		if _, known := old[k]; !known {
			fresh[key(k)] = now
		}
	}
}

func asIs[K any](k K) any { return k }

// served is the value to serve for a counter: 0 while its series is fresh.
// s.mu is held.
func (s *Store) served(k any, v uint64, now time.Time) float64 {
	if len(s.fresh) == 0 { // the usual case: no hashing of k
		return float64(v)
	}
	if t, ok := s.fresh[k]; ok && now.Sub(t) < s.opts.NewSeriesDelay {
		return 0
	}
	return float64(v)
}
