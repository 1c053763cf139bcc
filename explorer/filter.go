package explorer

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// Query is what a list page or API call asks for: the filter, the order
// and the page, read from and written back to the URL, so that a link
// carries them.
type Query struct {
	archive.ReportFilter
	Month   string // YYYY-MM, instead of from and to
	FromArg string // as given
	ToArg   string
	Sort    string
	Desc    bool
	Page    int // from 1
	PerPage int
}

const (
	defaultPerPage = 50
	maxPerPage     = 500
)

// ParseQuery reads a query from URL values. Dates are YYYY-MM-DD (to is
// inclusive) or Unix milliseconds, as Grafana's ${__from} and ${__to}
// give them; month=YYYY-MM is the month.
func ParseQuery(v url.Values) (*Query, error) {
	q := &Query{Page: 1, PerPage: defaultPerPage, Desc: true}
	for _, d := range v["domain"] {
		if d = strings.TrimSpace(d); d != "" {
			q.Domains = append(q.Domains, strings.ToLower(d))
		}
	}
	for _, r := range v["reporter"] {
		if r = strings.TrimSpace(r); r != "" {
			q.Reporters = append(q.Reporters, r)
		}
	}
	if m := v.Get("month"); m != "" {
		t, err := time.Parse("2006-01", m)
		if err != nil {
			return nil, fmt.Errorf("month %q: want YYYY-MM", m)
		}
		q.Month, q.From, q.Until = m, t, t.AddDate(0, 1, 0)
	} else {
		var err error
		q.FromArg, q.ToArg = v.Get("from"), v.Get("to")
		if q.From, err = parseDate(q.FromArg, false); err != nil {
			return nil, fmt.Errorf("from: %w", err)
		}
		if q.Until, err = parseDate(q.ToArg, true); err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
		// Milliseconds (Grafana's) show as the days they fall on, which
		// the date fields can hold.
		if isMillis(q.FromArg) {
			q.FromArg = q.From.Format(time.DateOnly)
		}
		if isMillis(q.ToArg) {
			q.ToArg = q.Until.Add(-time.Millisecond).Format(time.DateOnly)
		}
	}
	q.DMARC = v.Get("dmarc")
	if !slices.Contains([]string{"", archive.DMARCAllPass, archive.DMARCAllFail, archive.DMARCMixed}, q.DMARC) {
		return nil, fmt.Errorf("dmarc %q: want pass, fail or mixed", q.DMARC)
	}
	q.Status = v.Get("status")
	if !slices.Contains([]string{"", archive.StatusPassed, archive.StatusFailed, archive.StatusOther}, q.Status) {
		return nil, fmt.Errorf("status %q: want passed, failed or other", q.Status)
	}
	q.Class, q.IP = v.Get("class"), v.Get("ip")
	// The overflow bucket of the labels ("other") is many sources: it
	// selects none of them in particular.
	if v.Has("name") && v.Get("name") != "other" {
		name := v.Get("name")
		q.Name = &name
	}
	if a := v.Get("asn"); a != "" && a != "other" {
		var n uint64
		switch a {
		case "unknown", "invalid": // the labels of an address no database knows, or none
		default:
			var err error
			if n, err = strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(a), "AS"), 10, 32); err != nil {
				return nil, fmt.Errorf("asn %q: want a number such as AS15169", a)
			}
		}
		asn := uint32(n)
		q.ASN = &asn
	}
	if s := v.Get("sort"); s != "" {
		if _, ok := archive.ReportSorts[s]; !ok {
			return nil, fmt.Errorf("sort %q: not a column", s)
		}
		q.Sort = s
		q.Desc = v.Get("order") != "asc"
	}
	if p := v.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("page %q: want a number from 1", p)
		}
		q.Page = n
	}
	if p := v.Get("per_page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxPerPage {
			return nil, fmt.Errorf("per_page %q: want 1 to %d", p, maxPerPage)
		}
		q.PerPage = n
	}
	return q, nil
}

// parseDate reads YYYY-MM-DD (the end of that day when end is set) or
// Unix milliseconds.
func parseDate(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if isMillis(s) {
		ms, _ := strconv.ParseInt(s, 10, 64)
		return time.UnixMilli(ms).UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD or Unix milliseconds", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// isMillis tells Unix milliseconds from a date.
func isMillis(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil && len(s) > 8
}

// values writes the query back as URL values: the filter always, the
// order and page when set.
func (q *Query) values(withPage bool) url.Values {
	v := url.Values{}
	for _, d := range q.Domains {
		v.Add("domain", d)
	}
	for _, r := range q.Reporters {
		v.Add("reporter", r)
	}
	if q.Month != "" {
		v.Set("month", q.Month)
	}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("from", q.FromArg)
	set("to", q.ToArg)
	set("dmarc", q.DMARC)
	set("status", q.Status)
	set("class", q.Class)
	set("ip", q.IP)
	if q.Name != nil {
		v.Set("name", *q.Name)
	}
	if q.ASN != nil {
		v.Set("asn", strconv.FormatUint(uint64(*q.ASN), 10))
	}
	if q.Sort != "" {
		v.Set("sort", q.Sort)
		if !q.Desc {
			v.Set("order", "asc")
		}
	}
	if withPage {
		if q.Page > 1 {
			v.Set("page", strconv.Itoa(q.Page))
		}
		if q.PerPage != defaultPerPage {
			v.Set("per_page", strconv.Itoa(q.PerPage))
		}
	}
	return v
}

func (q *Query) Offset() int { return (q.Page - 1) * q.PerPage }
