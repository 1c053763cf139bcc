package collector

import (
	"slices"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// reporterKey is a (domain, reporter) pair of label values.
type reporterKey struct{ domain, reporter string }

// reporterStats are the watchdog's view of a reporter: when its newest
// report ended and was received, and the ends of its latest reports.
type reporterStats struct {
	// LastEnd is the end of the newest report's date range, Unix seconds.
	LastEnd int64 `json:"last_end"`
	// LastReceived is when the newest report was ingested, Unix seconds.
	LastReceived int64 `json:"last_received,omitempty"`
	// Ends are the date range ends of the latest reports (at most
	// maxEnds, ascending), from which the watchdog learns the interval.
	Ends []int64 `json:"ends,omitempty"`
}

// add merges the newer view o into r.
func (r *reporterStats) add(o *reporterStats) {
	r.LastEnd = max(r.LastEnd, o.LastEnd)
	r.LastReceived = max(r.LastReceived, o.LastReceived)
	r.Ends = mergeEnds(r.Ends, o.Ends)
}

// maxEnds bounds the report ends kept per reporter.
const maxEnds = 16

// mergeEnds merges two ascending lists of report ends, without repeats,
// keeping the latest maxEnds.
func mergeEnds(a, b []int64) []int64 {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxEnds {
		out = out[len(out)-maxEnds:]
	}
	return out
}

// maxSelectors bounds the DKIM selectors learned per domain from reports.
const maxSelectors = 10

// addSelectors adds sels to the selectors of domain, up to maxSelectors,
// and returns those it added.
func addSelectors(m map[string]map[string]struct{}, domain string, sels map[string]struct{}) []string {
	set := m[domain]
	if set == nil {
		set = map[string]struct{}{}
		m[domain] = set
	}
	var added []string
	for s := range sels {
		if _, ok := set[s]; !ok && len(set) < maxSelectors {
			set[s] = struct{}{}
			added = append(added, s)
		}
	}
	return added
}

// batch is what was ingested since the last Commit: whole inputs, with
// the counter increments they bring and what the archive keeps of them.
type batch struct {
	totals     totals
	reporters  map[reporterKey]*reporterStats
	inputs     map[string]archive.Input // by path
	forget     []string
	ids        map[string]int64 // report identities, first seen
	aggregates []*archive.Aggregate
	tls        []*archive.TLS
	failures   []*archive.Failure
	selectors  map[string]map[string]struct{}
}

func newBatch() *batch {
	return &batch{totals: totals{}, reporters: map[reporterKey]*reporterStats{}, inputs: map[string]archive.Input{},
		ids: map[string]int64{}, selectors: map[string]map[string]struct{}{}}
}

func (b *batch) empty() bool {
	return len(b.totals) == 0 && len(b.reporters) == 0 && len(b.inputs) == 0 && len(b.forget) == 0 && len(b.ids) == 0 &&
		len(b.selectors) == 0
}

func (b *batch) reporter(k reporterKey) *reporterStats {
	r := b.reporters[k]
	if r == nil {
		r = &reporterStats{}
		b.reporters[k] = r
	}
	return r
}

// merge adds the later batch o to b.
func (b *batch) merge(o *batch) {
	b.totals.merge(o.totals)
	for k, r := range o.reporters {
		b.reporter(k).add(r)
	}
	for k, v := range o.inputs {
		b.inputs[k] = v
	}
	b.forget = append(b.forget, o.forget...)
	for k, v := range o.ids {
		b.ids[k] = v
	}
	b.aggregates = append(b.aggregates, o.aggregates...)
	b.tls = append(b.tls, o.tls...)
	b.failures = append(b.failures, o.failures...)
	for d, sels := range o.selectors {
		set := b.selectors[d]
		if set == nil {
			set = map[string]struct{}{}
			b.selectors[d] = set
		}
		for s := range sels {
			set[s] = struct{}{}
		}
	}
}
