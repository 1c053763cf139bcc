package source

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// BenchmarkIMAPDrain measures draining a folder of 2000 report mails
// (made from a real Google report with distinct ids) into the archive
// folder: time, and the peak Go heap while it runs.
//
//	go test ./source -run '^$' -bench IMAPDrain -benchtime 1x
func BenchmarkIMAPDrain(b *testing.B) {
	const n = 2000
	for range b.N {
		b.StopTimer()
		mb := startMailbox(b, testenv.DovecotOptions{})
		for i := range n {
			mb.append("INBOX", reportMail(b, fmt.Sprintf("bench-%d", i)))
		}
		cfg := mb.source("tls")
		cfg.ArchiveFolder = "Archive"
		runtime.GC()
		var peak atomic.Uint64
		stopSampling := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stopSampling:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		b.StartTimer()
		start := time.Now()
		r := runIMAP(b, cfg, nil)
		for r.value(r.m.imapMoved.WithLabelValues("mbox", "archive")) < n {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		close(stopSampling)
		<-sampled
		r.stop()
		b.ReportMetric(float64(n)/elapsed.Seconds(), "mails/s")
		b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
		b.StartTimer()
	}
}
