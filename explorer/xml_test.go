package explorer

import (
	"compress/gzip"
	"io"
	"os"
	"strings"
	"testing"
)

func TestPrettyXML(t *testing.T) {
	// An RFC 9990 report with a namespace, from the corpus.
	f, err := os.Open("../testdata/corpus/aggregate/dmarcgo__rfc9990-modern-synthetic.xml.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	got := prettyXML(raw)
	for _, want := range []string{"<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">", "\n  <report_metadata>", "\n    <org_name>Example Mail Receiver</org_name>", "</feedback>\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("pretty XML lacks %q:\n%s", want, got)
		}
	}
	// Compact input is indented; text and attributes are escaped.
	got = prettyXML([]byte(`<?xml version="1.0"?><a><b x="1&amp;2">t &lt; u</b><c/></a>`))
	want := "<?xml version=\"1.0\"?>\n<a>\n  <b x=\"1&amp;2\">t &lt; u</b>\n  <c></c>\n</a>\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// What is not XML is shown as it is.
	if got := prettyXML([]byte("not <xml")); got != "not <xml" {
		t.Errorf("broken XML shown as %q", got)
	}
}
