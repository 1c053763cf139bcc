package report

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func readTestFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(agg(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zipOf(t testing.TB, members map[string][]byte, order ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, name := range order {
		f, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(members[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	for _, tt := range []struct {
		head string
		want format
	}{
		{"", formatEmpty},
		{"  \r\n", formatEmpty},
		{"\x1f\x8b\x08", formatGzip},
		{"PK\x03\x04", formatZip},
		{"PK\x05\x06", formatZip},
		{"\uFEFF<?xml", formatXML},
		{"\r\n  <feedback>", formatXML},
		{"\xff\xfe<\x00", formatXML},
		{"{\"organization-name\"", formatJSON},
		{"Return-Path: <a@b>\r\n", formatMail},
		{"From a@b Wed May 20 01:00:00 2020\nFrom: a@b\n", formatMail},
		{"this is not a gz file", formatUnknown},
		{": no field name", formatUnknown},
	} {
		if got := sniff([]byte(tt.head)); got != tt.want {
			t.Errorf("sniff(%q) = %v, want %v", tt.head, got, tt.want)
		}
	}
}

// TestContainers builds containers around a real report and checks that
// the report comes out whole, with the part named.
func TestContainers(t *testing.T) {
	xmlData := readTestFile(t, "corpus/aggregate", "niciliketo__report1.xml") // 33 records, 1609 messages
	half := len(xmlData) / 2
	twoMembers := append(gz(t, xmlData[:half]), gz(t, xmlData[half:])...)
	for _, tt := range []struct {
		name     string
		data     []byte
		reports  int
		wantPart string
	}{
		{"gzip with two members", twoMembers, 1, ""},
		{"gzip with trailing bytes", append(gz(t, xmlData), "\r\n\x00junk"...), 1, ""},
		{"zip in gzip", gz(t, zipOf(t, map[string][]byte{"a.xml": xmlData}, "a.xml")), 1, `"a.xml"`},
		{"zip with two reports, a directory and AppleDouble",
			zipOf(t, map[string][]byte{"d/": nil, "a.xml": xmlData, "__MACOSX/._a.xml": []byte("junk"), "._b.xml": []byte("junk"), "b.xml.gz": gz(t, xmlData)},
				"d/", "a.xml", "__MACOSX/._a.xml", "._b.xml", "b.xml.gz"), 2, `"b.xml.gz"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var parts []string
			p, err := parseReader(bytes.NewReader(tt.data), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			_ = Walk(bytes.NewReader(tt.data), DefaultLimits(), func(d Document) error {
				parts = append(parts, d.Part)
				_, err := io.Copy(io.Discard, d.Body)
				return err
			})
			eq(t, "reports", len(p.counts), tt.reports)
			for _, c := range p.counts {
				eq(t, "counts", c, [2]uint64{33, 1609})
			}
			eq(t, "last part", parts[len(parts)-1], tt.wantPart)
		})
	}
}

// TestLimits: every bound fails the input with ErrLimit and names itself,
// without holding the output of a bomb.
func TestLimits(t *testing.T) {
	small := DefaultLimits()
	small.MaxDecompressedBytes = 1 << 20
	// Well-formed as far as it goes, so that only the limit can stop it.
	bombXML := append([]byte("<feedback>"), bytes.Repeat([]byte(" "), 8<<20)...)
	bomb := gz(t, bombXML)
	zipBomb := zipOf(t, map[string][]byte{"r.xml": bombXML}, "r.xml")
	manyMembers := map[string][]byte{}
	var names []string
	for i := range 101 {
		n := strings.Repeat("x", i+1) + ".xml"
		manyMembers[n] = []byte("<feedback/>")
		names = append(names, n)
	}
	nested := readTestFile(t, "corpus/aggregate", "dmarcviewer__yahoo.xml")
	for range 7 {
		nested = gz(t, nested)
	}
	xmlData := readTestFile(t, "corpus/aggregate", "niciliketo__report1.xml")
	// A sound report, padded to 600 KiB: two of them exceed 1 MiB.
	padded := append(append([]byte{}, xmlData...), bytes.Repeat([]byte("\n"), 600<<10-len(xmlData))...)
	fewRecords := DefaultLimits()
	fewRecords.MaxRecords = 10

	for _, tt := range []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"gzip bomb", bomb, small, "gunzip: decompressed data larger than 1048576 bytes in all"},
		{"zip bomb", zipBomb, small, `"r.xml": unzip: decompressed data larger than 1048576 bytes in all`},
		// Each member within the bound, all of them together over it.
		{"zips in a zip", zipOf(t, map[string][]byte{"a.zip": zipOf(t, map[string][]byte{"a.xml": padded}, "a.xml"),
			"b.zip": zipOf(t, map[string][]byte{"b.xml": padded}, "b.xml")}, "a.zip", "b.zip"), small,
			"decompressed data larger than 1048576 bytes in all"},
		{"overlapping entries", overlapping(t), DefaultLimits(), "zip entries overlap"},
		{"zip members", zipOf(t, manyMembers, names...), DefaultLimits(), "zip holds 101 entries, more than 100"},
		{"nesting", nested, DefaultLimits(), "containers nested deeper than 5"},
		{"records", xmlData, fewRecords, "more than 10 records"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReader(bytes.NewReader(tt.data), tt.lim)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrLimit with %q", err, tt.want)
			}
		})
	}
}

// overlapping builds a zip whose two directory entries point at the same
// data, as "zip quines" do.
func overlapping(t *testing.T) []byte {
	data := zipOf(t, map[string][]byte{"a.xml": bytes.Repeat([]byte("x"), 1000)}, "a.xml")
	// Duplicate the one central directory entry and fix the end record.
	eocd := bytes.LastIndex(data, []byte("PK\x05\x06"))
	cdStart := int(binary.LittleEndian.Uint32(data[eocd+16:]))
	entry := data[cdStart:eocd]
	out := append([]byte{}, data[:eocd]...)
	out = append(out, entry...)
	end := append([]byte{}, data[eocd:]...)
	binary.LittleEndian.PutUint16(end[8:], 2)
	binary.LittleEndian.PutUint16(end[10:], 2)
	binary.LittleEndian.PutUint32(end[12:], uint32(2*len(entry)))
	return append(out, end...)
}

// TestMailParts checks the part names and kinds the mail walker reports.
func TestMailParts(t *testing.T) {
	for _, tt := range []struct {
		file string
		kind Kind
		part string
	}{
		{"email/parsedmarc__Report domain- borschow.com Submitter- google.com Report-ID- 949348866075514174.eml", KindAggregate,
			`MIME part 2 "google.com!borschow.com!1549929600!1550015999.zip" > "google.com!borschow.com!1549929600!1550015999.xml"`},
		{"email/woodyslum__rfc_7489_B5.eml", KindAggregate, `MIME part 2 "mail.receiver.example!example.com! 1013662812!1013749130.gz"`},
		{"email/andreialecu__email-source-with-gz.txt", KindAggregate, `MIME part 2 "amazonses.com!example.co!1682294400!1682380800.xml.gz"`},
		{"email/mox__microsoft.eml", KindSMTPTLS, `MIME part 2 "microsoft.com!test.xmox.nl!1673308800!1673395199!133198585438131172.json.gz"`},
		{"../derived/forwarded-google-report.eml", KindAggregate, `MIME part 2 > "google.com!freitagsrunde.org!1691539200!1691625599.xml"`},
		{"../derived/yahoo-quoted-printable.eml", KindAggregate, `MIME part 2 "yahoo.com!random.org!1709510400!1709596799 é.xml"`},
		{"failure/parsedmarc__dmarc_ruf_report_linkedin.eml", KindFailure, ""},
		{"failure/parsedmarc__[Netease DMARC Failure Report] Rent Reminder.eml", KindFailure, ""},
		// The returned message carries an aggregate report: not read as one.
		{"../derived/failure-with-report-attachment.eml", KindFailure, ""},
	} {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(agg("corpus", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var docs []Document
			err = Walk(f, DefaultLimits(), func(d Document) error {
				docs = append(docs, Document{Part: d.Part, Kind: d.Kind})
				_, err := io.Copy(io.Discard, d.Body)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "documents", len(docs), 1)
			eq(t, "kind", docs[0].Kind, tt.kind)
			eq(t, "part", docs[0].Part, tt.part)
		})
	}
}

// TestErrorsNamePart: an error inside a container names the member.
func TestErrorsNamePart(t *testing.T) {
	good := readTestFile(t, "corpus/aggregate", "dmarcviewer__yahoo.xml")
	bad := readTestFile(t, "corpus/aggregate", "godmarcanalyzer__malformed3.xml")
	data := zipOf(t, map[string][]byte{"good.xml": good, "bad.xml": bad}, "good.xml", "bad.xml")
	_, err := parseReader(bytes.NewReader(data), DefaultLimits())
	want := `"bad.xml": XML line 13: document ends inside markup: truncated`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
}
