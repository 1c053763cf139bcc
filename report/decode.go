package report

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html/charset"
	"golang.org/x/text/encoding"
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
	s    *xmlScanner
	lim  Limits
	text []byte // scratch buffer for text values

	hdr      *Aggregate
	inRecord bool // Header stopped at a <record> start tag
	records  int
	done     bool
	err      error
	// stray is the dropped wrapper element around <feedback>, if any;
	// closed is set once </feedback> was read inside it.
	stray  string
	closed bool
}

// NewAggregateDecoder returns a decoder reading from r. A UTF-8 byte order
// mark, whitespace before the XML declaration and UTF-16 input are accepted;
// other encodings are converted as the XML declaration names them.
func NewAggregateDecoder(r io.Reader, lim Limits) *AggregateDecoder {
	a := &AggregateDecoder{lim: lim}
	in, err := prepareXML(bufio.NewReaderSize(r, 4<<10))
	a.s = newXMLScanner(in, max(1<<20, 2*lim.MaxTextBytes))
	if err != nil {
		a.s.err = err
	}
	return a
}

// prepareXML returns UTF-8 input for the scanner. It strips what comes
// before the XML declaration in real reports (a UTF-8 byte order mark,
// white space), converts UTF-16 (told by its byte order mark), and converts
// any other encoding that the declaration names.
func prepareXML(br *bufio.Reader) (io.Reader, error) {
	var dec *encoding.Decoder
	switch head, _ := br.Peek(4); {
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}), bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		dec = unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder()
	case bytes.Equal(head, []byte("<\x00?\x00")): // UTF-16LE without a BOM (XML 1.0 Appendix F)
		dec = unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewDecoder()
	case bytes.Equal(head, []byte("\x00<\x00?")):
		dec = unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM).NewDecoder()
	}
	utf16 := dec != nil
	if utf16 {
		br = bufio.NewReaderSize(transform.NewReader(br, dec), 4<<10)
	}
	for {
		r, _, err := br.ReadRune()
		if err != nil {
			return br, nil
		}
		if r != '\uFEFF' && r != ' ' && r != '\t' && r != '\r' && r != '\n' {
			_ = br.UnreadRune()
			break
		}
	}
	label := declaredEncoding(br)
	switch strings.ToLower(label) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return br, nil
	case "utf-16", "utf-16le", "utf-16be", "ucs-2":
		if utf16 {
			return br, nil
		}
	}
	r, err := charset.NewReaderLabel(label, br)
	if err != nil {
		return nil, fmt.Errorf("XML declares encoding %q, which is not supported", truncate(label, 40))
	}
	return r, nil
}

