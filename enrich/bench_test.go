package enrich

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// BenchmarkEnrich identifies and classifies every record of the corpus
// (about 2,600 records from 2,400 addresses), one report's addresses at
// a time as ingest does, with an ASN and a country database and names
// from a DNS server on loopback: with a warm name cache, and with a cold
// one (every address looked up: the ration is lifted here).
//
//	go test ./enrich -run '^$' -bench Enrich
func BenchmarkEnrich(b *testing.B) {
	records := corpusRecords(b)
	srv := testenv.StartDNS(b, "testdata/names.zone")
	senders, err := LoadSenders("")
	if err != nil {
		b.Fatal(err)
	}
	asn := openDB(b, writeDB(b, "GeoLite2-ASN", testenv.GeoLiteASN))
	country := openDB(b, writeDB(b, "GeoLite2-Country", testenv.GeoLiteCountry))
	byFile := map[string][]corpusRecord{}
	for _, r := range records {
		byFile[r.file] = append(byFile[r.file], r)
	}
	newEnricher := func() *Enricher {
		m := NewMetrics(nil)
		names := NewNames(&dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}, time.Second, 8, 0, m)
		names.limiter, names.maxLookups = rate.NewLimiter(rate.Inf, 0), 1<<30 // measure lookups, not the ration
		return New(Options{ASN: asn, Country: country, Names: names, Senders: senders, Metrics: m})
	}
	run := func(e *Enricher) {
		for _, recs := range byFile {
			ips := make([]netip.Addr, 0, len(recs))
			for _, r := range recs {
				ips = append(ips, r.rec.SourceIP)
			}
			ids := e.Identify(context.Background(), recs[0].domain, ips)
			for _, r := range recs {
				if c, _ := Classify(FactsOf(&r.rec), ids[r.rec.SourceIP]); c == "" {
					b.Fatal("no class")
				}
			}
		}
	}
	b.Run("warm", func(b *testing.B) {
		e := newEnricher()
		run(e)
		b.ResetTimer()
		for range b.N {
			run(e)
		}
		b.ReportMetric(float64(len(records)*b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			run(newEnricher())
		}
		b.ReportMetric(float64(len(records)*b.N)/b.Elapsed().Seconds(), "records/s")
	})
}
