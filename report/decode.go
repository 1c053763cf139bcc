package report

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html/charset"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// AggregateDecoder reads one aggregate report from a stream of XML tokens,
// holding only the record being read: a report of any size is read in
// constant memory. Call Header once, then Next until it returns io.EOF.
//
// Well-formedness is checked as the tokens go by, so an error may come after
// records were returned: a caller that counts records must keep them
// pending until Next returns io.EOF.
type AggregateDecoder struct {
	d     *xml.Decoder
	lim   Limits
	stack []string // local names of the open elements
	text  []byte   // scratch buffer for text values

	hdr        *Aggregate
	inRecord   bool // Header stopped at a <record> start tag
	records    int
	done       bool
	err        error
	utf16Input bool
}

// NewAggregateDecoder returns a decoder reading from r. A UTF-8 byte order
// mark, whitespace before the XML declaration and UTF-16 input are accepted;
// other encodings are converted as the XML declaration names them.
func NewAggregateDecoder(r io.Reader, lim Limits) *AggregateDecoder {
	a := &AggregateDecoder{lim: lim}
	br := bufio.NewReaderSize(r, 64<<10)
	a.d = xml.NewDecoder(a.prepare(br))
	a.d.CharsetReader = a.charsetReader
	return a
}

// prepare strips what encoding/xml refuses before the XML declaration: a
// UTF-8 BOM and leading whitespace. UTF-16 input (with its BOM) is converted
// to UTF-8 here, so the declaration's encoding="UTF-16" must then be ignored.
func (a *AggregateDecoder) prepare(br *bufio.Reader) io.Reader {
	head, _ := br.Peek(2)
	if bytes.Equal(head, []byte{0xFE, 0xFF}) || bytes.Equal(head, []byte{0xFF, 0xFE}) {
		a.utf16Input = true
		dec := unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder()
		return trimLeading(bufio.NewReader(transform.NewReader(br, dec)))
	}
	return trimLeading(br)
}

func trimLeading(br *bufio.Reader) io.Reader {
	for {
		r, _, err := br.ReadRune()
		if err != nil {
			return br
		}
		if r == '\uFEFF' || r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			continue
		}
		_ = br.UnreadRune()
		return br
	}
}

