package history

import (
	"context"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// The report-time series. Their names cannot collide with the live
// counters (dmarc_messages_total, ...): they are gauges without _total.
const (
	MessagesName = "dmarc_report_day_messages"
	SourcesName  = "dmarc_report_day_source_messages"
)

// Families are the report-time families, with their help and labels, in
// the order they are written.
var Families = []Family{
	{Name: MessagesName, Labels: []string{"domain", "reporter", "disposition", "dmarc", "dkim", "spf"},
		Help: "Messages the aggregate reports describe, on the UTC day of their date range (split over days in proportion to time); a sample at noon of the day, sum_over_time(...[1d]) at the next midnight gives the day's total."},
	{Name: SourcesName, Labels: []string{"domain", "source_class"},
		Help: "Messages the aggregate reports describe, by the class of their source, on the UTC day of their date range; as dmarc_report_day_messages."},
}

// Family is a report-time family.
type Family struct {
	Name, Help string
	Labels     []string
}

// Sample is one value of a series: the messages of a day, at the day's
// noon (UTC): the middle of the day the messages were sent, and inside
// a [1d] range that ends at the next midnight.
type Sample struct {
	Day   time.Time
	Value uint64
	At    time.Time // where remote write puts it; zero elsewhere
}

// Timestamp is where a day's sample is placed.
func Timestamp(d time.Time) time.Time { return d.Add(12 * time.Hour) }

// Series accumulates record groups into report-time series: per family,
// per label values (joined by archive.LabelSep), per day.
type Series struct {
	values map[string]map[string]map[day]uint64
	// From and Until bound the days kept: days before From or from
	// Until on are dropped (a report overlapping the bounds keeps only
	// its days inside). Zero keeps all.
	From, Until time.Time
}

// NewSeries returns empty series for the days in [from, until).
func NewSeries(from, until time.Time) *Series {
	s := &Series{values: map[string]map[string]map[day]uint64{}, From: from, Until: until}
	for _, f := range Families {
		s.values[f.Name] = map[string]map[day]uint64{}
	}
	return s
}

// FromArchive reads the series of the reports f selects, keeping the
// days in [from, until) (zero keeps all).
func FromArchive(ctx context.Context, arc *archive.Archive, f archive.GroupFilter, from, until time.Time) (*Series, error) {
	s := NewSeries(from, until)
	err := arc.RecordGroups(ctx, f, func(g archive.RecordGroup) error {
		s.Add(g)
		return nil
	})
	return s, err
}

// Add adds a record group's messages to its days.
func (s *Series) Add(g archive.RecordGroup) {
	days := split(g.Begin, g.End, g.Messages)
	s.add(MessagesName, days, g.Domain, g.Reporter, orOther(g.Disposition), orOther(g.DMARC), orOther(g.DKIM), orOther(g.SPF))
	s.add(SourcesName, days, g.Domain, orOther(g.Class))
}

func (s *Series) add(family string, days map[day]uint64, labels ...string) {
	key := labels[0]
	for _, l := range labels[1:] {
		key += archive.LabelSep + l
	}
	m := s.values[family][key]
	for d, n := range days {
		if !s.From.IsZero() && d.Before(s.From.Truncate(24*time.Hour)) || !s.Until.IsZero() && !d.Before(s.Until) {
			continue
		}
		if m == nil {
			m = map[day]uint64{}
			s.values[family][key] = m
		}
		m[d] += n
	}
}

// orOther is the label value of an empty result: "other", as the live
// counters have it.
func orOther(s string) string {
	if s == "" {
		return "other"
	}
	return s
}

// Len is the number of samples.
func (s *Series) Len() int {
	n := 0
	for _, f := range s.values {
		for _, days := range f {
			n += len(days)
		}
	}
	return n
}
