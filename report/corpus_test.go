package report

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
	kinds  []Kind
	counts [][2]uint64 // records, messages of each aggregate report
	reps   []*Aggregate
	recs   [][]*Record
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
		if doc.Kind != KindAggregate {
			return doc.Unsupported()
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
			p, err := parseFile(filepath.Join(corpusDir, e.file), DefaultLimits())
			tls := strings.Contains(e.notes, "TLS report JSON") || e.kind == "smtp_tls"
			switch {
			case e.kind == "failure" || tls:
				// Recognised and refused with a reason until failure and
				// SMTP TLS reports are parsed.
				if err == nil {
					t.Fatalf("parsed a %s file as aggregate: %+v", e.kind, p.counts)
				}
				want := "DMARC failure report"
				if tls {
					want = "SMTP TLS report"
				}
				if e.expect == "parse" && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), want)) {
					t.Fatalf("error %q does not say it is an unsupported %s", err, want)
				}
				t.Logf("refused: %v", err)
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
				checkCounts(t, e, p)
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