func (a *AggregateDecoder) charsetReader(label string, input io.Reader) (io.Reader, error) {
	l := strings.ToLower(strings.TrimSpace(label))
	if a.utf16Input && strings.HasPrefix(l, "utf-16") {
		return input, nil
	}
	r, err := charset.NewReaderLabel(l, input)
	if err != nil {
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	return r, nil
}

// Header reads the report up to its first record and returns everything
// before it. It fails when the document is not an aggregate report or when
// a value the report cannot do without is wrong: see the package comment.
func (a *AggregateDecoder) Header() (*Aggregate, error) {
	if a.hdr != nil || a.err != nil {
		return a.hdr, a.err
	}
	a.hdr = &Aggregate{}
	if err := a.readHeader(); err != nil {
		a.err = a.wrap(err)
		return nil, a.err
	}
	return a.hdr, nil
}

// Next returns the next record. After the last record it reads the rest of
// the document and returns io.EOF if the whole document was sound.
func (a *AggregateDecoder) Next() (*Record, error) {
	if a.hdr == nil && a.err == nil {
		if _, err := a.Header(); err != nil {
			return nil, err
		}
	}
	if a.err != nil {
		return nil, a.err
	}
	if a.done {
		return nil, io.EOF
	}
	rec, err := a.nextRecord()
	if err == io.EOF {
		a.done = true
		return nil, io.EOF
	}
	if err != nil {
		a.err = a.wrap(err)
		return nil, a.err
	}
	return rec, nil
}

// Records returned so far.
func (a *AggregateDecoder) Records() int { return a.records }

func (a *AggregateDecoder) wrap(err error) error {
	var cErr *containerError
	if errors.As(err, &cErr) {
		return err // the container broke, not the XML
	}
	line, col := a.d.InputPos()
	var synErr *xml.SyntaxError
	if errors.As(err, &synErr) {
		return fmt.Errorf("XML line %d: %s", synErr.Line, synErr.Msg)
	}
	return fmt.Errorf("XML line %d, column %d: %w", line, col, err)
}

// token returns the next start, end or character data token, checking that
// tags nest and match and that nesting stays within bounds.
func (a *AggregateDecoder) token() (xml.Token, error) {
	for {
		tok, err := a.d.RawToken()
		if err == io.EOF {
			if len(a.stack) > 0 {
				return nil, fmt.Errorf("document ends inside <%s>: truncated", a.stack[len(a.stack)-1])
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(a.stack) >= a.lim.MaxXMLDepth {
				return nil, fmt.Errorf("elements nested deeper than %d: %w", a.lim.MaxXMLDepth, ErrLimit)
			}
			a.stack = append(a.stack, t.Name.Local)
			return t, nil
		case xml.EndElement:
			if len(a.stack) == 0 {
				return nil, fmt.Errorf("unexpected end tag </%s>", t.Name.Local)
			}
			open := a.stack[len(a.stack)-1]
			if open != t.Name.Local {
				return nil, fmt.Errorf("element <%s> closed by </%s>", open, t.Name.Local)
			}
			a.stack = a.stack[:len(a.stack)-1]
			return t, nil
		case xml.CharData:
			return t, nil
		}
		// Comments, processing instructions and directives carry no data.
	}
}

// skip reads up to and including the end of the element just opened.
func (a *AggregateDecoder) skip() error {
	depth := len(a.stack)
	for len(a.stack) >= depth {
		if _, err := a.token(); err != nil {
			return err
		}
	}
	return nil
}

// textOf reads the text content of the element just opened, up to and
// including its end tag, trimmed. Child elements are skipped.
func (a *AggregateDecoder) textOf() (string, error) {
	depth := len(a.stack)
	a.text = a.text[:0]
	for {
		tok, err := a.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(a.stack) == depth {
				if len(a.text)+len(t) > a.lim.MaxTextBytes {
					return "", fmt.Errorf("<%s> text longer than %d bytes: %w", a.stack[depth-1], a.lim.MaxTextBytes, ErrLimit)
				}
				a.text = append(a.text, t...)
			}
		case xml.EndElement:
			if len(a.stack) < depth {
				return string(bytes.TrimSpace(a.text)), nil
			}
		}
	}
}

// children calls fn for each child element of the element just opened;
// fn must consume the child, up to and including its end tag.
func (a *AggregateDecoder) children(fn func(name string, start xml.StartElement) error) error {
	depth := len(a.stack)
	for {
		tok, err := a.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t.Name.Local, t); err != nil {
				return err
			}
		case xml.EndElement:
			if len(a.stack) < depth {
				return nil
			}
		}
	}
}

func (a *AggregateDecoder) readHeader() error {
	root, err := a.root()
	if err != nil {
		return err
	}
	for _, at := range root.Attr {
		if at.Name.Space == "" && at.Name.Local == "xmlns" || at.Name.Space == "xmlns" && at.Name.Local == root.Name.Space {
			a.hdr.Namespace = at.Value
		}
	}
	var sawMeta, sawPolicy, sawRange bool
	for {
		tok, err := a.token()
		if err == io.EOF {
			return fmt.Errorf("document ends inside <feedback>: truncated")
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement: // </feedback>: a report without records
			return a.checkHeader(sawMeta, sawPolicy, sawRange)
		case xml.StartElement:
			switch t.Name.Local {
			case "version":
				if a.hdr.Version, err = a.textOf(); err != nil {
					return err
				}
			case "report_metadata":
				if sawMeta {
					return fmt.Errorf("second <report_metadata>: %w", ErrInvalid)
				}
				sawMeta = true
				if sawRange, err = a.readMetadata(&a.hdr.Metadata); err != nil {
					return err
				}
			case "policy_published":
				if sawPolicy {
					return fmt.Errorf("second <policy_published>: %w", ErrInvalid)
				}
				sawPolicy = true
				if err := a.readPolicy(&a.hdr.Policy); err != nil {
					return err
				}
			case "extensions", "extension":
				if err := a.readExtensions(t, &a.hdr.Extensions); err != nil {
					return err
				}
			case "record":
				a.inRecord = true
				return a.checkHeader(sawMeta, sawPolicy, sawRange)
			default:
				if err := a.skip(); err != nil {
					return err
				}
			}
		}
	}
}

