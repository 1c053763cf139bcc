package collector

import (
	"archive/zip"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testArchive opens the archive under dir, closed when the test ends.
func testArchive(t testing.TB, dir string) *archive.Archive {
	t.Helper()
	arc, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arc.Close() })
	return arc
}

// series returns the live series of f, by their label values.
func series(s *Store, f *family) map[string][]string {
	out := map[string][]string{}
	for k := range s.live[f] {
		out[k] = splitLabels(nil, k)
	}
	return out
}

func testStore(t testing.TB, dir string, domains ...string) *Store {
	t.Helper()
	s, err := Open(Options{
		Archive:        testArchive(t, dir),
		Dir:            dir,
		Domains:        domains,
		Limits:         config.Limits{ReportersPerDomain: 5, Domains: 10, LabelLength: 64},
		DedupRetention: 800 * 24 * time.Hour,
		ReportLimits:   report.DefaultLimits(),
		MaxRawBytes:    64 << 10,
		Now:            func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// genReport writes an aggregate report as a reporter would.
func genReport(email, domain, id string, begin time.Time, counts ...int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0"?><feedback><report_metadata><org_name>x</org_name><email>%s</email><report_id>%s</report_id>`+
		`<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>`+
		`<policy_published><domain>%s</domain><p>reject</p></policy_published>`, email, id, begin.Unix(), begin.Add(24*time.Hour-time.Second).Unix(), domain)
	for i, n := range counts {
		fmt.Fprintf(&b, `<record><row><source_ip>192.0.2.%d</source_ip><count>%d</count><policy_evaluated><disposition>none</disposition>`+
			`<dkim>pass</dkim><spf>fail</spf><reason><type>forwarded</type></reason></policy_evaluated></row>`+
			`<identifiers><header_from>%s</header_from></identifiers></record>`, i%250, n, domain)
	}
	b.WriteString("</feedback>")
	return b.Bytes()
}

func TestReporterName(t *testing.T) {
	for _, tt := range []struct{ email, org, want string }{
		{"noreply-dmarc-support@google.com", "google.com", "google.com"},
		{"no-reply@uk-1.mimecastreport.com", "Mimecast", "mimecastreport.com"},
		{"dmarc_support@corp.mail.ru", "Mail.Ru", "mail.ru"},
		{"postmaster@dmarc.yahoo.com", "Yahoo! Inc.", "yahoo.com"},
		{"admin@estadocuenta1.infonacot.gob.mx", "XYZ Corporation", "infonacot.gob.mx"},
		{"mailto:dmarc@Reports.Example.CO.UK>", "", "example.co.uk"},
		{"postmaster@test", "Test Inc.", "test_inc"},
		{"", "<script>alert(1)</script>", "script_alert_1_script"},
		{"", "", "unknown"},
		{"a@" + strings.Repeat("x", 300) + ".com", "", strings.Repeat("x", 64)},
	} {
		if got := ReporterName(tt.email, tt.org, 64); got != tt.want {
			t.Errorf("ReporterName(%q, %q) = %q, want %q", tt.email, tt.org, got, tt.want)
		}
	}
}

// TestIngest: counts, dedup across deliveries, domain matching, and the
// state file round trip.
func TestIngest(t *testing.T) {
	dir := t.TempDir()
	s := testStore(t, dir, "example.com", "sub.example.com")
	day := testNow.Add(-48 * time.Hour)
	r1 := genReport("noreply@google.com", "example.com", "1", day, 3, 4)
	for i, in := range []struct {
		name string
		data []byte
		err  bool
	}{
		{"a.xml", r1, false},
		{"a-again.xml", r1, false}, // duplicate: counted once
		{"sub.xml", genReport("noreply@google.com", "mail.sub.example.com", "2", day, 5), false},
		{"other.xml", genReport("noreply@google.com", "example.net", "3", day, 6), false},
		{"broken.xml", r1[:len(r1)-20], true},
	} {
		err := s.IngestFile("src", in.name, fmt.Sprint(i), bytes.NewReader(in.data))
		if (err != nil) != in.err {
			t.Fatalf("%s: error %v", in.name, err)
		}
	}
	if n := testutil.CollectAndCount(s, "dmarc_messages_total"); n != 0 {
		t.Fatalf("%d message series visible before Commit", n)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP dmarc_messages_total Messages reported in DMARC aggregate reports (the sum of record counts), by protected domain, reporter, applied disposition, DMARC result and policy-evaluated (aligned) DKIM and SPF results. Grows when a report is ingested.
# TYPE dmarc_messages_total counter
dmarc_messages_total{disposition="none",dkim="pass",dmarc="pass",domain="example.com",reporter="google.com",spf="fail"} 7
dmarc_messages_total{disposition="none",dkim="pass",dmarc="pass",domain="sub.example.com",reporter="google.com",spf="fail"} 5
# HELP dmarc_reports_duplicate_total Aggregate reports received again (same reporter, report_id, date range and policy domain) and not counted twice.
# TYPE dmarc_reports_duplicate_total counter
dmarc_reports_duplicate_total{domain="example.com",reporter="google.com"} 1
dmarc_reports_duplicate_total{domain="sub.example.com",reporter="google.com"} 0
# HELP dmarc_reports_rejected_total Inputs or reports refused, by source and reason (malformed, no_report, too_large, not_auth_failure, domain_not_monitored).
# TYPE dmarc_reports_rejected_total counter
dmarc_reports_rejected_total{reason="domain_not_monitored",source="src"} 1
dmarc_reports_rejected_total{reason="malformed",source="src"} 1
# HELP dmarc_policy_override_messages_total Messages whose disposition the receiver overrode, by reason (forwarded, sampled_out, trusted_forwarder, mailing_list, local_policy, policy_test_mode, other).
# TYPE dmarc_policy_override_messages_total counter
dmarc_policy_override_messages_total{domain="example.com",reason="forwarded",reporter="google.com"} 7
dmarc_policy_override_messages_total{domain="sub.example.com",reason="forwarded",reporter="google.com"} 5
# HELP dmarc_report_end_timestamp_seconds End of the date range of the newest report ingested, by domain and reporter (a range ending in the future counts as ending at ingest).
# TYPE dmarc_report_end_timestamp_seconds gauge
dmarc_report_end_timestamp_seconds{domain="example.com",reporter="google.com"} 1.795521599e+09
dmarc_report_end_timestamp_seconds{domain="sub.example.com",reporter="google.com"} 1.795521599e+09
`
	names := []string{"dmarc_messages_total", "dmarc_reports_duplicate_total", "dmarc_reports_rejected_total",
		"dmarc_policy_override_messages_total", "dmarc_report_end_timestamp_seconds"}
	if err := testutil.CollectAndCompare(s, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(s); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}

	// Restart: everything is restored from the state file.
	s2 := testStore(t, dir, "example.com", "sub.example.com")
	if err := testutil.CollectAndCompare(s2, strings.NewReader(want), names...); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if seen, rejected := s2.Seen("broken.xml", "4"); !seen || !rejected {
		t.Errorf("broken.xml: seen %v rejected %v after restart", seen, rejected)
	}
	// The same report a third time, after the restart: still a duplicate.
	if err := s2.IngestFile("src", "a-third.xml", "x", bytes.NewReader(r1)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(collectOne(t, s2, "dmarc_reports_total", "example.com", "google.com")); v != 1 {
		t.Errorf("dmarc_reports_total = %v after a third delivery, want 1", v)
	}
}

// collectOne returns the one metric of name whose first label values match.
func collectOne(t *testing.T, c prometheus.Collector, name string, labels ...string) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i, l := range labels {
				if m.GetLabel()[i].GetValue() != l {
					continue metrics
				}
			}
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

// TestHostile: thousands of reports with random reporters and domains stay
// within the caps, and the overflow is counted.
func TestHostile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, configured := range []bool{true, false} {
		t.Run(fmt.Sprintf("domains configured %v", configured), func(t *testing.T) {
			var domains []string
			if configured {
				domains = []string{"example.com"}
			}
			s := testStore(t, t.TempDir(), domains...)
			const n = 3000
			for i := range n {
				domain := fmt.Sprintf("h%d.example.com", rng.IntN(1e6))
				if i%2 == 0 {
					domain = fmt.Sprintf("x%d.attacker%d.test", rng.IntN(1e6), rng.IntN(1e6))
				}
				email := fmt.Sprintf("r@%s.sender%d.test", strings.Repeat("z", rng.IntN(100)), rng.IntN(1e6))
				data := genReport(email, domain, fmt.Sprint(rng.Int64()), testNow.Add(-48*time.Hour), rng.IntN(10))
				if err := s.IngestFile("src", fmt.Sprint(i), "m", bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Commit(); err != nil {
				t.Fatal(err)
			}
			domainsSeen := map[string]bool{}
			reportersPerDomain := map[string]map[string]bool{}
			for _, lv := range series(s, messagesFamily) {
				domain, reporter := lv[0], lv[1]
				domainsSeen[domain] = true
				if reportersPerDomain[domain] == nil {
					reportersPerDomain[domain] = map[string]bool{}
				}
				reportersPerDomain[domain][reporter] = true
				if len(reporter) > 64 || len(domain) > 64 {
					t.Fatalf("label longer than the limit: %q", lv)
				}
			}
			maxDomains := 10 + 1 // the cap, plus "other"
			if configured {
				maxDomains = 1
			}
			if len(domainsSeen) > maxDomains {
				t.Errorf("%d domain labels, cap %d", len(domainsSeen), maxDomains)
			}
			for d, r := range reportersPerDomain {
				if len(r) > 5+1 {
					t.Errorf("domain %s: %d reporter labels, cap 5+other", d, len(r))
				}
			}
			if s.live[overflowFamily]["reporter"] == 0 {
				t.Error("reporter overflow not counted")
			}
			if !configured && s.live[overflowFamily]["domain"] == 0 {
				t.Error("domain overflow not counted")
			}
			if configured && s.live[rejectedFamily][seriesKey("src", RejectDomainNotMonitored)] != n/2 {
				t.Errorf("rejected %d reports for other domains, want %d", s.live[rejectedFamily][seriesKey("src", RejectDomainNotMonitored)], n/2)
			}
			if series := testutil.CollectAndCount(s); series > 2000 {
				t.Errorf("%d series", series)
			}
		})
	}
}

// failInputs makes the archive under dir refuse, as a full disk would,
// the write of every input for which the SQL condition when holds, until
// the trigger "fail" is dropped through the returned connection.
func failInputs(t *testing.T, dir, when string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, archive.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("CREATE TRIGGER fail BEFORE INSERT ON inputs WHEN " + when + " BEGIN SELECT RAISE(ABORT, 'disk full'); END"); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestArchiveWriteFails: a failed write to the archive serves nothing of
// the batch, counts the error, and writes it all at the next Commit.
func TestArchiveWriteFails(t *testing.T) {
	dir := t.TempDir()
	s := testStore(t, dir, "example.com")
	if err := s.IngestFile("src", "a", "1", bytes.NewReader(genReport("a@google.com", "example.com", "1", testNow, 1))); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	// Every write of an input fails, as on a full disk.
	db := failInputs(t, dir, "1")
	if err := s.IngestFile("src", "b", "1", bytes.NewReader(genReport("a@google.com", "example.com", "2", testNow, 1))); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("write with a failing archive: %v", err)
	}
	if s.saveErrors != 1 {
		t.Errorf("saveErrors = %d", s.saveErrors)
	}
	// What was not saved is not served: a restart would take it back.
	if got := s.live[domainReportsFamily]["example.com"]; got != 1 {
		t.Errorf("%d reports served after a failed save, want 1", got)
	}
	if s2 := testStore(t, dir, "example.com"); s2.live[domainReportsFamily]["example.com"] != 1 {
		t.Errorf("the archive holds %d reports after a failed save, want 1", s2.live[domainReportsFamily]["example.com"])
	}
	if _, err := db.Exec("DROP TRIGGER fail"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	s2 := testStore(t, dir, "example.com")
	if got := s2.live[domainReportsFamily]["example.com"]; got != 2 {
		t.Errorf("restored %d reports, want 2", got)
	}
	if seen, _ := s2.Seen("b", "1"); !seen {
		t.Error("the input written at the second try is not marked as read")
	}
}

// TestWriteTextMatchesCollect: the text /metrics serves and the
// prometheus.Collector give the same series, and the text parses.
func TestWriteTextMatchesCollect(t *testing.T) {
	s := testStore(t, t.TempDir(), "example.com", "example.net")
	for i, src := range []string{"plain", `we"ird\path`, "näme\nx"} {
		data := genReport("noreply@google.com", "example.com", fmt.Sprint(i), testNow.Add(-48*time.Hour), 1, 2)
		s.IngestFile(src, "a", "1", bytes.NewReader(data))
		s.IngestFile(src, "b", "1", strings.NewReader("not a report"))
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fromText, err := p.TextToMetricFamilies(bytes.NewReader(text.Bytes()))
	if err != nil {
		t.Fatalf("WriteText output does not parse: %v\n%s", err, text.String())
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(gathered) != len(fromText) {
		t.Fatalf("%d families from Collect, %d from WriteText", len(gathered), len(fromText))
	}
	for _, mf := range gathered {
		want := seriesLines(mf)
		got := seriesLines(fromText[mf.GetName()])
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("%s:\nCollect:\n%s\nWriteText:\n%s", mf.GetName(), strings.Join(want, "\n"), strings.Join(got, "\n"))
		}
		if fromText[mf.GetName()].GetHelp() != mf.GetHelp() || fromText[mf.GetName()].GetType() != mf.GetType() {
			t.Errorf("%s: HELP or TYPE differ", mf.GetName())
		}
	}
}

func seriesLines(mf *dto.MetricFamily) []string {
	if mf == nil {
		return nil
	}
	var out []string
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
		}
		sort.Strings(labels)
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		out = append(out, fmt.Sprintf("%s %g", strings.Join(labels, ","), v))
	}
	sort.Strings(out)
	return out
}

// TestFailureSamples: samples are kept only when configured, bounded, newest
// first, and hold no local part of any address.
func TestFailureSamples(t *testing.T) {
	data, err := os.ReadFile("../testdata/corpus/failure/parsedmarc__dmarc_ruf_report_linkedin.eml")
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile("../testdata/corpus/failure/djangodmarc2__feedback3.eml")
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []int{0, 1, 2} {
		s := testStore(t, t.TempDir())
		s.opts.FailureSamples = keep
		for i, d := range [][]byte{data, other} {
			if err := s.IngestFile("src", fmt.Sprint(i), "m", bytes.NewReader(d)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
		samples, err := s.Samples()
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) != keep {
			t.Fatalf("failure_samples %d: %d samples kept", keep, len(samples))
		}
		if keep == 0 {
			continue
		}
		b, _ := json.Marshal(samples)
		for _, private := range []string{"recipient@", "sender@", "Subject line"} {
			if bytes.Contains(b, []byte(private)) {
				t.Errorf("sample holds %q: %s", private, b)
			}
		}
		if samples[0].Domain != "example.net" { // the newest, from feedback3
			t.Errorf("newest sample is for %q", samples[0].Domain)
		}
	}
}

// TestFailureIdentity: two failure reports that differ only in their own
// Message-ID are two reports; the same mail twice is one and a duplicate.
func TestFailureIdentity(t *testing.T) {
	mail := func(id string) []byte {
		return []byte("From: abuse@163.com\r\nMessage-ID: <" + id + ">\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
			"--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n" +
			"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: auth-failure\r\nAuth-Failure: dmarc\r\nSource-IP: 192.0.2.1\r\nReported-Domain: example.com\r\n\r\n" +
			"--b--\r\n")
	}
	s := testStore(t, t.TempDir(), "example.com")
	for i, id := range []string{"a@163.com", "b@163.com", "a@163.com"} {
		if err := s.IngestFile("src", fmt.Sprint(i), "m", bytes.NewReader(mail(id))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	reports := s.live[failuresFamily][seriesKey("example.com", "163.com", "dmarc", "unknown")]
	dups := s.live[failureDuplicatesFamily][seriesKey("example.com", "163.com")]
	if reports != 2 || dups != 1 {
		t.Fatalf("%d failure reports and %d duplicates, want 2 and 1", reports, dups)
	}
}

// TestNewSeriesServedAtZero: a new counter series shows 0 for the delay, so
// that increase() sees its first report; an existing one grows at once.
func TestNewSeriesServedAtZero(t *testing.T) {
	s := testStore(t, t.TempDir(), "example.com")
	s.opts.NewSeriesDelay = 2 * time.Minute
	now := testNow
	s.opts.Now = func() time.Time { return now }
	reports := func() float64 {
		var v float64
		s.visit(func(f *family, x float64, lv ...string) {
			if f == reportsFamily {
				v = x
			}
		})
		return v
	}
	ingest := func(id string) {
		t.Helper()
		if err := s.IngestFile("src", id, "m", bytes.NewReader(genReport("a@google.com", "example.com", id, testNow.Add(-48*time.Hour), 5))); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	ingest("1")
	for _, step := range []struct {
		at   time.Duration
		want float64
	}{{0, 0}, {time.Minute, 0}, {2 * time.Minute, 1}} {
		now = testNow.Add(step.at)
		if got := reports(); got != step.want {
			t.Errorf("at +%v: dmarc_reports_total %v, want %v", step.at, got, step.want)
		}
	}
	now = testNow.Add(5 * time.Minute)
	ingest("2")
	if got := reports(); got != 2 {
		t.Errorf("an existing series served %v after its second report, want 2", got)
	}
}

// TestSourceCaps: per domain, distinct source_asn, source_country and
// source_name values are capped; the rest go to "other" (the AS
// organisation with its AS number) and are counted as overflow.
func TestSourceCaps(t *testing.T) {
	limits := config.Default().Limits
	limits.SourcesPerDomain = 2
	dir := t.TempDir()
	s, err := Open(Options{Archive: testArchive(t, dir), Dir: dir, Limits: limits, DedupRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	batch := map[sourceCombo]uint64{}
	for i, asn := range []string{"15169", "8075", "14618", "2639"} {
		batch[sourceCombo{asn: asn, org: "org" + asn, country: "US", name: fmt.Sprintf("name%d", i), class: "authorized", disposition: "none", dmarc: "pass"}] = 10
	}
	s.mu.Lock()
	staged := newBatch()
	s.stageSources(staged, "example.com", batch)
	s.stageSources(staged, "example.org", batch) // a cap per domain
	s.enqueue(staged)
	s.mu.Unlock()
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	asns, others := map[string]float64{}, 0.0
	for key, lv := range series(s, sourcesFamily) {
		v := s.live[sourcesFamily][key]
		domain, asn, org, name := lv[0], lv[1], lv[2], lv[4]
		if domain == "example.com" {
			asns[asn] += float64(v)
			if asn == otherLabel && org != otherLabel {
				t.Errorf("AS other with org %q", org)
			}
			if name == otherLabel {
				others += float64(v)
			}
		}
	}
	if len(asns) != 3 || asns[otherLabel] != 20 {
		t.Errorf("AS values %v", asns)
	}
	if others != 20 {
		t.Errorf("%v messages under name other, want 20", others)
	}
	if got := s.live[overflowFamily]["source_asn"]; got != 4 {
		t.Errorf("source_asn overflow %d, want 2 per domain", got)
	}
}

// TestSourceSeriesCap: the label caps alone would allow their product;
// past sourceSeriesFactor × the cap, new series of a domain have their
// four source labels "other".
func TestSourceSeriesCap(t *testing.T) {
	limits := config.Default().Limits
	limits.SourcesPerDomain = 1
	dir := t.TempDir()
	s, err := Open(Options{Archive: testArchive(t, dir), Dir: dir, Limits: limits, DedupRetention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	batch := map[sourceCombo]uint64{}
	for _, class := range []string{"authorized", "forwarded", "mailing_list", "misconfigured", "unknown", "threat"} {
		for _, dmarc := range []string{"pass", "fail"} {
			batch[sourceCombo{asn: "15169", org: "GOOGLE", country: "US", name: "google", class: class, disposition: "none", dmarc: dmarc}] = 1
		}
	}
	s.mu.Lock()
	staged := newBatch()
	s.stageSources(staged, "example.com", batch)
	s.enqueue(staged)
	s.mu.Unlock()
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	named, other := 0, 0
	for _, lv := range series(s, sourcesFamily) {
		asn, org, country, name := lv[1], lv[2], lv[3], lv[4]
		switch {
		case asn == "15169" && name == "google":
			named++
		case asn == otherLabel && org == otherLabel && country == otherLabel && name == otherLabel:
			other++
		}
	}
	if overflow := s.live[overflowFamily]["source_series"]; named != sourceSeriesFactor || other != 2 || overflow != 2 {
		t.Errorf("%d named series, %d other, overflow %d", named, other, overflow)
	}
}

// TestNoEnrichmentForUncounted: reports that will not be counted (their
// domain is not monitored) cost no name lookups.
func TestNoEnrichmentForUncounted(t *testing.T) {
	srv := testenv.StartDNS(t, "../enrich/testdata/names.zone")
	m := enrich.NewMetrics(nil)
	names := enrich.NewNames(&dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}, time.Second, 4, 0, m)
	s, err := Open(Options{Archive: testArchive(t, t.TempDir()), Domains: []string{"example.com"}, Limits: config.Default().Limits,
		DedupRetention: time.Hour, ReportLimits: report.DefaultLimits(), Enricher: enrich.New(enrich.Options{Names: names, Metrics: m})})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../testdata/corpus/aggregate/niciliketo__report1.xml") // marketdojo.com
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.IngestFile("test", "/report.xml", "1", f)
	if n := testutil.ToFloat64(m.CacheMisses()); n != 0 {
		t.Errorf("%v lookups for a domain not monitored", n)
	}
}

// TestRetention: reports past the retention leave the archive with their
// records; the counters stay, and a second delivery of an expired report
// is still a duplicate while its identity is remembered.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	s := testStore(t, dir, "example.com")
	old := genReport("a@google.com", "example.com", "old", testNow.Add(-500*24*time.Hour), 3, 4)
	recent := genReport("a@google.com", "example.com", "recent", testNow.Add(-48*time.Hour), 5)
	// A backfill: as old, but read now. It stays for the retention from now.
	backfill := genReport("a@google.com", "example.com", "backfill", testNow.Add(-500*24*time.Hour), 6)
	for i, data := range [][]byte{old, recent, backfill} {
		received := testNow
		if i == 0 {
			received = testNow.Add(-450 * 24 * time.Hour)
		}
		s.opts.Now = func() time.Time { return received }
		if err := s.IngestFile("src", fmt.Sprint(i), "m", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	s.opts.Now = func() time.Time { return testNow }
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(collectOne(t, s, "dmarc_reports_total", "example.com", "google.com"))
	n, err := s.arc.Expire(t.Context(), testNow.Add(-400*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expired %d reports (%v), want 1", n, err)
	}
	st, err := s.arc.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows["aggregate_reports"] != 2 || st.Rows["aggregate_records"] != 2 {
		t.Errorf("%d reports and %d records left, want the recent report's and the backfill's 2 and 2", st.Rows["aggregate_reports"], st.Rows["aggregate_records"])
	}
	if err := s.IngestFile("src", "again", "m", bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	s2 := testStore(t, dir, "example.com")
	if after := testutil.ToFloat64(collectOne(t, s2, "dmarc_reports_total", "example.com", "google.com")); after != before || before != 3 {
		t.Errorf("dmarc_reports_total %v before retention, %v after and a second delivery, want 3 and 3", before, after)
	}
	if dups := testutil.ToFloat64(collectOne(t, s2, "dmarc_reports_duplicate_total", "example.com", "google.com")); dups != 1 {
		t.Errorf("a second delivery of an expired report: %v duplicates, want 1", dups)
	}
}

// TestRawKept: the archive keeps a report as received, up to the size
// limit, gzip-compressed inside (a zip member here).
func TestRawKept(t *testing.T) {
	s := testStore(t, t.TempDir())
	day := testNow.Add(-48 * time.Hour)
	small := genReport("a@google.com", "example.com", "small", day, 1, 2)
	large := genReport("a@google.com", "example.com", "large", day, make([]int, 1000)...) // over 64 KiB
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	w, _ := zw.Create("google.com!example.com!1!2.xml")
	w.Write(small)
	zw.Close()
	for i, data := range [][]byte{zipped.Bytes(), large} {
		if err := s.IngestFile("src", fmt.Sprint(i), "m", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	id := func(reportID string) string {
		return dedupKey("a@google.com", reportID, day, day.Add(24*time.Hour-time.Second), "example.com")
	}
	raw, ok, err := s.arc.RawReport(id("small"))
	if err != nil || !ok || !bytes.Equal(raw, small) {
		t.Errorf("the small report as kept: ok %v, err %v, same bytes %v", ok, err, bytes.Equal(raw, small))
	}
	if _, ok, err := s.arc.RawReport(id("large")); ok || err != nil {
		t.Errorf("a report over max_raw_bytes kept its bytes (%v, %v)", ok, err)
	}
}

// TestOneTransactionPerInput: each input is written in a transaction of
// its own: when the second of three fails, the first is saved and served,
// and the second and third, with nothing of them in the archive, are
// written by the next Commit.
func TestOneTransactionPerInput(t *testing.T) {
	dir := t.TempDir()
	s := testStore(t, dir, "example.com")
	db := failInputs(t, dir, "NEW.path = 'b'")
	for i, name := range []string{"a", "b", "c"} {
		if err := s.IngestFile("src", name, "1", bytes.NewReader(genReport("a@google.com", "example.com", name, testNow, i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err == nil {
		t.Fatal("a failing input was written")
	}
	reports := func(s *Store) uint64 { return s.live[domainReportsFamily]["example.com"] }
	if got := reports(s); got != 1 {
		t.Errorf("%d reports served after the second input failed, want 1", got)
	}
	var rows int
	db.QueryRow("SELECT count(*) FROM aggregate_reports").Scan(&rows)
	if rows != 1 {
		t.Errorf("%d reports in the archive, want the first input's 1", rows)
	}
	if seen, _ := s.Seen("c", "1"); !seen {
		t.Error("the third input, not written yet, is no longer marked as read")
	}
	db.Exec("DROP TRIGGER fail")
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := reports(testStore(t, dir, "example.com")); got != 3 {
		t.Errorf("%d reports in the archive after the retry, want 3", got)
	}
}

// TestOddSourceAddresses: records whose source address cannot be read
// keep their messages (source identity "invalid"); only a bad count
// leaves a record out; the address forms reporters write are read.
func TestOddSourceAddresses(t *testing.T) {
	data, err := os.ReadFile("../testdata/derived/yahoo-odd-addresses.xml")
	if err != nil {
		t.Fatal(err)
	}
	s := testStore(t, t.TempDir(), "georgestarcher.com")
	s.opts.Enricher = enrich.New(enrich.Options{})
	s.opts.Limits.SourcesPerDomain = 100
	if err := s.IngestFile("src", "odd.xml", "1", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	value := func(f *family, labels ...string) uint64 { return s.live[f][seriesKey(labels...)] }
	domain, reporter := "georgestarcher.com", "yahooinc.com"
	if got := value(messagesFamily, domain, reporter, "none", "pass", "pass", "pass"); got != 21 {
		t.Errorf("%d messages counted, want 21 (all but the record with count -1)", got)
	}
	if got := value(invalidRecordsFamily, domain, reporter, InvalidSourceIP); got != 2 {
		t.Errorf("%d records with an unreadable source_ip, want 2", got)
	}
	if got := value(invalidRecordsFamily, domain, reporter, InvalidCount); got != 1 {
		t.Errorf("%d records with a bad count, want 1", got)
	}
	if got := value(sourcesFamily, domain, "invalid", "invalid", "invalid", "invalid", "unknown", "none", "pass"); got != 11 {
		t.Errorf("%d messages of source identity invalid, want 11; series %v", got, series(s, sourcesFamily))
	}
	st, err := s.arc.Stats(t.Context())
	if err != nil || st.Rows["aggregate_records"] != 7 {
		t.Errorf("%d records archived (%v), want 7", st.Rows["aggregate_records"], err)
	}
}

// TestRepairedReports: a report with bytes that are not in its encoding
// (a windows-1252 quote in header_from and org_name) and one with a stray
// start tag before <feedback> (ikea.com's) are counted in full, and the
// repairs are counted.
func TestRepairedReports(t *testing.T) {
	s := testStore(t, t.TempDir())
	for _, file := range []string{"../testdata/derived/accurateplastics-invalid-bytes.xml",
		"../testdata/corpus/aggregate/parsedmarc__ikea.com!example.de!1538690400!1538776800.xml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.IngestFile("src", file, "1", bytes.NewReader(data)); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	repairs := map[string]uint64{}
	for key, lv := range series(s, repairedFamily) {
		repairs[lv[0]+" "+lv[2]] += s.live[repairedFamily][key]
	}
	if want := map[string]uint64{"example.com invalid_bytes": 1, "example.de stray_start_tag": 1}; !maps.Equal(repairs, want) {
		t.Errorf("repairs %v, want %v", repairs, want)
	}
	messages := map[string]uint64{}
	for key, lv := range series(s, messagesFamily) {
		messages[lv[0]] += s.live[messagesFamily][key]
	}
	// As the manifest says of the ikea.com report, and as the original of
	// the derived one holds.
	if messages["example.de"] != 1 || messages["example.com"] != 1 {
		t.Errorf("messages %v, want 1 for each domain", messages)
	}
}

// TestIDNLabels: internationalised domain names are labelled by their
// A-label, so that two never share a label, and a report matches a
// configured domain however either writes it.
func TestIDNLabels(t *testing.T) {
	day := testNow.Add(-48 * time.Hour)
	s := testStore(t, t.TempDir())
	for i, d := range []string{"exämple.com", "exâmple.com", "xn--exmple-cua.com"} {
		if err := s.IngestFile("src", fmt.Sprint(i), "1", bytes.NewReader(genReport("a@google.com", d, fmt.Sprint(i), day, 1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := s.live[domainReportsFamily]; got["xn--exmple-cua.com"] != 2 || got["xn--exmple-xta.com"] != 1 || len(got) != 2 {
		t.Errorf("reports by domain label %v, want 2 for xn--exmple-cua.com and 1 for xn--exmple-xta.com", got)
	}

	configured := testStore(t, t.TempDir(), config.NormalizeDomain("Exämple.com"))
	if err := configured.IngestFile("src", "a", "1", bytes.NewReader(genReport("a@google.com", "mail.xn--exmple-cua.com", "1", day, 1))); err != nil {
		t.Fatal(err)
	}
	if err := configured.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := configured.live[domainReportsFamily]["xn--exmple-cua.com"]; got != 1 {
		t.Errorf("%d reports for the configured exämple.com, want 1", got)
	}
}

// TestArchiveDeletedWhileRunning: when the archive's file is deleted while
// the exporter runs, the next commit writes it anew from the open
// database, says so and counts it; a restart then finds every report.
func TestArchiveDeletedWhileRunning(t *testing.T) {
	for _, removed := range [][]string{{""}, {"", "-wal", "-shm"}} {
		t.Run(fmt.Sprint(removed), func(t *testing.T) {
			dir := t.TempDir()
			s := testStore(t, dir, "example.com")
			ingest := func(id string) {
				t.Helper()
				if err := s.IngestFile("src", id, "1", bytes.NewReader(genReport("a@google.com", "example.com", id, testNow, 1))); err != nil {
					t.Fatal(err)
				}
				if err := s.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			ingest("1")
			for _, suffix := range removed {
				os.Remove(filepath.Join(dir, archive.FileName+suffix))
			}
			ingest("2")
			ingest("3")
			if s.recreated != 1 {
				t.Errorf("recreated %d times, want 1", s.recreated)
			}
			if got := testStore(t, dir, "example.com").live[domainReportsFamily]["example.com"]; got != 3 {
				t.Errorf("a restart finds %d reports, want 3", got)
			}
		})
	}
}

// TestStateLeftoversRemoved: half-written state files of an earlier
// version (killed while writing) are removed at start.
func TestStateLeftoversRemoved(t *testing.T) {
	dir := t.TempDir()
	leftover := filepath.Join(dir, "state.json.tmp-12345")
	os.WriteFile(leftover, []byte(`{"version":1,"mess`), 0o600)
	testStore(t, dir)
	if _, err := os.Stat(leftover); err == nil {
		t.Error("the half-written state file is still there")
	}
}
