package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// BenchmarkStart starts the real binary on a large archive and measures
// the time to its first /metrics answer and its peak resident memory.
// The archive holds DMARC_BENCH_REPORTS reports (default 100,000) of 10
// records each, counted under DMARC_BENCH_SERIES counter series (default
// 100,000); it is built once under DMARC_BENCH_DIR (default a temporary
// directory) and reused when that is set. For the figures in the README:
//
//	DMARC_BENCH_REPORTS=1000000 DMARC_BENCH_SERIES=1000000 DMARC_BENCH_DIR=/tmp/big \
//	  go test ./cmd/dmarc-exporter -run '^$' -bench BenchmarkStart -benchtime 3x -timeout 2h
func BenchmarkStart(b *testing.B) {
	reports, series := envInt(b, "DMARC_BENCH_REPORTS", 100_000), envInt(b, "DMARC_BENCH_SERIES", 100_000)
	dir := os.Getenv("DMARC_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	state := filepath.Join(dir, fmt.Sprintf("archive-%d-%d", reports, series))
	if _, err := os.Stat(filepath.Join(state, archive.FileName)); err != nil {
		start := time.Now()
		buildArchive(b, state, reports, series)
		b.Logf("built an archive of %d reports and %d series in %v", reports, series, time.Since(start).Round(time.Second))
	}
	var size int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(state, archive.FileName+suffix)); err == nil {
			size += fi.Size()
		}
	}
	empty := b.TempDir()
	var startup, peak float64
	for b.Loop() {
		addr := testenv.FreeAddr(b)
		cmd := exec.Command(binary, "--source.dir="+empty, "--storage.path="+state, "--web.listen-address="+addr,
			"--dns.resolver=127.0.0.1:1")
		begin := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(begin) > 10*time.Minute {
				cmd.Process.Kill()
				b.Fatal("no /metrics after 10 minutes")
			}
			time.Sleep(10 * time.Millisecond)
		}
		startup = max(startup, time.Since(begin).Seconds())
		time.Sleep(time.Second) // a second scrape's worth of settling
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			resp.Body.Close()
		}
		peak = max(peak, peakRSS(b, cmd.Process.Pid))
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	b.ReportMetric(startup, "s-to-first-scrape")
	b.ReportMetric(peak/1e6, "peak-RSS-MB")
	b.ReportMetric(peak/float64(series), "peak-RSS-bytes/series")
	b.ReportMetric(float64(size)/float64(reports*10), "db-bytes/record")
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

// peakRSS is the peak resident memory of a process, in bytes (VmHWM).
func peakRSS(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// buildArchive writes an archive as years of ingest would: reports of 10
// records each, with DKIM and SPF results and source identities, their
// identities and marks, and counter series spread over 1,000 domains.
func buildArchive(b *testing.B, dir string, reports, series int) {
	arc, err := archive.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer arc.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const perBatch = 500
	for first := 0; first < reports; first += perBatch {
		batch := &archive.Batch{Totals: map[string]map[string]uint64{}}
		for i := first; i < min(first+perBatch, reports); i++ {
			domain := fmt.Sprintf("domain%d.example", i%1000)
			begin := day.Add(time.Duration(i/1000) * 24 * time.Hour)
			id := fmt.Sprintf("%032x", i)
			hdr := &report.Aggregate{Metadata: report.Metadata{OrgName: "google.com", Email: "noreply-dmarc-support@google.com",
				ReportID: strconv.Itoa(rng.IntN(1 << 62)), Begin: begin, End: begin.Add(24*time.Hour - time.Second)},
				Policy: report.PolicyPublished{Domain: domain, P: "reject", ADKIM: "r", ASPF: "r"}}
			a := &archive.Aggregate{Identity: id, Domain: domain, Reporter: "google.com", Header: hdr, RecordCount: 10,
				Source: "bench", Input: "/bench/" + id, Received: begin.Add(30 * time.Hour)}
			for n := range 10 {
				rec := &report.Record{SourceIP: netip.AddrFrom4([4]byte{203, 0, byte(n), byte(i)}), Count: uint64(1 + rng.IntN(100)),
					Disposition: "none", DKIM: "pass", SPF: "pass", HeaderFrom: domain, EnvelopeFrom: "bounce." + domain,
					DKIMResults: []report.DKIMAuth{{Domain: domain, Selector: "s1", Result: "pass"}},
					SPFResults:  []report.SPFAuth{{Domain: "bounce." + domain, Scope: "mfrom", Result: "pass"}}}
				a.Records = append(a.Records, archive.Record{Record: rec, DMARC: "pass",
					Source: archive.SourceIdentity{ASN: 15169, Org: "GOOGLE", Country: "US", Name: "google", Class: "authorized"}})
				a.Messages += rec.Count
			}
			batch.Aggregates = append(batch.Aggregates, a)
			batch.Identities = append(batch.Identities, archive.Identity{ID: id, FirstSeen: a.Received})
			batch.Inputs = append(batch.Inputs, archive.Input{Path: a.Input, Source: "bench", Mark: "1:1", Read: a.Received})
		}
		if err := arc.Apply(batch); err != nil {
			b.Fatal(err)
		}
	}
	// Counter series: dmarc_messages_total over 1,000 domains, 100
	// reporters and the label combinations.
	combos := []string{"none", "quarantine", "reject", "pass", "other"}
	results := []string{"pass", "fail", "other"}
	for first := 0; first < series; first += 50_000 {
		m := map[string]uint64{}
		for i := first; i < min(first+50_000, series); i++ {
			c := i % 90
			m[strings.Join([]string{fmt.Sprintf("domain%d.example", i/90%1000), fmt.Sprintf("reporter%d.example", i/90000),
				combos[c%5], results[c/5%2], results[c/10%3], results[c/30%3]}, archive.LabelSep)] = uint64(i)
		}
		if err := arc.Apply(&archive.Batch{Totals: map[string]map[string]uint64{"dmarc_messages_total": m}}); err != nil {
			b.Fatal(err)
		}
	}
}