// root finds the document element and checks that it is <feedback>.
func (a *AggregateDecoder) root() (xml.StartElement, error) {
	for {
		tok, err := a.token()
		if err == io.EOF {
			return xml.StartElement{}, fmt.Errorf("no XML element: %w", ErrNotAggregate)
		}
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "feedback" {
				return t, fmt.Errorf("root element is <%s>, not <feedback>: %w", t.Name.Local, ErrNotAggregate)
			}
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, fmt.Errorf("text before the root element: %w", ErrNotAggregate)
			}
		}
	}
}

// checkHeader applies the rules of the package comment to the header.
func (a *AggregateDecoder) checkHeader(sawMeta, sawPolicy, sawRange bool) error {
	m, p := &a.hdr.Metadata, &a.hdr.Policy
	switch {
	case !sawMeta:
		return fmt.Errorf("no <report_metadata> before the first record: %w", ErrInvalid)
	case !sawPolicy:
		return fmt.Errorf("no <policy_published> before the first record: %w", ErrInvalid)
	case m.ReportID == "":
		return fmt.Errorf("report_metadata has no report_id: %w", ErrInvalid)
	case !sawRange:
		return fmt.Errorf("report_metadata has no date_range: %w", ErrInvalid)
	case m.Begin.After(m.End):
		return fmt.Errorf("date_range begins (%s) after it ends (%s): %w",
			m.Begin.Format(time.RFC3339), m.End.Format(time.RFC3339), ErrInvalid)
	case p.Domain == "":
		return fmt.Errorf("policy_published has no domain: %w", ErrInvalid)
	}
	return nil
}

func (a *AggregateDecoder) readMetadata(m *Metadata) (sawRange bool, err error) {
	err = a.children(func(name string, _ xml.StartElement) error {
		var err error
		switch name {
		case "org_name":
			m.OrgName, err = a.textOf()
		case "email":
			m.Email, err = a.textOf()
		case "extra_contact_info":
			m.ExtraContactInfo, err = a.textOf()
		case "report_id":
			m.ReportID, err = a.textOf()
		case "generator":
			m.Generator, err = a.textOf()
		case "error":
			var s string
			if s, err = a.textOf(); err == nil && s != "" && len(m.Errors) < 100 {
				m.Errors = append(m.Errors, s)
			}
		case "date_range":
			sawRange = true
			err = a.readDateRange(m)
		default:
			err = a.skip()
		}
		return err
	})
	return sawRange, err
}

func (a *AggregateDecoder) readDateRange(m *Metadata) error {
	var sawBegin, sawEnd bool
	err := a.children(func(name string, _ xml.StartElement) error {
		var t *time.Time
		switch name {
		case "begin":
			t, sawBegin = &m.Begin, true
		case "end":
			t, sawEnd = &m.End, true
		default:
			return a.skip()
		}
		s, err := a.textOf()
		if err != nil {
			return err
		}
		if *t, err = parseTimestamp(s); err != nil {
			return fmt.Errorf("date_range/%s: %w", name, err)
		}
		return nil
	})
	if err == nil && (!sawBegin || !sawEnd) {
		err = fmt.Errorf("date_range lacks begin or end: %w", ErrInvalid)
	}
	return err
}

