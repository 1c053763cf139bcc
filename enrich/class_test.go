package enrich

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// corpusRecord is a record of a corpus report, with where it came from.
type corpusRecord struct {
	file   string
	domain string
	rec    report.Record
}

// corpusRecords reads every aggregate record of the copied corpus.
func corpusRecords(t testing.TB) []corpusRecord {
	t.Helper()
	var out []corpusRecord
	for _, dir := range []string{"../testdata/corpus/aggregate", "../testdata/corpus/email", "../testdata/derived"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			report.Walk(strings.NewReader(string(data)), report.DefaultLimits(), func(doc report.Document) error {
				if doc.Kind != report.KindAggregate {
					return nil
				}
				dec := report.NewAggregateDecoder(doc.Body, report.DefaultLimits())
				hdr, err := dec.Header()
				if err != nil {
					return err
				}
				for rec, err := range dec.All() {
					if err != nil {
						return err
					}
					if rec.Problem == "" {
						out = append(out, corpusRecord{filepath.Base(f), hdr.Policy.Domain, *rec})
					}
				}
				return nil
			})
		}
	}
	return out
}

// testEnricher has every part: databases, names, the built-in senders,
// and trust for two domains.
func testEnricher(t testing.TB) *Enricher {
	names, srv, m := testNames(t)
	senders, err := LoadSenders("")
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{
		ASN:     openDB(t, writeDB(t, "GeoLite2-ASN", testenv.GeoLiteASN)),
		Country: openDB(t, writeDB(t, "GeoLite2-Country", testenv.GeoLiteCountry)),
		Names:   names, Senders: senders, Metrics: m,
		Resolver: &dnsclient.Resolver{Servers: []string{srv.Addr}},
		Trust: map[string]Trust{
			"example.com":    {Networks: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
			"marketdojo.com": {SPF: true, Services: []string{"zoho"}},
		},
	})
}

func classify(e *Enricher, r corpusRecord) (Class, string, Identity) {
	id := e.Identify(context.Background(), r.domain, []netip.Addr{r.rec.SourceIP})[r.rec.SourceIP]
	c, reason := Classify(FactsOf(&r.rec), id)
	return c, reason, id
}

// TestClassifyCorpus: every record of the corpus gets a class and a
// reason; one real record per rule of the README's table gets the class
// that rule gives, for the reason it states.
func TestClassifyCorpus(t *testing.T) {
	e := testEnricher(t)
	records := corpusRecords(t)
	if len(records) < 2000 {
		t.Fatalf("%d records", len(records))
	}
	counts := map[Class]int{}
	for _, r := range records {
		c, reason, _ := classify(e, r)
		if !slices.Contains(Classes, c) || reason == "" {
			t.Errorf("%s %s: class %q, reason %q", r.file, r.rec.SourceIP, c, reason)
		}
		counts[c]++
	}
	t.Logf("classes over %d records: %v", len(records), counts)

	for _, tt := range []struct {
		file, ip, reasons string // reasons: the record's override reasons, joined by ","
		want              Class
		because           string
	}{
		// The rules of the README's table, by number.
		// 1: a configured trusted network, although DMARC fails.
		{"dmarcreader__multi-report.zip", "198.51.100.5", "", ClassAuthorized, "trusted network (configured)"},
		// 1: the domain's SPF record authorises 198.61.254.0/24.
		{"niciliketo__report1.xml", "198.61.254.23", "", ClassAuthorized, "trusted network (SPF record)"},
		// 2: SPF aligned.
		{"djangodmarc__dmarcreport.xml", "80.229.143.200", "", ClassAuthorized, "passes DMARC with aligned SPF"},
		// 3: aligned DKIM from a known sender (Amazon SES; its envelope
		// domain is not aligned).
		{"mailauth__003.xml", "54.240.8.13", "", ClassAuthorized, "aligned DKIM, from the known sender amazon-ses"},
		// 4: the reporter says mailing_list (a real record, its reason
		// edited: testdata/README.md).
		{"google-mailing-list-reason.xml", "198.61.254.23", "mailing_list", ClassMailingList, "the reporter says mailing_list"},
		// 5: a known list host (groups.io) breaks the signature.
		{"parsedmarc__addisonfoods.com!example.com!1536105600!1536191999.xml", "109.203.100.17", "", ClassMailingList, "known mailing list host (groups-io)"},
		// 6: the reporter says the mail was forwarded.
		{"qtdmarc__real-google-1.xml", "65.55.34.21", "forwarded", ClassForwarded, "the reporter says forwarded"},
		{"mailauth__003.xml", "64.147.108.117", "trusted_forwarder", ClassForwarded, "the reporter says forwarded"},
		// 7: a known forwarder (the source named as Forward Email's host).
		{"dmarcviewer__mailru.xml", "118.41.204.2", "", ClassForwarded, "a known forwarder (forward-email)"},
		// 8: DMARC passes by DKIM alone, from a source nobody knows.
		{"mozaic__report.xml.gz", "208.90.221.45", "", ClassForwarded, "DKIM signature is intact"},
		// 9: a known sender, trusted for the domain, failing alignment.
		{"niciliketo__report1.xml", "136.143.188.8", "", ClassMisconfigured, "the trusted service zoho"},
		// 10: a host named under the domain itself.
		{"dmarcgo__google.com!georgestarcher.com!1783382400!1783468799.xml", "158.94.211.154", "", ClassMisconfigured, "a host of the domain itself (georgestarcher.com)"},
		// 11: fails SPF and DKIM, from a network with no relation.
		{"niciliketo__report1.xml", "45.137.22.178", "", ClassThreat, "from an unnamed network, unrelated to the domain"},
		// 12: SPF passed for another domain; nothing else known.
		{"qtdmarc__real-google-1.xml", "3.4.39.49", "sampled_out", ClassUnknown, "authenticated only for another domain"},
	} {
		found := false
		for _, r := range records {
			if r.file != tt.file || r.rec.SourceIP.String() != tt.ip || reasonList(&r.rec) != tt.reasons {
				continue
			}
			found = true
			ce := e
			if tt.file == "google-mailing-list-reason.xml" { // its domain trusts the source's network
				ce = New(Options{Senders: e.opts.Senders})
			}
			c, reason, id := classify(ce, r)
			if c != tt.want || !strings.Contains(reason, tt.because) {
				t.Errorf("%s %s: %s (%s), want %s (%s); identity %+v", tt.file, tt.ip, c, reason, tt.want, tt.because, id)
			}
			break
		}
		if !found {
			t.Errorf("%s: no record from %s with reasons %q", tt.file, tt.ip, tt.reasons)
		}
	}
}

func reasonList(rec *report.Record) string {
	var out []string
	for _, r := range rec.Reasons {
		out = append(out, string(r.Type))
	}
	return strings.Join(out, ",")
}
