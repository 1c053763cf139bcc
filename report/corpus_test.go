package report

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// corpusDir holds real reports copied from ../shared/corpus, with the
// MANIFEST.tsv that gives each file's origin and what a parser must do.
const corpusDir = "../testdata/corpus"

// manifestEntry is one line of MANIFEST.tsv.
type manifestEntry struct {
	file   string
	kind   string
	expect string // parse, error or either
	notes  string
	// counts are the (records, messages) of each aggregate report the
	// notes describe, in file order.
	counts [][2]uint64
}

var countsRE = regexp.MustCompile(`(\d+) records?, (\d+) messages?`)

func readManifest(t testing.TB) []manifestEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []manifestEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 8 {
			t.Fatalf("MANIFEST line %q: %d columns", sc.Text(), len(cols))
		}
		e := manifestEntry{file: cols[0], kind: cols[5], notes: cols[7]}
		e.expect, _, _ = strings.Cut(strings.TrimPrefix(cols[7], "expect="), ";")
		for _, m := range countsRE.FindAllStringSubmatch(cols[7], -1) {
			r, _ := strconv.ParseUint(m[1], 10, 64)
			n, _ := strconv.ParseUint(m[2], 10, 64)
			e.counts = append(e.counts, [2]uint64{r, n})
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// "same as X" notes give their counts through X's line.
	byName := map[string]manifestEntry{}
	for _, e := range out {
		byName[filepath.Base(e.file)] = e
	}
	for i, e := range out {
		if m := sameAsRE.FindStringSubmatch(e.notes); m != nil && len(e.counts) == 0 {
			out[i].counts = byName[m[1]].counts
		}
	}
	return out
}

var sameAsRE = regexp.MustCompile(`same as (\S+\.xml)\b`)

// parsed is what walking one file gave.
type parsed struct {
	kinds    []Kind
	counts   [][2]uint64 // records, messages of each aggregate report
	reps     []*Aggregate
	recs     [][]*Record
	tls      []*TLSReport
	failures []*FailureReport
}

// parseFile walks a file and decodes every aggregate report in it, the way
// the exporter does: the file fails as a whole on the first error.
func parseFile(path string, lim Limits) (*parsed, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseReader(f, lim)
}

func parseReader(r io.Reader, lim Limits) (*parsed, error) {
	p := &parsed{}
	err := Walk(r, lim, func(doc Document) error {
		p.kinds = append(p.kinds, doc.Kind)
		switch doc.Kind {
		case KindSMTPTLS:
			rep, err := ParseTLSReport(doc.Body, lim)
			if err == nil {
				p.tls = append(p.tls, rep)
			}
			return err
		case KindFailure:
			rep, err := ParseFailure(doc.Body, lim)
			if err == nil {
				p.failures = append(p.failures, rep)
			}
			return err
		}
		dec := NewAggregateDecoder(doc.Body, lim)
		hdr, err := dec.Header()
		if err != nil {
			return err
		}
		var c [2]uint64
		var recs []*Record
		for rec, err := range dec.All() {
			if err != nil {
				return err
			}
			c[0]++
			c[1] += rec.Count
			recs = append(recs, rec)
		}
		p.counts = append(p.counts, c)
		p.reps = append(p.reps, hdr)
		p.recs = append(p.recs, recs)
		return nil
	})
	return p, err
}

// TestCorpus checks every copied corpus file against its MANIFEST expect=:
// parse gives exactly the record and message counts of the notes, error
// fails with a reason, either fails cleanly or gives the right counts.
func TestCorpus(t *testing.T) {
	entries := readManifest(t)
	if len(entries) < 100 {
		t.Fatalf("MANIFEST lists %d files; the corpus copy is incomplete", len(entries))
	}
	for _, e := range entries {
		t.Run(e.file, func(t *testing.T) {
			if e.kind == "schema" {
				checkSchema(t, e)
				return
			}
			p, err := parseFile(filepath.Join(corpusDir, e.file), DefaultLimits())
			tls := strings.Contains(e.notes, "TLS report JSON") || strings.Contains(e.notes, "SMTP TLS report mail") || e.kind == "smtp_tls"
			switch {
			case e.expect == "parse" && tls:
				if err != nil {
					t.Fatalf("parse failed: %v", err)
				}
				checkTLS(t, e, p)
			case e.expect == "parse" && e.kind == "failure":
				if err != nil {
					t.Fatalf("parse failed: %v", err)
				}
				checkFailure(t, e, p)
			case e.expect == "parse":
				if err != nil {
					t.Fatalf("parse failed: %v", err)
				}
				checkCounts(t, e, p)
			case e.expect == "error":
				if err == nil {
					t.Fatalf("parsed a file that must fail: %v", p.counts)
				}
				if len(err.Error()) < 10 {
					t.Fatalf("error %q gives no reason", err)
				}
				t.Logf("refused: %v", err)
			case e.expect == "either":
				if err != nil {
					t.Logf("refused: %v", err)
					return
				}
				switch {
				case tls:
					checkTLS(t, e, p)
				case e.kind == "failure":
					checkFailure(t, e, p)
				default:
					checkCounts(t, e, p)
				}
			default:
				t.Fatalf("unknown expect=%q", e.expect)
			}
		})
	}
}