// parseTimestamp reads a date_range value: seconds since the epoch (RFC
// 7489), also written with a fraction; an RFC 3339 date-time is accepted too.
func parseTimestamp(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<40 {
			return time.Time{}, fmt.Errorf("timestamp %d out of range: %w", n, ErrInvalid)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		if f < 0 || f > 1<<40 {
			return time.Time{}, fmt.Errorf("timestamp %q out of range: %w", s, ErrInvalid)
		}
		return time.Unix(int64(f), 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not a number of seconds: %w", truncate(s, 40), ErrInvalid)
}

func (a *AggregateDecoder) readPolicy(p *PolicyPublished) error {
	return a.children(func(name string, _ xml.StartElement) error {
		switch name {
		case "domain", "adkim", "aspf", "p", "sp", "np", "pct", "fo", "testing", "discovery_method":
		default:
			return a.skip()
		}
		s, err := a.textOf()
		if err != nil {
			return err
		}
		switch name {
		case "domain":
			p.Domain = normDomain(s)
		case "adkim":
			p.ADKIM = ParseAlignment(s)
		case "aspf":
			p.ASPF = ParseAlignment(s)
		case "p":
			p.P = ParsePolicy(s)
		case "sp":
			p.SP = ParsePolicy(s)
		case "np":
			p.NP = ParsePolicy(s)
		case "pct":
			// A pct that is not a percentage is dropped: it changes no count.
			if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 100 {
				p.Pct = &n
			}
		case "fo":
			p.FO = s
		case "testing":
			p.Testing = ParseTesting(s)
		case "discovery_method":
			p.DiscoveryMethod = ParseDiscoveryMethod(s)
		}
		return nil
	})
}

// nextRecord reads up to and including the next record, or returns io.EOF
// once the document has ended soundly.
func (a *AggregateDecoder) nextRecord() (*Record, error) {
	if a.inRecord {
		a.inRecord = false
		return a.readRecord()
	}
	for {
		tok, err := a.token()
		if err != nil {
			return nil, err // io.EOF only when every element was closed
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(a.stack) == 1 {
				return nil, fmt.Errorf("second root element <%s> after </feedback>", t.Name.Local)
			}
			switch t.Name.Local {
			case "record":
				return a.readRecord()
			case "extensions", "extension":
				if err := a.readExtensions(t, &a.hdr.Extensions); err != nil {
					return nil, err
				}
			case "report_metadata", "policy_published":
				return nil, fmt.Errorf("<%s> after the first record: %w", t.Name.Local, ErrInvalid)
			default:
				if err := a.skip(); err != nil {
					return nil, err
				}
			}
		case xml.CharData:
			if len(a.stack) == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("text after </feedback>")
			}
		}
	}
}

func (a *AggregateDecoder) readRecord() (*Record, error) {
	a.records++
	if a.records > a.lim.MaxRecords {
		return nil, fmt.Errorf("more than %d records: %w", a.lim.MaxRecords, ErrLimit)
	}
	rec := &Record{}
	var count, ip string
	var sawCount bool
	err := a.children(func(name string, start xml.StartElement) error {
		switch name {
		case "row":
			return a.children(func(name string, _ xml.StartElement) error {
				var err error
				switch name {
				case "source_ip":
					ip, err = a.textOf()
				case "count":
					sawCount = true
					count, err = a.textOf()
				case "policy_evaluated":
					err = a.readPolicyEvaluated(rec)
				default:
					err = a.skip()
				}
				return err
			})
		case "identifiers", "identities": // "identities": gcisdns.net and other early reporters
			return a.children(func(name string, _ xml.StartElement) error {
				var err error
				var s string
				switch name {
				case "header_from", "envelope_from", "envelope_to":
					s, err = a.textOf()
				default:
					return a.skip()
				}
				switch name {
				case "header_from":
					rec.HeaderFrom = normDomain(s)
				case "envelope_from":
					rec.EnvelopeFrom = normDomain(s)
				case "envelope_to":
					rec.EnvelopeTo = normDomain(s)
				}
				return err
			})
		case "auth_results":
			return a.children(func(name string, _ xml.StartElement) error {
				switch name {
				case "dkim":
					return a.readDKIMAuth(rec)
				case "spf":
					return a.readSPFAuth(rec)
				}
				return a.skip()
			})
		case "extensions", "extension":
			return a.readExtensions(start, &rec.Extensions)
		}
		return a.skip()
	})
	if err != nil {
		return nil, err
	}
	a.checkRecord(rec, ip, count, sawCount)
	return rec, nil
}

// checkRecord sets SourceIP and Count, or flags the record with a Problem.
func (a *AggregateDecoder) checkRecord(rec *Record, ip, count string, sawCount bool) {
	var problems []string
	switch {
	case !sawCount || count == "":
		problems = append(problems, "count missing")
	default:
		n, err := strconv.ParseUint(count, 10, 64)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("count %q is not a non-negative integer", truncate(count, 40)))
		case n > a.lim.MaxCount:
			problems = append(problems, fmt.Sprintf("count %d larger than %d", n, a.lim.MaxCount))
		default:
			rec.Count = n
		}
	}
	if ip == "" {
		problems = append(problems, "source_ip missing")
	} else if addr, err := netip.ParseAddr(ip); err != nil {
		problems = append(problems, fmt.Sprintf("source_ip %q is not an IP address", truncate(ip, 60)))
	} else {
		rec.SourceIP = addr.Unmap().WithZone("")
	}
	if len(problems) > 0 {
		rec.Count = 0
		rec.Problem = strings.Join(problems, "; ")
	}
}

