package collector

import (
	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// Refresh takes into the live state what other exporters sharing the
// archive (a PostgreSQL archive: an HA pair, shards) saved: the counter
// totals, the watchdog's view of the reporters, the DKIM selectors. A
// counter never goes down: each series takes the larger of its live and
// archived value, the difference counting as an increment (a new series
// is served at 0 first, as any). It runs between commits, so that what
// this exporter saved is counted once.
func (s *Store) Refresh() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	byName := storedByName()
	archived := totals{}
	if err := s.arc.Totals(func(name, key string, v uint64) {
		if f := byName[name]; f != nil {
			if archived[f] == nil {
				archived[f] = map[string]uint64{}
			}
			archived[f][key] = v
		}
	}); err != nil {
		return err
	}
	var reporters []archive.Reporter
	if err := s.arc.Reporters(func(r archive.Reporter) { reporters = append(reporters, r) }); err != nil {
		return err
	}
	var selectors []archive.Selector
	if err := s.arc.Selectors(func(sel archive.Selector) { selectors = append(selectors, sel) }); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	increments := totals{}
	for f, series := range archived {
		for key, v := range series {
			if live := s.live[f][key]; v > live || !s.live.has(f, key) {
				if increments[f] == nil {
					increments[f] = map[string]uint64{}
				}
				increments[f][key] = v - live
			}
		}
	}
	fresh := totals{}
	for f, series := range increments {
		for key := range series {
			// A series staged here and not saved yet is in the caps' sets
			// already.
			staged := s.pending.totals.has(f, key) || s.committing != nil && s.committing.totals.has(f, key)
			if !s.live.has(f, key) && !staged {
				if fresh[f] == nil {
					fresh[f] = map[string]uint64{}
				}
				fresh[f][key] = 0
			}
		}
	}
	s.noteLabels(fresh)
	s.markFresh(increments, s.opts.Now())
	s.live.merge(increments)
	for _, r := range reporters {
		k := reporterKey{r.Domain, r.Reporter}
		live := s.reporters[k]
		if live == nil {
			live = &reporterStats{}
			s.reporters[k] = live
		}
		live.add(&reporterStats{LastEnd: r.LastEnd, LastReceived: r.LastReceived, Ends: r.Ends})
	}
	for _, sel := range selectors {
		addSelectors(s.selectors, sel.Domain, map[string]struct{}{sel.Selector: {}})
	}
	return nil
}
