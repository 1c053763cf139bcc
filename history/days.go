// Package history turns the archive's aggregate reports into report-time
// series: the messages the reports describe, per UTC day of their date
// ranges, rather than when the reports were read. They are written as
// OpenMetrics with timestamps (for promtool tsdb create-blocks-from
// openmetrics) and pushed by Prometheus remote write.
//
// A report covers a range, usually one day. Its messages are split over
// the UTC days the range overlaps in proportion to the time it spends in
// each (RFC 7489 §7.2 and RFC 9990 give only the range, not when in it
// each message came). Each day gets a whole number of messages: the
// shares are rounded down and the messages left over go to the days with
// the largest remainders, so a report's days always sum to its count.
package history

import (
	"math/bits"
	"slices"
	"time"
)

// day is a UTC day as its start.
type day = time.Time

// maxSpan bounds the ranges split over days: a longer one (no reporter
// sends those; anyone can mail a forged one) counts on the day it ends,
// so that one report makes at most this many days.
const maxSpan = 31 * 24 * time.Hour

// split divides n messages of a range [begin, end] over the UTC days it
// overlaps, in proportion to the seconds of the range in each day. A
// range that ends at a midnight does not reach into the day that begins
// there; an empty or backward range puts everything on its begin day, a
// range longer than maxSpan on the day it ends. Days that get no message
// are left out.
func split(begin, end time.Time, n uint64) map[day]uint64 {
	begin, end = begin.UTC(), end.UTC()
	first := begin.Truncate(24 * time.Hour)
	if !end.After(begin) || n == 0 {
		return map[day]uint64{first: n}
	}
	if end.Sub(begin) > maxSpan {
		return map[day]uint64{end.Add(-time.Second).Truncate(24 * time.Hour): n}
	}
	type share struct {
		d    day
		secs int64
	}
	var shares []share
	var total int64
	for d := first; d.Before(end); d = d.Add(24 * time.Hour) {
		from, to := begin, end
		if d.After(from) {
			from = d
		}
		if next := d.Add(24 * time.Hour); next.Before(to) {
			to = next
		}
		if s := int64(to.Sub(from) / time.Second); s > 0 {
			shares = append(shares, share{d, s})
			total += s
		}
	}
	if total == 0 {
		return map[day]uint64{first: n}
	}
	out := make(map[day]uint64, len(shares))
	type rest struct {
		d   day
		rem uint64
	}
	var rests []rest
	var given uint64
	for _, s := range shares {
		// n*s can overflow for absurd counts: divide in two steps.
		q, r := mulDiv(n, uint64(s.secs), uint64(total))
		out[s.d] = q
		given += q
		rests = append(rests, rest{s.d, r})
	}
	// The largest remainders get one more; on a tie, the earlier day.
	slices.SortStableFunc(rests, func(a, b rest) int {
		switch {
		case a.rem > b.rem:
			return -1
		case a.rem < b.rem:
			return 1
		}
		return a.d.Compare(b.d)
	})
	for i := 0; given < n; i++ {
		out[rests[i%len(rests)].d]++
		given++
	}
	for d, v := range out {
		if v == 0 {
			delete(out, d)
		}
	}
	return out
}

// mulDiv returns n*a/b and its remainder, computed in 128 bits: a <= b,
// so the quotient fits.
func mulDiv(n, a, b uint64) (q, r uint64) {
	hi, lo := bits.Mul64(n, a)
	return bits.Div64(hi, lo, b)
}