func (a *AggregateDecoder) readPolicyEvaluated(rec *Record) error {
	return a.children(func(name string, _ xml.StartElement) error {
		if name == "reason" {
			var r Reason
			err := a.children(func(name string, _ xml.StartElement) error {
				s, err := a.textOf()
				switch name {
				case "type":
					r.Type = ParseReasonType(s)
				case "comment":
					r.Comment = s
				}
				return err
			})
			if err == nil && len(rec.Reasons) < 20 {
				rec.Reasons = append(rec.Reasons, r)
			}
			return err
		}
		s, err := a.textOf()
		switch name {
		case "disposition":
			rec.Disposition = ParseDisposition(s)
		case "dkim":
			rec.DKIM = ParseDMARCResult(s)
		case "spf":
			rec.SPF = ParseDMARCResult(s)
		}
		return err
	})
}

// maxAuthResults bounds the auth results kept per record.
const maxAuthResults = 20

func (a *AggregateDecoder) readDKIMAuth(rec *Record) error {
	var r DKIMAuth
	err := a.children(func(name string, _ xml.StartElement) error {
		s, err := a.textOf()
		switch name {
		case "domain":
			r.Domain = normDomain(s)
		case "selector":
			r.Selector = s
		case "result":
			r.Result = ParseDKIMResult(s)
		case "human_result":
			r.HumanResult = s
		}
		return err
	})
	if err == nil && len(rec.DKIMResults) < maxAuthResults {
		rec.DKIMResults = append(rec.DKIMResults, r)
	}
	return err
}

func (a *AggregateDecoder) readSPFAuth(rec *Record) error {
	var r SPFAuth
	err := a.children(func(name string, _ xml.StartElement) error {
		s, err := a.textOf()
		switch name {
		case "domain":
			r.Domain = normDomain(s)
		case "scope":
			r.Scope = ParseSPFScope(s)
		case "result":
			r.Result = ParseSPFResult(s)
		case "human_result":
			r.HumanResult = s
		}
		return err
	})
	if err == nil && len(rec.SPFResults) < maxAuthResults {
		rec.SPFResults = append(rec.SPFResults, r)
	}
	return err
}

// maxExtensions bounds the extensions kept per report or record.
const maxExtensions = 20

// readExtensions reads an <extensions> container or a bare <extension>.
func (a *AggregateDecoder) readExtensions(start xml.StartElement, out *[]Extension) error {
	if start.Name.Local == "extension" {
		return a.readExtension(start, out)
	}
	return a.children(func(_ string, start xml.StartElement) error {
		return a.readExtension(start, out)
	})
}

// readExtension keeps the element opaque: its name and definition
// attributes and its content, re-serialised, up to MaxExtensionBytes.
func (a *AggregateDecoder) readExtension(start xml.StartElement, out *[]Extension) error {
	ext := Extension{}
	for _, at := range start.Attr {
		switch at.Name.Local {
		case "name":
			ext.Name = truncate(at.Value, 200)
		case "definition":
			ext.Definition = truncate(at.Value, 500)
		}
	}
	if start.Name.Local != "extension" && ext.Name == "" {
		ext.Name = start.Name.Local
	}
	var b strings.Builder
	depth := len(a.stack)
	for len(a.stack) >= depth {
		tok, err := a.token()
		if err != nil {
			return err
		}
		if b.Len() > a.lim.MaxExtensionBytes {
			continue
		}
		switch t := tok.(type) {
		case xml.StartElement:
			b.WriteString("<" + qname(t.Name))
			for _, at := range t.Attr {
				b.WriteString(" " + qname(at.Name) + `="`)
				b.WriteString(xmlEscaper.Replace(at.Value))
				b.WriteString(`"`)
			}
			b.WriteString(">")
		case xml.EndElement:
			if len(a.stack) >= depth {
				b.WriteString("</" + qname(t.Name) + ">")
			}
		case xml.CharData:
			b.WriteString(xmlEscaper.Replace(string(t)))
		}
	}
	if len(*out) < maxExtensions {
		ext.XML = truncate(strings.TrimSpace(b.String()), a.lim.MaxExtensionBytes)
		*out = append(*out, ext)
	}
	return nil
}

// xmlEscaper escapes text for re-serialised XML, keeping white space as it is.
var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// normDomain lower-cases a domain and drops a trailing dot.
func normDomain(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