func checkCounts(t *testing.T, e manifestEntry, p *parsed) {
	t.Helper()
	if len(e.counts) == 0 {
		t.Fatalf("MANIFEST notes give no counts for %s", e.file)
	}
	if len(p.counts) != len(e.counts) {
		t.Fatalf("found %d reports %v, MANIFEST says %d %v", len(p.counts), p.counts, len(e.counts), e.counts)
	}
	for i := range e.counts {
		if p.counts[i] != e.counts[i] {
			t.Errorf("report %d: %d records, %d messages; MANIFEST says %d, %d",
				i+1, p.counts[i][0], p.counts[i][1], e.counts[i][0], e.counts[i][1])
		}
	}
}

var (
	tlsOrgRE = regexp.MustCompile(`org '([^']*)'; (\d+) polic(?:y|ies) \(([^)]*)\)`)
	// The other way the notes describe a TLS report: org X, N policy,
	// S successful and F failed sessions.
	tlsSessionsRE = regexp.MustCompile(`org ([^,]+), (\d+) polic(?:y|ies), (\d+) successful and (\d+) failed sessions`)
	tlsResultsRE  = regexp.MustCompile(`result-types ([a-z0-9, -]+)`)
	arfFieldRE    = regexp.MustCompile(`(Feedback-Type|Auth-Failure|Delivery-Result|Reported-Domain): ([^;]+)`)
)

// checkTLS compares an SMTP TLS report with the MANIFEST notes: the
// organisation, the policy types in order, and the result types.
func checkTLS(t *testing.T, e manifestEntry, p *parsed) {
	t.Helper()
	if len(p.tls) != 1 {
		t.Fatalf("%d SMTP TLS reports, want 1 (kinds %v)", len(p.tls), p.kinds)
	}
	r := p.tls[0]
	m := tlsOrgRE.FindStringSubmatch(e.notes)
	if m == nil {
		sm := tlsSessionsRE.FindStringSubmatch(e.notes)
		if sm == nil {
			t.Fatalf("MANIFEST notes give no TLS report details: %s", e.notes)
		}
		var ok, failed uint64
		for _, pol := range r.Policies {
			ok += pol.Successful
			failed += pol.Failed
		}
		eq(t, "successful sessions", fmt.Sprint(ok), sm[3])
		eq(t, "failed sessions", fmt.Sprint(failed), sm[4])
		var types []string
		for _, pol := range r.Policies {
			types = append(types, string(pol.Type))
		}
		m = []string{sm[0], sm[1], sm[2], strings.Join(types, ", ")} // the policy types are not in these notes
	}
	eq(t, "organization-name", r.OrganizationName, m[1])
	var types []string
	results := map[string]bool{}
	for _, pol := range r.Policies {
		types = append(types, string(pol.Type))
		for _, f := range pol.Failures {
			results[string(f.ResultType)] = true
		}
	}
	eq(t, "policies", fmt.Sprint(len(r.Policies)), m[2])
	eq(t, "policy types", strings.Join(types, ", "), m[3])
	var want []string
	if rm := tlsResultsRE.FindStringSubmatch(e.notes); rm != nil {
		want = strings.Split(strings.TrimSpace(rm[1]), ", ")
	}
	var got []string
	for k := range results {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	eq(t, "result types", strings.Join(got, ", "), strings.Join(want, ", "))
}

// checkFailure compares a failure report with the ARF fields the MANIFEST
// notes name.
func checkFailure(t *testing.T, e manifestEntry, p *parsed) {
	t.Helper()
	if len(p.failures) != 1 {
		t.Fatalf("%d failure reports, want 1 (kinds %v)", len(p.failures), p.kinds)
	}
	f := p.failures[0]
	for _, m := range arfFieldRE.FindAllStringSubmatch(e.notes, -1) {
		want := strings.ToLower(strings.TrimSpace(m[2]))
		switch m[1] {
		case "Feedback-Type":
			eq(t, m[1], f.FeedbackType, want)
		case "Auth-Failure":
			eq(t, m[1], string(f.AuthFailure), want)
		case "Delivery-Result":
			if d := ParseDeliveryResult(want); d != "other" {
				eq(t, m[1], f.DeliveryResult, d)
			} else {
				eq(t, m[1], f.DeliveryResult, DeliveryResult("other"))
			}
		case "Reported-Domain":
			eq(t, m[1], f.ReportedDomain, want)
		}
	}
	if f.Domain() == "" || f.Reporter == "" {
		t.Errorf("domain %q, reporter %q", f.Domain(), f.Reporter)
	}
}

// checkSchema: for a schema, expect= says whether it is well-formed XML
// (encoding/xml reads it to the end); either way it is no report, and the
// parser says so (ErrNoReport or ErrNotAggregate, both counted as
// no_report), never malformed.
func checkSchema(t *testing.T, e manifestEntry) {
	t.Helper()
	data := readTestFile(t, "corpus", e.file)
	_, err := stdTokens(data)
	if (err == nil) != (e.expect == "parse") {
		t.Errorf("well-formed: %v, expect=%s", err == nil, e.expect)
	}
	if _, err := parseReader(bytes.NewReader(data), DefaultLimits()); !errors.Is(err, ErrNoReport) && !errors.Is(err, ErrNotAggregate) {
		t.Errorf("a schema read as: %v, want ErrNoReport or ErrNotAggregate", err)
	}
}
