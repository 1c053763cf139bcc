// Package explorer serves the report archive to people and programs: web
// pages to find and read reports (the list with its filters, a report
// with every record, the sources that send as a domain, SMTP TLS and
// failure reports) and the same as JSON under /api/v1/.
//
// It only reads the archive: what a page shows was stored at ingest
// (source names, AS, class), so viewing looks nothing up. The pages are
// html/template with embedded CSS and a little plain JavaScript; they
// work without internet and behind a reverse proxy under a path prefix.
package explorer

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// DNS gives the DMARC record a domain publishes now, for the report page
// to set beside the policy the reporter saw.
type DNS interface {
	DMARC(domain string) (dnsmon.Published, bool)
}

// Explorer serves the pages and the API.
type Explorer struct {
	arc    *archive.Archive
	dns    DNS
	prefix string // the external URL's path, without a trailing slash
	// metrics is the path of /metrics under the prefix, for the menu.
	metrics string
	pages   map[string]*template.Template
	log     *slog.Logger
}

// New returns an explorer of arc. prefix is the path under which a
// browser reaches the exporter ("" at the root, "/dmarc" behind a proxy),
// metrics the path of the metrics under it; dns may be nil.
func New(arc *archive.Archive, dns DNS, prefix, metrics string, log *slog.Logger) (*Explorer, error) {
	e := &Explorer{arc: arc, dns: dns, prefix: strings.TrimSuffix(prefix, "/"), metrics: metrics, log: log,
		pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"link":     e.link,
		"date":     func(t time.Time) string { return t.UTC().Format("2006-01-02") },
		"datetime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
		"period":   period,
		"known":    known,
		"add":      func(a, b int) int { return a + b },
		"prefix":   func() string { return e.prefix },
		"metrics":  func() string { return e.prefix + e.metrics },
		"asn": func(n uint32) string {
			if n == 0 {
				return ""
			}
			return "AS" + strconv.FormatUint(uint64(n), 10)
		},
		"pct": func(part, whole uint64) string {
			if whole == 0 {
				return "–"
			}
			return strconv.FormatFloat(100*float64(part)/float64(whole), 'f', 1, 64) + "%"
		},
	}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("explorer: template %s: %w", page, err)
		}
		e.pages[page] = t
	}
	return e, nil
}

// Handler serves the pages under /reports, /sources, /tls and /failures,
// their assets under /static/, and the API under /api/v1/.
func (e *Explorer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /reports", e.reportsPage)
	mux.HandleFunc("GET /reports/{id}", e.reportPage)
	mux.HandleFunc("GET /sources", e.sourcesPage)
	mux.HandleFunc("GET /tls", e.tlsPage)
	mux.HandleFunc("GET /tls/{id}", e.tlsReportPage)
	mux.HandleFunc("GET /failures", e.failuresPage)
	mux.HandleFunc("GET /failures/{id}", e.failurePage)
	static, _ := fs.Sub(staticFiles, "static") // the directory is embedded
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheAssets(http.FileServerFS(static))))
	// Browsers ask for /favicon.ico on every page, the landing page's too.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "public, max-age=86400")
		http.ServeFileFS(w, r, static, "favicon.svg")
	})

	mux.HandleFunc("GET /api/v1/reports", e.apiReports)
	mux.HandleFunc("GET /api/v1/reports/{id}", e.apiReport)
	mux.HandleFunc("GET /api/v1/reports/{id}/xml", e.apiReportXML)
	mux.HandleFunc("GET /api/v1/sources", e.apiSources)
	mux.HandleFunc("GET /api/v1/sources/addresses", e.apiSourceAddresses)
	mux.HandleFunc("GET /api/v1/tls", e.apiTLSReports)
	mux.HandleFunc("GET /api/v1/tls/{id}", e.apiTLSReport)
	mux.HandleFunc("GET /api/v1/tls/{id}/json", e.apiTLSRaw)
	mux.HandleFunc("GET /api/v1/failures", e.apiFailures)
	mux.HandleFunc("GET /api/v1/failures/{id}", e.apiFailure)
	mux.HandleFunc("GET /api/v1/filters", e.apiFilters)
	return mux
}

// Paths are the pages a landing page links to.
var Paths = []struct{ Path, Text, Description string }{
	{"/reports", "Reports", "the aggregate reports in the archive: filter, sort, open one"},
	{"/sources", "Sources", "who sends as your domains, by class, AS and name"},
	{"/tls", "SMTP TLS reports", "TLS reports (RFC 8460) and their failures"},
	{"/failures", "Failure reports", "DMARC failure reports, redacted"},
	{"/api/v1/reports", "API", "the same as JSON (see the README)"},
}

// known hides the "unknown" that enrichment stores when a database or a
// reverse name had no answer.
func known(s string) string {
	if s == "unknown" {
		return ""
	}
	return s
}

// period shows a report's date range compactly: one day when it covers
// one UTC day (00:00 to 23:59:59 or to the next midnight), else both ends.
func period(begin, end time.Time) string {
	begin, end = begin.UTC(), end.UTC()
	last := end
	if end.Hour() == 0 && end.Minute() == 0 && end.Second() == 0 && end.After(begin) {
		last = end.Add(-time.Second)
	}
	if begin.Format("2006-01-02") == last.Format("2006-01-02") {
		return begin.Format("2006-01-02")
	}
	return begin.Format("2006-01-02") + " – " + last.Format("2006-01-02")
}

// cacheAssets lets browsers keep the embedded assets for an hour.
func cacheAssets(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// link is the URL of a page under the prefix, with a query.
func (e *Explorer) link(path string, v url.Values) string {
	if len(v) == 0 {
		return e.prefix + path
	}
	return e.prefix + path + "?" + v.Encode()
}

// pathID reads the {id} of a request.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("%q is not a report number", r.PathValue("id"))
	}
	return id, nil
}

// one reads the {id} of a request and gets what it names (a report, a
// TLS report, a failure report), answering an error itself; ok is false
// then.
func one[T any](e *Explorer, w http.ResponseWriter, r *http.Request, get func(context.Context, int64) (T, error)) (v T, ok bool) {
	id, err := pathID(r)
	if err != nil {
		e.fail(w, r, err, true)
		return v, false
	}
	if v, err = get(r.Context(), id); err != nil {
		e.fail(w, r, err, false)
		return v, false
	}
	return v, true
}

// query reads the filter, order and page of a list request, answering
// 400 itself when they do not read; ok is false then.
func (e *Explorer) query(w http.ResponseWriter, r *http.Request) (q *Query, ok bool) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		e.fail(w, r, err, true)
		return nil, false
	}
	return q, true
}

// fail answers an error: 400 for a bad request, 404 for a report not in
// the archive, 500 (logged, not shown) otherwise.
func (e *Explorer) fail(w http.ResponseWriter, r *http.Request, err error, bad bool) {
	switch {
	case errors.Is(err, archive.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case bad:
		http.Error(w, err.Error(), http.StatusBadRequest)
	case r.Context().Err() != nil:
		// The client went away.
	default:
		e.log.Error("explorer", "path", r.URL.Path, "err", err)
		http.Error(w, "reading the archive failed; the log says why", http.StatusInternalServerError)
	}
}