// declaredEncoding returns the encoding named by the XML declaration at the
// start of br, if any.
func declaredEncoding(br *bufio.Reader) string {
	head, _ := br.Peek(256)
	if !bytes.HasPrefix(head, []byte("<?xml")) {
		return ""
	}
	if end := bytes.Index(head, []byte("?>")); end >= 0 {
		head = head[:end]
	}
	i := bytes.Index(head, []byte("encoding"))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(head[i+len("encoding"):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '=' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	q := rest[0]
	end := bytes.IndexByte(rest[1:], q)
	if end < 0 {
		return ""
	}
	return strings.TrimSpace(string(rest[1 : 1+end]))
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
		a.hdr.Repairs.InvalidBytes = a.s.replaced
		a.hdr.Repairs.StrayStartTag = a.stray
		return nil, io.EOF
	}
	if err != nil {
		a.err = a.wrap(err)
		return nil, a.err
	}
	return rec, nil
}

// RecordCount is the number of records returned so far.
func (a *AggregateDecoder) RecordCount() int { return a.records }

// All returns the records one at a time, as Next does, ending after the
// last one; a non-nil error ends the sequence.
func (a *AggregateDecoder) All() iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		for {
			rec, err := a.Next()
			if err == io.EOF {
				return
			}
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

// wrap adds the line to an error of the report's content. Well-formedness
// errors carry their line already; errors of the container (gzip, zip)
// are not about the XML and are returned as they are.
func (a *AggregateDecoder) wrap(err error) error {
	var cErr *containerError
	var sErr *scanError
	if errors.As(err, &cErr) || errors.As(err, &sErr) {
		return err
	}
	return fmt.Errorf("XML line %d: %w", a.s.line, err)
}

// token moves to the next start tag, end tag or text run, and checks depth.
func (a *AggregateDecoder) token() (tokKind, error) {
	if err := a.s.next(); err != nil {
		return tokNone, err
	}
	if a.stray != "" && (a.closed || a.s.depth() <= 1) {
		// Outside <feedback>, inside the stray wrapper: after </feedback>
		// only white space and the wrapper's own end may follow.
		switch {
		case !a.closed && a.s.kind == tokEnd:
			a.closed = true
		case a.closed && (a.s.kind == tokText && len(bytes.TrimSpace(a.s.text)) == 0 || a.s.kind == tokEnd):
			return a.token()
		case a.closed:
			return tokNone, fmt.Errorf("content after </feedback> inside the unclosed <%s>: %w", a.stray, ErrInvalid)
		}
	}
	if a.s.kind == tokStart && a.s.depth() > a.lim.MaxXMLDepth {
		return tokNone, fmt.Errorf("elements nested deeper than %d: %w", a.lim.MaxXMLDepth, ErrLimit)
	}
	return a.s.kind, nil
}

// skip reads up to and including the end of the element just opened.
func (a *AggregateDecoder) skip() error {
	depth := a.s.depth()
	for a.s.depth() >= depth {
		if _, err := a.token(); err != nil {
			return err
		}
	}
	return nil
}

// textOf reads the text content of the element just opened, up to and
// including its end tag, trimmed. Child elements are skipped.
func (a *AggregateDecoder) textOf() (string, error) {
	depth := a.s.depth()
	a.text = a.text[:0]
	for {
		kind, err := a.token()
		if err != nil {
			return "", err
		}
		switch kind {
		case tokText:
			if a.s.depth() == depth {
				if len(a.text)+len(a.s.text) > a.lim.MaxTextBytes {
					return "", fmt.Errorf("text longer than %d bytes: %w", a.lim.MaxTextBytes, ErrLimit)
				}
				a.text = append(a.text, a.s.text...)
			}
		case tokEnd:
			if a.s.depth() < depth {
				return string(bytes.TrimSpace(a.text)), nil
			}
		}
	}
}

// children calls fn for each child element of the element just opened,
// with the scanner on the child's start tag; fn must consume the child, up
// to and including its end tag. The child's name is a.name().
func (a *AggregateDecoder) children(fn func() error) error {
	depth := a.s.depth()
	for {
		kind, err := a.token()
		if err != nil {
			return err
		}
		switch kind {
		case tokStart:
			if err := fn(); err != nil {
				return err
			}
		case tokEnd:
			if a.s.depth() < depth {
				return nil
			}
		}
	}
}

// name is the local name of the current element.
func (a *AggregateDecoder) name() string { return string(a.s.local) }

func (a *AggregateDecoder) readHeader() error {
	if err := a.root(); err != nil {
		return err
	}
	var sawMeta, sawPolicy, sawRange bool
	for {
		kind, err := a.token()
		if err != nil {
			return err
		}
		switch kind {
		case tokEnd: // </feedback>: a report without records
			return a.checkHeader(sawMeta, sawPolicy, sawRange)
		case tokStart:
			switch string(a.s.local) {
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
				if err := a.readExtensions(&a.hdr.Extensions); err != nil {
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

// root finds the document element, checks that it is <feedback> and notes
// its namespace.
func (a *AggregateDecoder) root() error {
	for {
		kind, err := a.token()
		if err == io.EOF {
			return fmt.Errorf("no XML element: %w", ErrNotAggregate)
		}
		if err != nil {
			return err
		}
		if kind != tokStart {
			continue // white space: the scanner refuses other text here
		}
		if string(a.s.local) != "feedback" {
			if err := a.strayRoot(); err != nil {
				return err
			}
		}
		prefix, _, ok := bytes.Cut(a.s.qname, []byte(":"))
		for _, at := range a.s.attrs {
			if !ok && string(at.qname) == "xmlns" || ok && bytes.HasPrefix(at.qname, []byte("xmlns:")) && bytes.Equal(at.qname[6:], prefix) {
				a.hdr.Namespace = truncate(string(at.value), 200)
			}
		}
		return nil
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
	err = a.children(func() error {
		var err error
		switch string(a.s.local) {
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
	err := a.children(func() error {
		var t *time.Time
		name := "begin"
		switch string(a.s.local) {
		case "begin":
			t, sawBegin = &m.Begin, true
		case "end":
			t, sawEnd, name = &m.End, true, "end"
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
	return a.children(func() error {
		field := policyField(a.s.local)
		if field == "" {
			return a.skip()
		}
		s, err := a.textOf()
		if err != nil {
			return err
		}
		switch field {
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

// policyField returns the name of a policy_published element this package
// reads, or "".
func policyField(local []byte) string {
	switch string(local) {
	case "domain":
		return "domain"
	case "adkim":
		return "adkim"
	case "aspf":
		return "aspf"
	case "p":
		return "p"
	case "sp":
		return "sp"
	case "np":
		return "np"
	case "pct":
		return "pct"
	case "fo":
		return "fo"
	case "testing":
		return "testing"
	case "discovery_method":
		return "discovery_method"
	}
	return ""
}

// nextRecord reads up to and including the next record, or returns io.EOF
// once the document has ended soundly.
func (a *AggregateDecoder) nextRecord() (*Record, error) {
	if a.inRecord {
		a.inRecord = false
		return a.readRecord()
	}
	for {
		kind, err := a.token()
		if err != nil {
			return nil, err // io.EOF only when the document ended soundly
		}
		if kind != tokStart {
			continue
		}
		switch string(a.s.local) {
		case "record":
			return a.readRecord()
		case "extensions", "extension":
			if err := a.readExtensions(&a.hdr.Extensions); err != nil {
				return nil, err
			}
		case "report_metadata", "policy_published":
			return nil, fmt.Errorf("<%s> after the first record: %w", a.s.local, ErrInvalid)
		default:
			if err := a.skip(); err != nil {
				return nil, err
			}
		}
	}
}

// strayRoot accepts a root element that is not <feedback> when it is a
// stray start tag: one that <feedback> follows at once and that never
// closes, so that dropping it leaves a well-formed <feedback> document
// (ikea.com's reports open an <xs:schema> first). It reads up to the
// <feedback> start tag.
func (a *AggregateDecoder) strayRoot() error {
	wrapper := truncate(string(a.s.qname), 40)
	notFeedback := fmt.Errorf("root element is <%s>, not <feedback>: %w", wrapper, ErrNotAggregate)
	if a.s.pendingEnd {
		return notFeedback // <x/>: nothing inside
	}
	for {
		if err := a.s.next(); err != nil {
			return notFeedback
		}
		switch {
		case a.s.kind == tokText && len(bytes.TrimSpace(a.s.text)) == 0:
			continue
		case a.s.kind == tokStart && string(a.s.local) == "feedback" && a.s.depth() == 2:
			a.stray = wrapper
			a.s.openAtEOF = true
			return nil
		}
		return notFeedback
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
	err := a.children(func() error {
		switch string(a.s.local) {
		case "row":
			return a.children(func() error {
				var err error
				switch string(a.s.local) {
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
			return a.children(func() error {
				var dst *string
				switch string(a.s.local) {
				case "header_from":
					dst = &rec.HeaderFrom
				case "envelope_from":
					dst = &rec.EnvelopeFrom
				case "envelope_to":
					dst = &rec.EnvelopeTo
				default:
					return a.skip()
				}
				s, err := a.textOf()
				*dst = normDomain(s)
				return err
			})
		case "auth_results":
			return a.children(func() error {
				switch string(a.s.local) {
				case "dkim":
					return a.readDKIMAuth(rec)
				case "spf":
					return a.readSPFAuth(rec)
				}
				return a.skip()
			})
		case "extensions", "extension":
			return a.readExtensions(&rec.Extensions)
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
	count = strings.TrimSpace(count)
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
	rec.BadCount = len(problems) > 0
	if addr, ok := ParseSourceIP(ip); ok {
		rec.SourceIP = addr
	} else {
		rec.BadSourceIP = true
		if strings.TrimSpace(ip) == "" {
			problems = append(problems, "source_ip missing")
		} else {
			problems = append(problems, fmt.Sprintf("source_ip %q is not an IP address", truncate(ip, 60)))
		}
	}
	if rec.BadCount {
		rec.Count = 0
	}
	if len(problems) > 0 {
		rec.Problem = strings.Join(problems, "; ")
	}
}

// ParseSourceIP reads a record's source_ip, with the forms reporters
// write that net/netip refuses but whose meaning is plain: surrounding
// whitespace, brackets around an IPv6 address (without a zone), and IPv4
// octets with leading zeros (192.000.002.010), alone or IPv4-mapped
// (::ffff:192.000.002.010), read as decimal. An IPv4-mapped address is
// returned as IPv4. Zones are refused: they mean nothing off the host.
func ParseSourceIP(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	if s == "" || strings.ContainsRune(s, '%') {
		return netip.Addr{}, false
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap(), true
	}
	v4 := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		if !strings.EqualFold(s[:i+1], "::ffff:") && !strings.EqualFold(s[:i+1], "0:0:0:0:0:ffff:") {
			return netip.Addr{}, false
		}
		v4 = s[i+1:]
	}
	var b [4]byte
	parts := strings.Split(v4, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return netip.Addr{}, false
		}
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

func (a *AggregateDecoder) readPolicyEvaluated(rec *Record) error {
	return a.children(func() error {
		switch string(a.s.local) {
		case "reason":
			var r Reason
			err := a.children(func() error {
				var dst *string
				var s string
				switch string(a.s.local) {
				case "type":
					dst = &s
				case "comment":
					dst = &r.Comment
				default:
					return a.skip()
				}
				v, err := a.textOf()
				*dst = v
				if dst == &s {
					r.Type = ParseReasonType(s)
				}
				return err
			})
			if err == nil && len(rec.Reasons) < 20 {
				rec.Reasons = append(rec.Reasons, r)
			}
			return err
		case "disposition":
			s, err := a.textOf()
			rec.Disposition = ParseDisposition(s)
			return err
		case "dkim":
			s, err := a.textOf()
			rec.DKIM = ParseDMARCResult(s)
			return err
		case "spf":
			s, err := a.textOf()
			rec.SPF = ParseDMARCResult(s)
			return err
		}
		return a.skip()
	})
}

// maxAuthResults bounds the auth results kept per record.
const maxAuthResults = 20

func (a *AggregateDecoder) readDKIMAuth(rec *Record) error {
	var r DKIMAuth
	err := a.children(func() error {
		var err error
		var s string
		switch string(a.s.local) {
		case "domain":
			s, err = a.textOf()
			r.Domain = normDomain(s)
		case "selector":
			r.Selector, err = a.textOf()
		case "result":
			s, err = a.textOf()
			r.Result = ParseDKIMResult(s)
		case "human_result":
			r.HumanResult, err = a.textOf()
		default:
			err = a.skip()
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
	err := a.children(func() error {
		var err error
		var s string
		switch string(a.s.local) {
		case "domain":
			s, err = a.textOf()
			r.Domain = normDomain(s)
		case "scope":
			s, err = a.textOf()
			r.Scope = ParseSPFScope(s)
		case "result":
			s, err = a.textOf()
			r.Result = ParseSPFResult(s)
		case "human_result":
			r.HumanResult, err = a.textOf()
		default:
			err = a.skip()
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

// readExtensions reads an <extensions> container or a bare <extension>;
// the scanner is on its start tag.
func (a *AggregateDecoder) readExtensions(out *[]Extension) error {
	if string(a.s.local) == "extension" {
		return a.readExtension(out)
	}
	return a.children(func() error { return a.readExtension(out) })
}

// readExtension keeps the element opaque: its name and definition
// attributes and its content, re-serialised, up to MaxExtensionBytes.
func (a *AggregateDecoder) readExtension(out *[]Extension) error {
	ext := Extension{}
	for _, at := range a.s.attrs {
		switch string(localName(at.qname)) {
		case "name":
			ext.Name = truncate(string(at.value), 200)
		case "definition":
			ext.Definition = truncate(string(at.value), 500)
		}
	}
	if string(a.s.local) != "extension" && ext.Name == "" {
		ext.Name = truncate(string(a.s.local), 200)
	}
	var b strings.Builder
	depth := a.s.depth()
	for a.s.depth() >= depth {
		kind, err := a.token()
		if err != nil {
			return err
		}
		if b.Len() > a.lim.MaxExtensionBytes {
			continue
		}
		switch kind {
		case tokStart:
			b.WriteString("<")
			b.Write(a.s.qname)
			for _, at := range a.s.attrs {
				b.WriteString(" ")
				b.Write(at.qname)
				b.WriteString(`="`)
				b.WriteString(xmlEscaper.Replace(string(at.value)))
				b.WriteString(`"`)
			}
			b.WriteString(">")
		case tokEnd:
			if a.s.depth() >= depth {
				b.WriteString("</")
				b.Write(a.s.qname)
				b.WriteString(">")
			}
		case tokText:
			b.WriteString(xmlEscaper.Replace(string(a.s.text)))
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
