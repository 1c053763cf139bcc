package collector

import (
	"slices"
	"time"
)

// The missing-reporter watchdog (after the "DMARC endpoint check" of the
// UvA DMARC aggregation study): a reporter that used to send reports for a
// domain and stopped. Each (domain, reporter) learns its usual interval from
// the date ranges of its latest reports, and is silent when no report has
// arrived for longer than max(2 × interval, 48 h); a reporter is watched
// from its third report on. Reporters listed as
// expected in the configuration but never seen are silent once the state is
// older than that grace period.

const (
	// defaultInterval is assumed until two reports were seen: RFC 7489's
	// default ri=86400.
	defaultInterval = 24 * time.Hour
	minSilence      = 48 * time.Hour
	minWatched      = 3
)

// expected reports whether k is listed in expected_reporters. s.mu is held.
func (s *Store) expected(k reporterKey) bool {
	return slices.Contains(s.opts.ExpectedReporters[k.domain], k.reporter)
}

// expectedInterval is the median gap between consecutive report ends,
// clamped to [1h, 30d].
func expectedInterval(ends []int64) time.Duration {
	if len(ends) < 2 {
		return defaultInterval
	}
	gaps := make([]int64, 0, len(ends)-1)
	for i := 1; i < len(ends); i++ {
		gaps = append(gaps, ends[i]-ends[i-1])
	}
	slices.Sort(gaps)
	d := time.Duration(gaps[len(gaps)/2]) * time.Second
	return min(max(d, time.Hour), 30*24*time.Hour)
}

// watch is one row of the watchdog.
type watch struct {
	domain, reporter string
	last             int64 // Unix seconds of the newest report received, 0 if never
	interval         time.Duration
	silent           bool
}

// watches computes the watchdog rows at now. s.mu is held.
func (s *Store) watches(now time.Time, shown func(string) bool) []watch {
	var out []watch
	seen := map[reporterKey]bool{}
	for k, r := range s.reporters {
		// A reporter is watched once it sent minWatched reports: one
		// report is no habit (a backlog import brings many such).
		if !shown(k.domain) || k.reporter == otherLabel || len(r.Ends) < minWatched && !s.expected(k) {
			continue
		}
		last := r.LastReceived
		if last == 0 {
			last = r.LastEnd
		}
		w := watch{domain: k.domain, reporter: k.reporter, last: last, interval: expectedInterval(r.Ends)}
		w.silent = now.Sub(time.Unix(last, 0)) > max(2*w.interval, minSilence)
		out = append(out, w)
		seen[k] = true
	}
	for domain, reporters := range s.opts.ExpectedReporters {
		if !shown(domain) {
			continue
		}
		for _, reporter := range reporters {
			if seen[reporterKey{domain, reporter}] {
				continue
			}
			out = append(out, watch{domain: domain, reporter: reporter, interval: defaultInterval,
				silent: now.Sub(s.created) > max(2*defaultInterval, minSilence)})
		}
	}
	return out
}
