package collector

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Goals, measured here rather than in timed tests:
//
//	go test ./collector -run '^$' -bench . -benchmem
//
// a scrape of 1M series in under a second, under 600 bytes of heap per series.

// BenchmarkIngestCorpus ingests every corpus file into a fresh store and
// commits, as the directory source does.
func BenchmarkIngestCorpus(b *testing.B) {
	var files [][]byte
	for _, dir := range []string{"../testdata/corpus/aggregate", "../testdata/corpus/email"} {
		paths, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, data)
		}
	}
	reports := 0
	for b.Loop() {
		s := testStore(b, b.TempDir())
		for i, data := range files {
			_ = s.IngestFile("bench", fmt.Sprint(i), "m", bytes.NewReader(data))
		}
		if err := s.Commit(); err != nil {
			b.Fatal(err)
		}
		reports = 0
		for _, f := range []*family{reportsFamily, duplicatesFamily} {
			for _, v := range s.live[f] {
				reports += int(v)
			}
		}
	}
	b.ReportMetric(float64(reports*b.N)/b.Elapsed().Seconds(), "reports/s")
}

// storeWithSeries returns a store holding n message series, spread over 100
// domains, and the heap the series take.
func storeWithSeries(b *testing.B, n int) (*Store, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := testStore(b, b.TempDir())
	dispositions := []string{"none", "quarantine", "reject", "pass", "other"}
	results := []string{"pass", "fail", "other"}
	for i := range n {
		combo := i % 90
		s.live.add(messagesFamily, uint64(i), fmt.Sprintf("domain%d.example", (i/90)%100), fmt.Sprintf("reporter%d.example", i/9000),
			dispositions[combo%5], []string{"pass", "fail"}[combo/5%2], results[combo/10%3], results[combo/30%3])
	}
	if len(s.live[messagesFamily]) != n {
		b.Fatalf("built %d series, want %d", len(s.live[messagesFamily]), n)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return s, after.HeapAlloc - before.HeapAlloc
}

// BenchmarkScrape serves /metrics from a store of 10k, 100k and 1M series,
// in plain text and as Prometheus asks (OpenMetrics, gzip).
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, prom := range []bool{false, true} {
			name := fmt.Sprintf("%dk", n/1000)
			if prom {
				name += "-openmetrics-gzip"
			}
			b.Run(name, func(b *testing.B) {
				s, heap := storeWithSeries(b, n)
				h := Handler(prometheus.NewRegistry(), s, slog.New(slog.DiscardHandler))
				sent := 0
				for b.Loop() {
					rec := httptest.NewRecorder()
					rec.Body = nil
					w := &discardWriter{ResponseRecorder: rec}
					req := httptest.NewRequest("GET", "/metrics", nil)
					if prom {
						req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3")
						req.Header.Set("Accept-Encoding", "gzip")
					}
					h.ServeHTTP(w, req)
					if rec.Code != 200 {
						b.Fatalf("status %d", rec.Code)
					}
					sent = w.n
				}
				b.ReportMetric(float64(heap)/float64(n), "heap-bytes/series")
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/scrape")
				b.ReportMetric(float64(sent), "bytes-sent")
			})
		}
	}
}

// discardWriter is a ResponseRecorder that counts the body and drops it.
type discardWriter struct {
	*httptest.ResponseRecorder
	n int
}

func (d *discardWriter) Write(p []byte) (int, error) {
	d.n += len(p)
	return len(p), nil
}
