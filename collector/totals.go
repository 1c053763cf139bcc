package collector

import (
	"strings"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// totals are counter values by family and series: the live values that
// /metrics serves, or the increments of a batch. A series is its label
// values joined by archive.LabelSep, as the archive's totals table keeps
// them, so that a counter family needs no code of its own to be saved,
// loaded and served.
type totals map[*family]map[string]uint64

// seriesKey joins label values.
func seriesKey(labelValues ...string) string {
	return strings.Join(labelValues, archive.LabelSep)
}

// add adds v to a series; 0 creates it.
func (t totals) add(f *family, v uint64, labelValues ...string) {
	m := t[f]
	if m == nil {
		m = map[string]uint64{}
		t[f] = m
	}
	m[seriesKey(labelValues...)] += v
}

// has reports whether a series exists.
func (t totals) has(f *family, key string) bool {
	_, ok := t[f][key]
	return ok
}

// merge adds the increments of b.
func (t totals) merge(b totals) {
	for f, series := range b {
		m := t[f]
		if m == nil {
			m = make(map[string]uint64, len(series))
			t[f] = m
		}
		for k, v := range series {
			m[k] += v
		}
	}
}

// byName is the archive's form of t: family names for keys.
func (t totals) byName() map[string]map[string]uint64 {
	out := make(map[string]map[string]uint64, len(t))
	for f, series := range t {
		out[f.name] = series
	}
	return out
}

// splitLabels splits a series key into dst (reused), without allocating
// the values.
func splitLabels(dst []string, key string) []string {
	dst = dst[:0]
	for {
		i := strings.Index(key, archive.LabelSep)
		if i < 0 {
			return append(dst, key)
		}
		dst = append(dst, key[:i])
		key = key[i+len(archive.LabelSep):]
	}
}

// firstLabel is the first label value of a series key (its domain, for
// the families that have one).
func firstLabel(key string) string {
	if i := strings.Index(key, archive.LabelSep); i >= 0 {
		return key[:i]
	}
	return key
}
