package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// TestSourcesEnriched: with one ASN database and a resolver, /metrics
// shows each source's AS, organisation, name and class; parse --enrich
// shows the same for each record, with the reason.
func TestSourcesEnriched(t *testing.T) {
	asn := testenv.WriteMMDB(t, "GeoLite2-ASN", testenv.CorpusNetworks, testenv.GeoLiteASN)
	names := testenv.StartDNS(t, "../../enrich/testdata/names.zone")
	file := filepath.Join(testdata, "corpus/aggregate/niciliketo__report1.xml")
	dir := t.TempDir()
	src := filepath.Join(dir, "reports")
	os.MkdirAll(src, 0o755)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "report.xml"), data, 0o644)
	old := time.Now().Add(-time.Hour) // settled
	os.Chtimes(filepath.Join(src, "report.xml"), old, old)
	e := startExporter(t, "--source.dir="+src, "--storage.path="+filepath.Join(dir, "state"), "--metrics.new-series-delay=0s",
		"--senders.asn-database="+asn, "--dns.resolver="+names.Addr)
	e.waitScans(1, src)
	// 209.85.220.69 is mail-sor-f69.google.com in AS15169, and passes.
	if n := e.metric("dmarc_source_messages_total", "domain", "marketdojo.com", "source_asn", "15169", "source_org", "GOOGLE",
		"source_name", "google", "source_class", "authorized"); n == 0 {
		t.Errorf("no authorized Google messages:\n%s", exposition(e.families(), false))
	}
	// 136.143.188.8 is sender4-op-o8.zoho.com, a known sender, failing.
	if n := e.metric("dmarc_source_messages_total", "source_asn", "2639", "source_name", "zoho", "source_class", "misconfigured"); n == 0 {
		t.Errorf("no misconfigured Zoho messages")
	}
	// Without a database, the AS is unknown and nothing breaks.
	if n := e.metric("dmarc_source_messages_total", "source_asn", "unknown"); n == 0 {
		t.Errorf("no source outside the database's networks")
	}
	if n := e.metric("dmarc_enrichment_database_build_timestamp_seconds", "database", "asn"); n != 1700000000 {
		t.Errorf("database build time %v", n)
	}

	var out, errOut bytes.Buffer
	if status := run([]string{"--dns.resolver=" + names.Addr, "parse", "--enrich", "--asn-database=" + asn, file}, &out, &errOut); status != 0 {
		t.Fatalf("parse --enrich: %d %s", status, errOut.String())
	}
	var rep struct {
		Records []struct {
			SourceIP string `json:"source_ip"`
			Source   struct {
				ASN    uint   `json:"asn"`
				Host   string `json:"host"`
				Name   string `json:"name"`
				Class  string `json:"class"`
				Reason string `json:"reason"`
			} `json:"source"`
		} `json:"records"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rep.Records {
		if r.Source.Class == "" || r.Source.Reason == "" {
			t.Errorf("record %s without a class: %+v", r.SourceIP, r.Source)
		}
		if r.SourceIP == "136.143.188.8" {
			found = true
			if r.Source.ASN != 2639 || r.Source.Host != "zoho.com" || r.Source.Name != "zoho" || r.Source.Class != "misconfigured" {
				t.Errorf("136.143.188.8: %+v", r.Source)
			}
		}
	}
	if !found {
		t.Error("no record from 136.143.188.8")
	}
}
