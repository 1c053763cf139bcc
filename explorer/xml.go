package explorer

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"

	"golang.org/x/net/html/charset"
)

// prettyXML indents an XML report for reading: one element per line, an
// element holding only text on one line, namespace prefixes as written.
// It returns the text unchanged when it does not read as XML: the view
// shows the original either way.
func prettyXML(raw []byte) string {
	d := xml.NewDecoder(bytes.NewReader(raw))
	d.CharsetReader = charset.NewReaderLabel
	d.Strict = false
	var toks []xml.Token
	for {
		t, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return string(raw)
		}
		toks = append(toks, xml.CopyToken(t))
	}
	var b strings.Builder
	depth := 0
	line := func() {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("  ", depth))
	}
	name := func(n xml.Name) string {
		if n.Space != "" {
			return n.Space + ":" + n.Local
		}
		return n.Local
	}
	for i := 0; i < len(toks); i++ {
		switch t := toks[i].(type) {
		case xml.ProcInst:
			line()
			b.WriteString("<?" + t.Target + " " + string(t.Inst) + "?>")
		case xml.Comment:
			line()
			b.WriteString("<!--" + string(t) + "-->")
		case xml.StartElement:
			line()
			b.WriteString("<" + name(t.Name))
			for _, a := range t.Attr {
				b.WriteString(" " + name(a.Name) + `="`)
				xml.EscapeText(&b, []byte(a.Value))
				b.WriteString(`"`)
			}
			b.WriteString(">")
			// <a>text</a> and <a></a> stay on one line.
			j := i + 1
			var text []byte
			if j < len(toks) {
				if c, ok := toks[j].(xml.CharData); ok {
					text = bytes.TrimSpace(c)
					j++
				}
			}
			if j < len(toks) {
				if _, ok := toks[j].(xml.EndElement); ok {
					xml.EscapeText(&b, text)
					b.WriteString("</" + name(t.Name) + ">")
					i = j
					continue
				}
			}
			depth++
		case xml.EndElement:
			depth--
			line()
			b.WriteString("</" + name(t.Name) + ">")
		case xml.CharData:
			if s := bytes.TrimSpace(t); len(s) > 0 {
				line()
				xml.EscapeText(&b, s)
			}
		}
	}
	return b.String() + "\n"
}
