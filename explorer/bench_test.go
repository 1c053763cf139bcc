package explorer

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// The server time of the explorer's pages on a large archive: the list
// with 100,000 reports (goal: under 300 ms), and a report with 10,000
// records (goal: under 500 ms).
//
//	go test ./explorer -run '^$' -bench . -benchtime 10x
//
// Building the archive takes a while; DMARC_BENCH_DIR keeps it between
// runs.

const (
	benchReports       = 100_000
	benchRecords       = 5      // records of each report
	benchBigRecords    = 10_000 // records of the one big report
	benchDomains       = 20
	benchReporters     = 50
	benchReportsPerTx  = 2_000
	benchArchiveMarker = "bench-explorer-v1"
)

// benchArchive returns an archive with benchReports reports of
// benchRecords records, a fifth of them with a failed record, and one
// report of benchBigRecords records, whose id it returns.
func benchArchive(b *testing.B) (*archive.Archive, int64) {
	dir := os.Getenv("DMARC_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		dir = filepath.Join(dir, "explorer")
	}
	arc, err := archive.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { arc.Close() })
	if v, _ := arc.Meta(benchArchiveMarker); v != "" {
		var big int64
		fmt.Sscan(v, &big)
		return arc, big
	}
	start := time.Now()
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	record := func(i, n int) archive.Record {
		rec := &report.Record{
			SourceIP:    netip.AddrFrom4([4]byte{192, 0, byte(n >> 8), byte(n)}),
			Count:       uint64(1 + n%7),
			Disposition: "none", DKIM: "pass", SPF: "pass",
			HeaderFrom:  fmt.Sprintf("d%d.example", i%benchDomains),
			DKIMResults: []report.DKIMAuth{{Domain: fmt.Sprintf("d%d.example", i%benchDomains), Selector: "s1", Result: "pass"}},
			SPFResults:  []report.SPFAuth{{Domain: fmt.Sprintf("d%d.example", i%benchDomains), Scope: "mfrom", Result: "pass"}},
		}
		dmarc, class := "pass", "authorized"
		if i%5 == 0 && n == 0 {
			rec.DKIM, rec.SPF, rec.Disposition = "fail", "fail", "reject"
			rec.DKIMResults = nil
			rec.SPFResults[0].Result = "fail"
			dmarc, class = "fail", "unknown"
		}
		return archive.Record{Record: rec, DMARC: dmarc, Source: archive.SourceIdentity{ASN: 64500 + uint32(n%20), Org: "Example Net",
			Country: "NL", Name: fmt.Sprintf("mx%d.example.net", n%20), Class: class}}
	}
	aggregate := func(i, records int) *archive.Aggregate {
		begin := day.AddDate(0, 0, i/(benchReports/365+1))
		a := &archive.Aggregate{
			Identity: fmt.Sprintf("bench-%d", i),
			Domain:   fmt.Sprintf("d%d.example", i%benchDomains),
			Reporter: fmt.Sprintf("reporter%d.example", i%benchReporters),
			Header: &report.Aggregate{
				Metadata: report.Metadata{OrgName: fmt.Sprintf("Reporter %d", i%benchReporters), ReportID: fmt.Sprint(i), Begin: begin, End: begin.Add(24*time.Hour - time.Second)},
				Policy:   report.PolicyPublished{Domain: fmt.Sprintf("d%d.example", i%benchDomains), P: "reject"},
			},
			RecordCount: records, Source: "bench", Input: fmt.Sprintf("/bench/%d.xml", i), Received: begin.Add(30 * time.Hour),
		}
		for n := range records {
			r := record(i, n)
			a.Records = append(a.Records, r)
			a.Messages += r.Count
			if r.DMARC != "pass" {
				a.FailedMessages += r.Count
			}
		}
		return a
	}
	for first := 0; first < benchReports; first += benchReportsPerTx {
		batch := &archive.Batch{}
		for i := first; i < first+benchReportsPerTx && i < benchReports; i++ {
			batch.Aggregates = append(batch.Aggregates, aggregate(i, benchRecords))
		}
		if err := arc.Apply(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := arc.Apply(&archive.Batch{Aggregates: []*archive.Aggregate{aggregate(benchReports, benchBigRecords)}}); err != nil {
		b.Fatal(err)
	}
	rows, _, err := arc.Reports(b.Context(), archive.ReportFilter{}, "records", true, 0, 1)
	if err != nil || len(rows) != 1 {
		b.Fatal(err)
	}
	if err := arc.SetMeta(benchArchiveMarker, fmt.Sprint(rows[0].ID)); err != nil {
		b.Fatal(err)
	}
	b.Logf("built an archive of %d reports in %v", benchReports+1, time.Since(start).Round(time.Second))
	return arc, rows[0].ID
}

func BenchmarkPages(b *testing.B) {
	arc, big := benchArchive(b)
	e, err := New(arc, nil, "", "/metrics", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := e.Handler()
	for _, c := range []struct{ name, path string }{
		{"list", "/reports"},
		{"list-failed", "/reports?status=failed"},
		{"list-by-messages-page-100", "/reports?sort=messages&page=100"},
		{"list-domain-month", "/reports?domain=d3.example&month=2025-06"},
		{"list-class", "/reports?class=unknown"},
		{"report-10k-records", fmt.Sprintf("/reports/%d", big)},
		{"api-report-10k-records", fmt.Sprintf("/api/v1/reports/%d", big)},
		{"sources-month", "/sources?month=2025-06"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				w := &discard{header: http.Header{}, code: http.StatusOK}
				h.ServeHTTP(w, httptest.NewRequest("GET", c.path, nil))
				if w.code != http.StatusOK || w.n == 0 {
					b.Fatalf("%s: %d, %d bytes", c.path, w.code, w.n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
		})
	}
}

// discard is a ResponseWriter that counts the body, as a network
// connection takes it: no buffer grows with the page.
type discard struct {
	header http.Header
	code   int
	n      int
}

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) WriteHeader(code int)        { d.code = code }
func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }
