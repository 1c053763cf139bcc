package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const testdata = "../../testdata"

// goldenCases are reports from different providers and containers whose
// whole `parse` output is checked field by field.
var goldenCases = []struct{ golden, file string }{
	{"google", "corpus/aggregate/mailauth__002.xml"},
	{"google-zip-in-mail", "corpus/email/parsedmarc__Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml"},
	{"microsoft365", "corpus/aggregate/communitales__report_one_record.xml"},
	{"yahoo", "corpus/aggregate/dmarcanalyzernet__sample-yahoo-aggregate.xml"},
	{"gmx-rfc9990", "corpus/aggregate/dmarcviewer__gmxnet.xml"},
	{"mimecast-gzip-trailing-bytes", "corpus/aggregate/mozaic__trailing_garbage1.xml.gz"},
	{"fastmail", "corpus/aggregate/mailauth__003.xml"},
	{"amazonses-mail", "corpus/email/andreialecu__email-source-with-gz.txt"},
	{"multi-report-zip", "corpus/aggregate/stuartmaxwell__multiple_reports.zip"},
	{"flagged-records", "derived/yahoo-bad-counts.xml"},
	{"microsoft-smtp-tls-mail", "corpus/email/tlsrptrs__microsoft1.eml"},
	{"google-smtp-tls", "corpus/smtp_tls/mailauth__rpt02.json"},
	{"linkedin-failure", "corpus/failure/parsedmarc__dmarc_ruf_report_linkedin.eml"},
	{"netease-failure-forwarded", "corpus/failure/parsedmarc__[Netease DMARC Failure Report] Rent Reminder.eml"},
}

func runParse(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errOut bytes.Buffer
	status = run(append([]string{"parse"}, args...), &out, &errOut)
	return out.String(), errOut.String(), status
}

func TestParseGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.golden, func(t *testing.T) {
			stdout, stderr, status := runParse(t, filepath.Join(testdata, tc.file))
			if status != 0 || stderr != "" {
				t.Fatalf("status %d, stderr %q", status, stderr)
			}
			path := filepath.Join(testdata, "golden", tc.golden+".ndjson")
			if *update {
				if err := os.WriteFile(path, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := decodeLines(t, stdout)
			exp := decodeLines(t, string(want))
			if len(got) != len(exp) {
				t.Fatalf("%d reports, golden has %d", len(got), len(exp))
			}
			for i := range exp {
				for _, d := range diff(fmt.Sprintf("report[%d]", i), got[i], exp[i]) {
					t.Error(d)
				}
			}
		})
	}
}

// decodeLines checks that every line is one JSON object.
func decodeLines(t *testing.T, s string) []any {
	t.Helper()
	var out []any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line is not a JSON object: %v: %.200s", err, sc.Text())
		}
		out = append(out, v)
	}
	return out
}

// diff lists the fields where got and want differ, by path.
func diff(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want an object", path, got)}
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			out = append(out, diff(path+"."+k, g[k], w[k])...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(got, want) {
		return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
	}
	return nil
}

// TestParseFields checks the fields the issue names on one report, by hand,
// so that the goldens are not the only witness.
func TestParseFields(t *testing.T) {
	stdout, _, status := runParse(t, filepath.Join(testdata, "corpus/aggregate/dmarcanalyzernet__sample-yahoo-aggregate.xml"))
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	rep := decodeLines(t, stdout)[0].(map[string]any)
	for k, want := range map[string]any{
		"kind":           "aggregate",
		"reporter":       "yahooinc.com", // the label, as on /metrics
		"reporter_org":   "Yahoo",
		"reporter_email": "dmarchelp@yahooinc.com",
		"domain":         "007ed325dddd44e3a0f17488f4312e49.com",
		"begin":          "2025-01-24T00:00:00Z",
		"end":            "2025-01-24T23:59:59Z",
	} {
		if rep[k] != want {
			t.Errorf("%s = %v, want %v", k, rep[k], want)
		}
	}
	recs := rep["records"].([]any)
	rec := recs[0].(map[string]any)
	for _, k := range []string{"source_ip", "count", "disposition", "dkim", "spf", "header_from", "dkim_results", "spf_results"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("record has no %q", k)
		}
	}
	if n := len(rec["dkim_results"].([]any)); n != 2 {
		t.Errorf("%d dkim_results, want 2", n)
	}
}

// TestParseExitStatus: a failing file is named on stderr with its reason,
// prints nothing on stdout, and does not stop the files after it.
func TestParseExitStatus(t *testing.T) {
	good := filepath.Join(testdata, "corpus/aggregate/dmarcviewer__yahoo.xml")
	truncated := filepath.Join(testdata, "corpus/aggregate/godmarcanalyzer__malformed3.xml")
	abuse := filepath.Join(testdata, "corpus/failure/mailauth__001.eml")
	missing := filepath.Join(testdata, "no-such-file.xml")

	stdout, stderr, status := runParse(t, truncated, good, abuse, missing)
	if status != 1 {
		t.Errorf("status %d, want 1", status)
	}
	if n := len(decodeLines(t, stdout)); n != 1 {
		t.Errorf("%d reports on stdout, want 1 (the good file's)", n)
	}
	wantErr := []string{
		truncated + ": XML line 13: document ends inside markup: truncated",
		abuse + `: ARF report of Feedback-Type "abuse", not an authentication failure report: not a DMARC failure report: no report found`,
		missing + ": stat " + missing + ": no such file or directory",
	}
	if got := strings.Split(strings.TrimSpace(stderr), "\n"); !reflect.DeepEqual(got, wantErr) {
		t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantErr, "\n"))
	}

	if _, _, status := runParse(t, good); status != 0 {
		t.Errorf("status %d for a good file, want 0", status)
	}
	var out, errOut bytes.Buffer
	if status := run([]string{"parse", "--no-such-flag", good}, &out, &errOut); status != 2 {
		t.Errorf("status %d for a bad flag, want 2", status)
	}
}

// TestParseDirectory reads a directory recursively: every corpus report
// that must parse is printed, every one that must fail is named.
func TestParseDirectory(t *testing.T) {
	stdout, stderr, status := runParse(t, filepath.Join(testdata, "corpus/aggregate"))
	if status != 1 {
		t.Errorf("status %d, want 1: the corpus holds broken files", status)
	}
	reports := decodeLines(t, stdout)
	failed := strings.Count(stderr, "\n")
	files, _ := filepath.Glob(filepath.Join(testdata, "corpus/aggregate/*"))
	// Multi-report zips print several lines; every file either printed or failed.
	if failed == 0 || len(reports) < len(files)-failed {
		t.Errorf("%d reports and %d failures for %d files", len(reports), failed, len(files))
	}
}

// TestParseSummary: --format=summary prints one line per report with the
// totals the JSON output gives.
func TestParseSummary(t *testing.T) {
	dir := filepath.Join(testdata, "corpus/aggregate")
	var js, sum, errOut bytes.Buffer
	run([]string{"parse", dir}, &js, &errOut)
	run([]string{"parse", "--format=summary", dir}, &sum, &errOut)
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var r struct {
			File, Part string
			Records    int    `json:"record_count"`
			Messages   uint64 `json:"message_count"`
			Flagged    int    `json:"flagged_records"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("records=%d messages=%d flagged=%d", r.Records, r.Messages, r.Flagged))
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(sum.String()), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 8 || fields[1] != "aggregate" {
			t.Fatalf("summary line %q", line)
		}
		got = append(got, fields[7])
	}
	if len(got) < 50 || !slices.Equal(got, want) {
		t.Errorf("%d summary lines, %d JSON lines; totals differ: %v", len(got), len(want), !slices.Equal(got, want))
	}
}

// TestParseCounted: parse --format=counted prints what the exporter
// counts: over the corpus, its reports (duplicates once) and messages per
// disposition add up to what the exporter serves.
func TestParseCounted(t *testing.T) {
	dir := filepath.Join(testdata, "corpus/aggregate")
	var out, errOut bytes.Buffer
	run([]string{"parse", "--format=counted", dir}, &out, &errOut)
	want := map[string]float64{}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var c struct {
			Identity string
			Series   []struct {
				Metric string
				Labels map[string]string
				Value  float64
			}
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		if seen[c.Identity] {
			continue // a duplicate: counted once
		}
		seen[c.Identity] = true
		for _, s := range c.Series {
			want[s.Metric+" "+s.Labels["disposition"]] += s.Value
		}
	}
	e := startExporter(t, "--source.dir="+dir, "--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s")
	e.waitScans(1, dir)
	got := map[string]float64{}
	mfs := e.families()
	for _, name := range []string{"dmarc_reports_total", "dmarc_messages_total", "dmarc_records_invalid_total", "dmarc_policy_override_messages_total"} {
		for _, m := range mfs[name].GetMetric() {
			disposition := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "disposition" {
					disposition = l.GetValue()
				}
			}
			got[name+" "+disposition] += value(m)
		}
	}
	if !reflect.DeepEqual(got, want) || want["dmarc_reports_total "] < 50 {
		t.Errorf("the exporter counts %v, parse --format=counted says %v", got, want)
	}
}
