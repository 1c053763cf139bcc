package collector

import "time"

// A counter series that appears already holding its first report's count
// is invisible to increase() and rate(): Prometheus sees no step, only a
// start. So a new series is served at 0 for Options.NewSeriesDelay (by
// default two scrapes at the usual one-minute interval), and with its
// value after: the first report then counts like every other. This holds
// for every Prometheus that scrapes at least that often, HA pairs
// included, and needs no state beyond when each series became live.

// freshKey is a series of a stored family.
type freshKey struct {
	f   *family
	key string
}

// markFresh notes the series that batch adds to the live totals. s.mu is
// held.
func (s *Store) markFresh(batch totals, now time.Time) {
	if s.opts.NewSeriesDelay <= 0 {
		return
	}
	for f, series := range batch {
		for k := range series {
			if !s.live.has(f, k) {
				s.fresh[freshKey{f, k}] = now
			}
		}
	}
	for k, t := range s.fresh {
		if now.Sub(t) >= s.opts.NewSeriesDelay {
			delete(s.fresh, k)
		}
	}
}

// served is the value to serve for a counter: 0 while its series is fresh.
// s.mu is held.
func (s *Store) served(f *family, key string, v uint64, now time.Time) float64 {
	if len(s.fresh) == 0 { // the usual case: no hashing
		return float64(v)
	}
	if t, ok := s.fresh[freshKey{f, key}]; ok && now.Sub(t) < s.opts.NewSeriesDelay {
		return 0
	}
	return float64(v)
}
