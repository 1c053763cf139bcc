package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestHandlerNegotiation: /metrics answers as the scraper asks: the text
// format by default, OpenMetrics when Prometheus prefers it, protobuf for
// native histograms; gzip-compressed when accepted; the same series in
// every form.
func TestHandlerNegotiation(t *testing.T) {
	s := testStore(t, t.TempDir(), "example.com")
	if err := s.IngestFile("src", "a", "1", bytes.NewReader(genReport("a@google.com", "example.com", "1", testNow, 3, 4))); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector())
	h := Handler(reg, s, slog.New(slog.DiscardHandler))
	get := func(accept, encoding string) (body, contentType, contentEncoding string) {
		t.Helper()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", accept)
		req.Header.Set("Accept-Encoding", encoding)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var r io.Reader = rec.Body
		if rec.Header().Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = gz
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(data), rec.Header().Get("Content-Type"), rec.Header().Get("Content-Encoding")
	}

	plain, ct, ce := get("", "")
	if !strings.HasPrefix(ct, "text/plain; version=0.0.4") || ce != "" {
		t.Errorf("no Accept: %s, encoding %q", ct, ce)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	want, err := parser.TextToMetricFamilies(strings.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	if mf := want["dmarc_messages_total"]; mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetCounter().GetValue() != 7 {
		t.Fatalf("dmarc_messages_total: %v", mf)
	}

	// What Prometheus sends: OpenMetrics first, gzip.
	const prometheusAccept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	om, ct, ce := get(prometheusAccept, "gzip")
	if !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") || ce != "gzip" {
		t.Errorf("Prometheus' Accept: %s, encoding %q", ct, ce)
	}
	if !strings.HasSuffix(om, "# EOF\n") || strings.Count(om, "# EOF") != 1 {
		t.Errorf("OpenMetrics does not end with one # EOF:\n...%s", om[max(0, len(om)-200):])
	}
	for _, line := range []string{"# TYPE dmarc_messages counter\n", "# TYPE dmarc_report_end_timestamp_seconds gauge\n",
		`dmarc_messages_total{domain="example.com",reporter="google.com",disposition="none",dmarc="pass",dkim="pass",spf="fail"} 7` + "\n"} {
		if !strings.Contains(om, line) {
			t.Errorf("OpenMetrics lacks %q", line)
		}
	}

	// The text format, gzip-compressed, holds the same series.
	zipped, _, ce := get("text/plain", "deflate, gzip;q=0.8")
	if ce != "gzip" || storeLines(zipped) != storeLines(plain) {
		t.Errorf("gzip: encoding %q, same series %v", ce, storeLines(zipped) == storeLines(plain))
	}
	if _, _, ce := get("text/plain", "gzip;q=0"); ce != "" {
		t.Errorf("gzip;q=0 answered with %q", ce)
	}

	// Protobuf (Prometheus with native histograms) goes through the Collector.
	pb, ct, _ := get("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "")
	if !strings.Contains(ct, "application/vnd.google.protobuf") {
		t.Fatalf("protobuf asked, %s served", ct)
	}
	dec := expfmt.NewDecoder(strings.NewReader(pb), expfmt.NewFormat(expfmt.TypeProtoDelim))
	got := 0
	for {
		mf := new(dto.MetricFamily)
		if err := dec.Decode(mf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if w := want[mf.GetName()]; w == nil || len(w.GetMetric()) != len(mf.GetMetric()) {
			t.Errorf("protobuf %s: %d series, text %v", mf.GetName(), len(mf.GetMetric()), w)
		}
		got++
	}
	if got != len(want) {
		t.Errorf("protobuf: %d families, text %d", got, len(want))
	}
}

// storeLines are the lines of the Store's families, sorted (the Go
// collector's change from one scrape to the next, and series come in no
// set order).
func storeLines(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "dmarc_") || strings.Contains(line, "smtp_tls_") {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
