package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// scanTokens returns what the scanner reads from data as a list of
// "<local", ">local" and "text" strings, adjacent text merged.
func scanTokens(data []byte, bufSize int) ([]string, error) {
	s := newXMLScanner(bytes.NewReader(data), 1<<20)
	s.buf = make([]byte, bufSize)
	var out []string
	for {
		err := s.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		switch s.kind {
		case tokStart:
			out = append(out, "<"+string(s.local))
		case tokEnd:
			out = append(out, ">"+string(s.local))
		case tokText:
			if n := len(out); n > 0 && strings.HasPrefix(out[n-1], "#") {
				out[n-1] += string(s.text)
			} else {
				out = append(out, "#"+string(s.text))
			}
		}
	}
}

// stdTokens is scanTokens with encoding/xml.
func stdTokens(data []byte) ([]string, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	// The scanner reads bytes as UTF-8 whatever the declaration says (its
	// caller converts first): compare like with like.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	var out []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			out = append(out, "<"+t.Name.Local)
		case xml.EndElement:
			out = append(out, ">"+t.Name.Local)
		case xml.CharData:
			if n := len(out); n > 0 && strings.HasPrefix(out[n-1], "#") {
				out[n-1] += string(t)
			} else {
				out = append(out, "#"+string(t))
			}
		}
	}
}

// TestScannerInvalidUTF8: a byte that is not UTF-8 in text, an attribute
// value or a CDATA section becomes U+FFFD and is counted.
func TestScannerInvalidUTF8(t *testing.T) {
	s := newXMLScanner(strings.NewReader("<a b='x\x91y'>Caf\xe9 <![CDATA[\xff]]></a>"), 64<<10)
	var text []string
	for {
		err := s.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.kind == tokStart && len(s.attrs) > 0 {
			text = append(text, string(s.attrs[0].value))
		}
		if s.kind == tokText {
			text = append(text, string(s.text))
		}
	}
	if got, want := strings.Join(text, "|"), "x\uFFFDy|Caf\uFFFD |\uFFFD"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if s.replaced != 3 {
		t.Errorf("%d bytes replaced, want 3", s.replaced)
	}
}

func TestScannerErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"<a>", "XML line 1: document ends inside <a>: truncated"},
		{"<a></b>", "XML line 1: element <a> closed by </b>"},
		{"<a>x &nbsp; y</a>", "XML line 1: invalid entity reference &nbsp;"},
		{"<a>x & y</a>", "XML line 1: unterminated entity reference"},
		{"<a b='1' b='2'/>", "XML line 1: attribute b repeated"},
		{"<a b=1/>", "XML line 1: unquoted attribute value"},
		{"<a/><b/>", "XML line 1: second root element <b>"},
		{"<a/>text", "XML line 1: text outside the root element"},
		{"<a>\x01</a>", "XML line 1: illegal character code U+0001"},
		{"<a\xff/>", "XML line 1: expected element name after <"},
		{"<a><!-- a -- b --></a>", `XML line 1: "--" inside a comment`},
		{"\n\n<a><b", "XML line 3: document ends inside markup: truncated"},
		{"", "XML line 1: no root element"},
		// A DOCTYPE ends where encoding/xml ends it, so that no element can
		// hide in it from one reader and not from the other.
		{"<!DOCTYPE[>]><A/>", "XML line 1: text outside the root element"},
		{"<!DOCTYPE a [<!-- ' -->]><A/><!-- '] --><B/>", "XML line 1: second root element <B>"},
	} {
		_, err := scanTokens([]byte(tt.in), 64<<10)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestScannerMatchesEncodingXML reads every corpus report with the
// scanner and with encoding/xml, through a tiny buffer so that every token
// crosses a buffer boundary somewhere, and compares.
func TestScannerMatchesEncodingXML(t *testing.T) {
	for _, e := range readManifest(t) {
		if e.kind != "aggregate" || !strings.HasSuffix(e.file, ".xml") || e.expect == "error" {
			continue
		}
		data := readTestFile(t, "corpus", e.file)
		data = bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\uFEFF")), " \r\n\t")
		want, stdErr := stdTokens(data)
		for _, size := range []int{16, 64 << 10} {
			got, err := scanTokens(data, size)
			if stdErr != nil {
				// Not well-formed (a report the decoder recovers, such as
				// ikea.com's stray start tag): the scanner refuses it too.
				if err == nil {
					t.Errorf("%s (buffer %d): the scanner reads what encoding/xml refuses (%v)", e.file, size, stdErr)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s (buffer %d): %v", e.file, size, err)
				continue
			}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("%s (buffer %d): tokens differ from encoding/xml", e.file, size)
			}
		}
	}
}

// FuzzScanner: whatever the scanner accepts, encoding/xml accepts too, with
// the same elements and text. (The scanner refuses some things encoding/xml
// lets through: repeated attributes, several roots, text outside the root;
// it lets through an XML declaration of a version other than 1.0.)
func FuzzScanner(f *testing.F) {
	addSeeds(f, 64<<10, "corpus/aggregate")
	for _, s := range []string{"<a>&amp;&#x41;&#66;<![CDATA[<x>]]></a>", "<?xml version='1.0'?><!DOCTYPE a [<!ENTITY x 'y'>]><a b=\"&quot;\"/>", "<a>\r\n\r</a>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := scanTokens(data, 16)
		if err != nil {
			return
		}
		big, err := scanTokens(data, 64<<10)
		if err != nil {
			t.Fatalf("accepted with a 16-byte buffer, refused with 64 KiB: %v", err)
		}
		if strings.Join(got, "\x00") != strings.Join(big, "\x00") {
			t.Fatalf("tokens depend on buffer size:\n%q\n%q", got, big)
		}
		// Bytes that are not UTF-8 are read as U+FFFD, where encoding/xml
		// refuses them: compare with it on the text as the scanner reads it.
		valid, _ := toValidUTF8(data)
		want, err := stdTokens(valid)
		if err != nil && strings.Contains(err.Error(), "unsupported version") {
			return // the scanner does not refuse a declared version other than 1.0
		}
		if err != nil {
			t.Fatalf("scanner accepted what encoding/xml refuses (%v): %q", err, got)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("tokens differ:\nscanner:      %q\nencoding/xml: %q", got, want)
		}
	})
}
