package explorer

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// page is what every page template gets: its title, the navigation entry
// it is under, and its own data.
type page struct {
	Title string
	Nav   string
	Data  any
}

// render executes a page template into a buffer first, so that an error
// sends a clean 500 rather than half a page.
func (e *Explorer) render(w http.ResponseWriter, r *http.Request, name string, p page) {
	var buf bytes.Buffer
	if err := e.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		e.fail(w, r, err, false)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Only the embedded assets run: no inline script or style, no frames.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.Write(buf.Bytes())
}

// reportsView is the report list with its filter bar.
type reportsView struct {
	Q                  *Query
	Rows               []archive.ReportRow
	Total, Pages       int
	Domains, Reporters []string
	Classes            []string
	e                  *Explorer
}

// SortLink is the list ordered by column: descending first, ascending
// when it is already so ordered.
func (v *reportsView) SortLink(column string) string {
	q := *v.Q
	q.Page = 1
	q.Desc = !(q.Sort == column && q.Desc)
	q.Sort = column
	return v.e.link("/reports", q.values(true))
}

// SortMark is the arrow of the column the list is ordered by.
func (v *reportsView) SortMark(column string) string {
	sort := v.Q.Sort
	if sort == "" {
		sort = "begin"
	}
	switch {
	case sort != column:
		return ""
	case v.Q.Desc:
		return " ▼"
	}
	return " ▲"
}

// PageLink is the list at page n, "" outside the pages.
func (v *reportsView) PageLink(n int) string {
	if n < 1 || n > v.Pages {
		return ""
	}
	q := *v.Q
	q.Page = n
	return v.e.link("/reports", q.values(true))
}

// Selected tells whether a domain or reporter is in the filter.
func (v *reportsView) Selected(list []string, value string) bool { return slices.Contains(list, value) }

// Link is the report list with this filter, for the "share" link.
func (v *reportsView) Link() string { return v.e.link("/reports", v.Q.values(true)) }

func pages(total, per int) int {
	if total == 0 {
		return 1
	}
	return (total + per - 1) / per
}

func (e *Explorer) reportsPage(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	v := &reportsView{Q: q, e: e, Classes: classes}
	var err error
	if v.Rows, v.Total, err = e.arc.Reports(r.Context(), q.ReportFilter, q.Sort, q.Desc, q.Offset(), q.PerPage); err != nil {
		e.fail(w, r, err, false)
		return
	}
	v.Pages = pages(v.Total, q.PerPage)
	if v.Domains, err = e.arc.Distinct(r.Context(), "domain"); err == nil {
		v.Reporters, err = e.arc.Distinct(r.Context(), "reporter")
	}
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	e.render(w, r, "reports", page{Title: "Reports", Nav: "reports", Data: v})
}

// classes are the source classes, in the order the pages list them.
var classes = []string{"threat", "unknown", "misconfigured", "mailing_list", "forwarded", "authorized"}

// reportView is one aggregate report with what DNS publishes now.
type reportView struct {
	R         *archive.ReportDetail
	Records   []recordView
	Policy    []policyRow
	DNSText   string
	DNSSeen   bool
	Failed    int
	ListLink  string
	HasDiffer bool
}

// recordView is a record and its explanation. The record is a named
// field, not embedded: text/template finds the fields of a struct without
// embedded ones much faster, which counts for reports of 10,000 records.
type recordView struct {
	R   *archive.RecordRow
	Why string
}

// policyRow is one tag of the policy: as the reporter saw it, as DNS
// has it now, and whether they differ.
type policyRow struct {
	Tag, Reported, Now string
	Differ             bool
}

func (e *Explorer) reportPage(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.Report)
	if !ok {
		return
	}
	v := &reportView{R: d, ListLink: e.link("/reports", url.Values{"domain": {d.Domain}})}
	for i := range d.Rows {
		rec := &d.Rows[i]
		v.Records = append(v.Records, recordView{R: rec, Why: explain(rec, d.Published.ADKIM, d.Published.ASPF)})
		if rec.Status == archive.RecordFailed {
			v.Failed++
		}
	}
	v.Policy, v.DNSText, v.DNSSeen = e.comparePolicy(d)
	for _, p := range v.Policy {
		v.HasDiffer = v.HasDiffer || p.Differ
	}
	e.render(w, r, "report", page{Title: "Report " + d.ReportID + " from " + d.OrgName, Nav: "reports", Data: v})
}

// comparePolicy sets the policy the reporter saw beside the DMARC record
// published now, tag by tag, with the defaults of RFC 7489 filled in on
// both sides so that an omitted default is not a difference.
func (e *Explorer) comparePolicy(d *archive.ReportDetail) ([]policyRow, string, bool) {
	p := d.Published
	pct := ""
	if p.Pct != nil {
		pct = strconv.Itoa(*p.Pct)
	}
	reported := [][2]string{{"p", p.P}, {"sp", p.SP}, {"np", p.NP}, {"adkim", p.ADKIM}, {"aspf", p.ASPF}, {"pct", pct},
		{"fo", p.FO}, {"t", p.Testing}}
	var now map[string]string
	var text string
	var seen bool
	if e.dns != nil {
		for _, domain := range []string{p.Domain, d.Domain} {
			if got, ok := e.dns.DMARC(domain); ok {
				seen, text = true, got.Text
				if rec := got.Record; rec != nil {
					testing := "n"
					if rec.Testing {
						testing = "y"
					}
					now = map[string]string{"p": rec.P, "sp": rec.SP, "np": rec.NP, "adkim": rec.ADKIM, "aspf": rec.ASPF,
						"pct": rec.Pct, "fo": rec.FO, "t": testing}
				}
				break
			}
		}
	}
	defaults := map[string]string{"adkim": "r", "aspf": "r", "pct": "100", "fo": "0", "t": "n"}
	var rows []policyRow
	for _, kv := range reported {
		row := policyRow{Tag: kv[0], Reported: kv[1]}
		if now != nil {
			row.Now = now[kv[0]]
			a, b := row.Reported, row.Now
			if a == "" {
				a = defaults[kv[0]]
			}
			if b == "" {
				b = defaults[kv[0]]
			}
			// sp defaults to p, np to sp (RFC 9990).
			switch kv[0] {
			case "sp":
				a, b = or(a, p.P), or(b, now["p"])
			case "np":
				a, b = or(a, p.SP, p.P), or(b, now["sp"], now["p"])
			}
			row.Differ = a != b && !(kv[0] == "t" && row.Reported == "") // RFC 7489 reports carry no t
			if row.Now == "" && b != "" {
				row.Now = b + " (default)"
			}
		}
		rows = append(rows, row)
	}
	return rows, text, seen
}

// or is the first value that is not empty.
func or(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// sourcesView is the senders of a period, grouped, and the addresses of
// the group chosen.
type sourcesView struct {
	Q         *Query
	Groups    []archive.SourceGroup
	Addresses []archive.SourceAddress
	Drill     bool // a class, AS, name or address is chosen
	Domains   []string
	Classes   []string
	e         *Explorer
}

// GroupLink drills down to a group's addresses.
func (v *sourcesView) GroupLink(g archive.SourceGroup) string {
	q := *v.Q
	q.Class, q.ASN, q.Name = g.Class, &g.ASN, &g.Name
	return v.e.link("/sources", q.values(false))
}

// GroupReportsLink lists the reports that carry a group.
func (v *sourcesView) GroupReportsLink(g archive.SourceGroup) string {
	q := *v.Q
	q.Class, q.ASN, q.Name = g.Class, &g.ASN, &g.Name
	q.Sort, q.Page = "", 1
	return v.e.link("/reports", q.values(false))
}

// AddressReportsLink lists the reports that carry an address.
func (v *sourcesView) AddressReportsLink(ip string) string {
	q := *v.Q
	q.Class, q.ASN, q.Name, q.IP = "", nil, nil, ip
	q.Sort, q.Page = "", 1
	return v.e.link("/reports", q.values(false))
}

// Selected tells whether a domain is in the filter.
func (v *sourcesView) Selected(list []string, value string) bool { return slices.Contains(list, value) }

func (e *Explorer) sourcesPage(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	v := &sourcesView{Q: q, e: e, Classes: classes}
	v.Drill = q.Class != "" || q.ASN != nil || q.Name != nil || q.IP != ""
	var err error
	if v.Groups, err = e.arc.Sources(r.Context(), q.ReportFilter, 1000); err == nil && v.Drill {
		v.Addresses, err = e.arc.SourceAddresses(r.Context(), q.ReportFilter, 2000)
	}
	if err == nil {
		v.Domains, err = e.arc.Distinct(r.Context(), "domain")
	}
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	e.render(w, r, "sources", page{Title: "Sources", Nav: "sources", Data: v})
}

// listView is a paged list of TLS or failure reports.
type listView[T any] struct {
	Q            *Query
	Rows         []T
	Total, Pages int
	Prev, Next   string
}

func newListView[T any](e *Explorer, path string, q *Query, rows []T, total int) *listView[T] {
	v := &listView[T]{Q: q, Rows: rows, Total: total, Pages: pages(total, q.PerPage)}
	if q.Page > 1 {
		p := *q
		p.Page--
		v.Prev = e.link(path, p.values(true))
	}
	if q.Page < v.Pages {
		p := *q
		p.Page++
		v.Next = e.link(path, p.values(true))
	}
	return v
}

func (e *Explorer) tlsPage(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	rows, total, err := e.arc.TLSReports(r.Context(), q.ReportFilter, q.Offset(), q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	e.render(w, r, "tls", page{Title: "SMTP TLS reports", Nav: "tls", Data: newListView(e, "/tls", q, rows, total)})
}

func (e *Explorer) tlsReportPage(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.TLSReport)
	if !ok {
		return
	}
	e.render(w, r, "tlsreport", page{Title: "SMTP TLS report " + d.ReportID, Nav: "tls", Data: d})
}

func (e *Explorer) failuresPage(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	rows, total, err := e.arc.FailureReports(r.Context(), q.ReportFilter, q.Offset(), q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	e.render(w, r, "failures", page{Title: "Failure reports", Nav: "failures", Data: newListView(e, "/failures", q, rows, total)})
}

func (e *Explorer) failurePage(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.FailureReport)
	if !ok {
		return
	}
	e.render(w, r, "failure", page{Title: "Failure report", Nav: "failures", Data: d})
}
