package explorer

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// TestHostileReport: anyone can mail the rua address, so every value a
// report carries is shown as text, never as markup, on every page.
func TestHostileReport(t *testing.T) {
	arc, err := archive.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer arc.Close()
	const evil = `<script>alert("x")</script>`
	begin := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	rec := &report.Record{SourceIP: netip.MustParseAddr("192.0.2.1"), Count: 1, Disposition: "none", DKIM: "fail", SPF: "fail",
		HeaderFrom:  "example.com" + evil,
		Reasons:     []report.Reason{{Type: "local_policy", Comment: evil}},
		DKIMResults: []report.DKIMAuth{{Domain: evil, Selector: evil, Result: "pass", HumanResult: evil}},
		SPFResults:  []report.SPFAuth{{Domain: evil, Scope: "mfrom", Result: "pass"}}}
	err = arc.Apply(&archive.Batch{Aggregates: []*archive.Aggregate{{
		Identity: "evil", Domain: "example.com", Reporter: "evil.example",
		Header: &report.Aggregate{
			Metadata: report.Metadata{OrgName: evil, Email: evil, ReportID: evil, Begin: begin, End: begin.Add(24 * time.Hour), Errors: []string{evil}},
			Policy:   report.PolicyPublished{Domain: "example.com", P: report.Policy(evil)},
		},
		Records:     []archive.Record{{Record: rec, DMARC: "fail", Source: archive.SourceIdentity{Name: evil, Org: evil, Class: "unknown"}}},
		RecordCount: 1, Messages: 1, FailedMessages: 1, Source: evil, Input: evil, Received: begin,
		Raw: nil,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(arc, nil, "", "/metrics", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := e.Handler()
	for _, path := range []string{"/reports", "/reports/1", "/sources", "/sources?class=unknown", "/reports?name=" + evil} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", strings.ReplaceAll(path, " ", "%20"), nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", path, rec.Code, body)
			continue
		}
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s shows a report's markup as markup", path)
		}
		if path != "/reports?name="+evil && !strings.Contains(body, "&lt;script&gt;") {
			t.Errorf("%s does not show the hostile value as text", path)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
	}
}
