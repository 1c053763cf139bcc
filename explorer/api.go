package explorer

import (
	"encoding/json"
	"net/http"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// The API answers JSON with stable field names (see the README). A list
// is {"total", "page", "per_page", and its items under a plural name};
// filters are the query parameters of the pages.

// list is a page of a list.
type list[T any] struct {
	Total   int `json:"total"`
	Page    int `json:"page"`
	PerPage int `json:"per_page"`
	Items   []T `json:"items"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (e *Explorer) apiReports(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	rows, total, err := e.arc.Reports(r.Context(), q.ReportFilter, q.Sort, q.Desc, q.Offset(), q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, list[archive.ReportRow]{Total: total, Page: q.Page, PerPage: q.PerPage, Items: rows})
}

// Record is a record with its explanation, as the API and
// `dmarc-exporter reports show` give it.
type Record struct {
	archive.RecordRow
	Explanation string `json:"explanation"`
}

// Report is a report with the explanation of each record.
type Report struct {
	*archive.ReportDetail
	Rows []Record `json:"records_detail"`
}

// Explained adds to a report the explanation of each record.
func Explained(d *archive.ReportDetail) *Report {
	out := &Report{ReportDetail: d, Rows: []Record{}}
	for i := range d.Rows {
		out.Rows = append(out.Rows, Record{RecordRow: d.Rows[i], Explanation: explain(&d.Rows[i], d.Published.ADKIM, d.Published.ASPF)})
	}
	return out
}

func (e *Explorer) apiReport(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.Report)
	if !ok {
		return
	}
	writeJSON(w, Explained(d))
}

// apiReportXML answers the report as received; ?pretty=1 indents it.
func (e *Explorer) apiReportXML(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		e.fail(w, r, err, true)
		return
	}
	raw, ok, err := e.arc.RawAggregate(r.Context(), id)
	e.writeRaw(w, r, raw, ok, err, "application/xml")
}

func (e *Explorer) apiTLSRaw(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		e.fail(w, r, err, true)
		return
	}
	raw, ok, err := e.arc.RawTLS(r.Context(), id)
	e.writeRaw(w, r, raw, ok, err, "application/json")
}

func (e *Explorer) writeRaw(w http.ResponseWriter, r *http.Request, raw []byte, ok bool, err error, contentType string) {
	switch {
	case err != nil:
		e.fail(w, r, err, false)
		return
	case !ok:
		http.Error(w, "the archive did not keep this report as received (archive.keep_raw, archive.max_raw_bytes)", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Shown as text, never rendered: a report is input from anyone.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	if r.URL.Query().Get("pretty") != "" && contentType == "application/xml" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(prettyXML(raw)))
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Write(raw)
}

func (e *Explorer) apiSources(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	groups, err := e.arc.Sources(r.Context(), q.ReportFilter, q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, map[string]any{"sources": groups})
}

func (e *Explorer) apiSourceAddresses(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	addrs, err := e.arc.SourceAddresses(r.Context(), q.ReportFilter, q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, map[string]any{"addresses": addrs})
}

func (e *Explorer) apiTLSReports(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	rows, total, err := e.arc.TLSReports(r.Context(), q.ReportFilter, q.Offset(), q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, list[archive.TLSRow]{Total: total, Page: q.Page, PerPage: q.PerPage, Items: rows})
}

func (e *Explorer) apiTLSReport(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.TLSReport)
	if !ok {
		return
	}
	writeJSON(w, d)
}

func (e *Explorer) apiFailures(w http.ResponseWriter, r *http.Request) {
	q, ok := e.query(w, r)
	if !ok {
		return
	}
	rows, total, err := e.arc.FailureReports(r.Context(), q.ReportFilter, q.Offset(), q.PerPage)
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, list[archive.FailureRow]{Total: total, Page: q.Page, PerPage: q.PerPage, Items: rows})
}

func (e *Explorer) apiFailure(w http.ResponseWriter, r *http.Request) {
	d, ok := one(e, w, r, e.arc.FailureReport)
	if !ok {
		return
	}
	writeJSON(w, d)
}

// apiFilters lists the domains and reporters the filters can choose.
func (e *Explorer) apiFilters(w http.ResponseWriter, r *http.Request) {
	domains, err := e.arc.Distinct(r.Context(), "domain")
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	reporters, err := e.arc.Distinct(r.Context(), "reporter")
	if err != nil {
		e.fail(w, r, err, false)
		return
	}
	writeJSON(w, map[string]any{"domains": domains, "reporters": reporters, "classes": classes})
}
