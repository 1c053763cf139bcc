package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// xmlScanner is a small, strict XML tokenizer for reports. encoding/xml
// allocates an interface value, a name and often a copy of the text for
// every token, which makes it slower than the reports it reads arrive; this
// scanner returns views into its buffer instead and allocates nothing per
// token once warmed up.
//
// It checks well-formedness as XML 1.0 defines it, except what needs a DTD:
// tags nest and match, names and attributes are well-formed and not
// repeated, text and attribute values hold only characters XML allows
// (a byte that is not UTF-8 there is replaced by U+FFFD and counted in
// replaced: one stray byte of another charset in a free-text field must
// not cost a report; in names it stays an error), entity references are the five predefined ones or character
// references, comments hold no "--", and there is one root element.
// A DOCTYPE declaration is skipped, and any entity it declares is unknown.
// Input must be UTF-8: the caller converts other encodings first.
type xmlScanner struct {
	r    io.Reader
	buf  []byte
	pos  int // next byte to read in buf
	end  int // end of valid data in buf
	eof  bool
	err  error
	line int // line of buf[pos], from 1

	// The current token, valid until the next call to next.
	kind  tokKind
	local []byte // element name without prefix (start and end)
	qname []byte // element name as written
	text  []byte // decoded text (tokText)
	attrs []xmlAttr

	// Element stack: the qualified names of open elements, back to back.
	stack    []byte
	stackEnd []int
	// pendingEnd: the current start tag was self-closing (<a/>).
	pendingEnd bool
	sawRoot    bool
	// openAtEOF lets the document end with its root element open: the
	// decoder's recovery from a stray wrapper start tag.
	openAtEOF bool
	// replaced counts the bytes of text that were not UTF-8.
	replaced int

	valBuf  []byte // decoded attribute values, back to back
	textBuf []byte
	maxTok  int
}

type tokKind int

const (
	tokNone tokKind = iota
	tokStart
	tokEnd
	tokText
)

type xmlAttr struct {
	qname []byte
	value []byte
}

// scanError is a well-formedness error with the line where it was found.
type scanError struct {
	line  int
	msg   string
	limit bool // a bound of the scanner was crossed, not a fault of the XML
}

func (e *scanError) Error() string { return fmt.Sprintf("XML line %d: %s", e.line, e.msg) }

// Unwrap makes a crossed bound an ErrLimit, as every limit is.
func (e *scanError) Unwrap() error {
	if e.limit {
		return ErrLimit
	}
	return nil
}

func newXMLScanner(r io.Reader, maxToken int) *xmlScanner {
	return &xmlScanner{r: r, buf: make([]byte, 16<<10), line: 1, maxTok: maxToken}
}

func (s *xmlScanner) fail(format string, args ...any) error {
	if s.err == nil {
		s.err = &scanError{line: s.line, msg: fmt.Sprintf(format, args...)}
	}
	return s.err
}

// failLimit fails for a crossed bound (an ErrLimit).
func (s *xmlScanner) failLimit(format string, args ...any) error {
	if s.err == nil {
		s.err = &scanError{line: s.line, msg: fmt.Sprintf(format, args...), limit: true}
	}
	return s.err
}

// depth is the number of open elements.
func (s *xmlScanner) depth() int { return len(s.stackEnd) }

// fill reads more input, keeping buf[pos:end]. It returns false at the end
// of input or on a read error (then s.err is set).
func (s *xmlScanner) fill() bool {
	if s.eof {
		return false
	}
	if s.pos > 0 {
		n := copy(s.buf, s.buf[s.pos:s.end])
		s.end = n
		s.pos = 0
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.maxTok {
			s.failLimit("a single tag or text run is longer than %d bytes", s.maxTok)
			return false
		}
		nb := make([]byte, min(2*len(s.buf), s.maxTok+1))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for range 100 {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
			return n > 0
		}
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			return false
		}
		if n > 0 {
			return true
		}
	}
	s.err = io.ErrNoProgress
	return false
}

// advance consumes n bytes, counting lines.
func (s *xmlScanner) advance(n int) {
	s.line += bytes.Count(s.buf[s.pos:s.pos+n], []byte{'\n'})
	s.pos += n
}

// errNeedMore is returned by the token parsers when the buffer ends inside
// a token; the caller fills the buffer and parses the token again.
var errNeedMore = errors.New("need more input")

// next moves to the next start tag, end tag or text run. Comments,
// processing instructions and the DOCTYPE are skipped. At the end of a
// well-formed document it returns io.EOF.
func (s *xmlScanner) next() error {
	if s.err != nil {
		return s.err
	}
	if s.pendingEnd {
		s.pendingEnd = false
		s.kind = tokEnd
		s.pop()
		return nil
	}
	atEOF := false
	for {
		if s.pos == s.end && !s.fill() {
			if s.err != nil {
				return s.err
			}
			if s.depth() > 1 || s.depth() == 1 && !s.openAtEOF {
				return s.fail("document ends inside <%s>: truncated", s.top())
			}
			if !s.sawRoot {
				return s.fail("no root element")
			}
			return io.EOF
		}
		var n int
		var err error
		var skip bool
		if s.buf[s.pos] == '<' {
			n, skip, err = s.markup(s.buf[s.pos:s.end])
		} else {
			n, err = s.chars(s.buf[s.pos:s.end])
		}
		if err == errNeedMore {
			if s.fill() {
				continue
			}
			if s.err != nil {
				return s.err
			}
			if !atEOF {
				atEOF = true // parse again, knowing that no more input comes
				continue
			}
			return s.fail("document ends inside a tag or reference: truncated")
		}
		if err != nil {
			return err
		}
		s.advance(n)
		if !skip {
			return nil
		}
	}
}

func (s *xmlScanner) top() []byte {
	start := 0
	if k := len(s.stackEnd); k > 1 {
		start = s.stackEnd[k-2]
	}
	return s.stack[start:]
}

func (s *xmlScanner) pop() {
	k := len(s.stackEnd)
	start := 0
	if k > 1 {
		start = s.stackEnd[k-2]
	}
	// local and qname stay valid: the bytes are only overwritten by a later push.
	s.qname = s.stack[start:s.stackEnd[k-1]]
	s.local = localName(s.qname)
	s.stack = s.stack[:start]
	s.stackEnd = s.stackEnd[:k-1]
}

// localName strips the prefix from a qualified name. A colon at either
// end is part of the name, as encoding/xml reads it.
func localName(q []byte) []byte {
	if i := bytes.IndexByte(q, ':'); i >= 1 && i < len(q)-1 {
		return q[i+1:]
	}
	return q
}

// scanQName is scanName for names with at most one colon (Namespaces in
// XML 1.0 §4). A name with more is reported as no name (0).
func scanQName(b []byte) int {
	n := scanName(b)
	end := n
	if n < 0 {
		end = len(b)
	}
	if bytes.Count(b[:end], []byte{':'}) > 1 {
		return 0
	}
	return n
}

// chars reads a text run up to the next '<'. A run longer than the buffer
// is returned in pieces, never splitting a reference.
func (s *xmlScanner) chars(b []byte) (int, error) {
	n := bytes.IndexByte(b, '<')
	if n < 0 {
		if !s.eof && len(b) < len(s.buf)/2 {
			return 0, errNeedMore
		}
		n = len(b)
		if !s.eof {
			// Do not split a UTF-8 sequence.
			for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
				if utf8.RuneStart(b[i]) {
					if !utf8.FullRune(b[i:n]) {
						n = i
					}
					break
				}
			}
		}
		if !s.eof {
			// Keep CR LF together, and a "]]>" whole for the check below.
			for n > 0 && (b[n-1] == '\r' || b[n-1] == ']') && len(b)-n < 2 {
				n--
			}
		}
		if amp := bytes.LastIndexByte(b[:n], '&'); amp >= 0 && bytes.IndexByte(b[amp:n], ';') < 0 {
			if amp == 0 {
				if s.eof {
					return 0, s.fail("unterminated entity reference")
				}
				return 0, errNeedMore
			}
			n = amp
		}
	}
	if s.depth() == 0 {
		// Outside the root only white space is allowed.
		for _, c := range b[:n] {
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				return 0, s.fail("text outside the root element")
			}
		}
	}
	if bytes.Contains(b[:n], []byte("]]>")) {
		return 0, s.fail(`"]]>" in text`)
	}
	text, err := s.decode(b[:n], s.textBuf[:0], false)
	if err != nil {
		return 0, err
	}
	s.textBuf = text
	s.text = text
	s.kind = tokText
	return n, nil
}

// decode checks raw text or an attribute value and appends it to dst with
// references replaced. In attribute values, '<' is an error and white space
// characters are normalised to spaces (XML 1.0 §3.3.3).
func (s *xmlScanner) decode(raw, dst []byte, attr bool) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '&':
			semi := bytes.IndexByte(raw[i:], ';')
			if semi < 0 {
				return nil, s.fail("unterminated entity reference")
			}
			r, ok := entity(raw[i+1 : i+semi])
			if !ok {
				return nil, s.fail("invalid entity reference &%s;", truncate(string(raw[i+1:i+semi]), 20))
			}
			dst = utf8.AppendRune(dst, r)
			i += semi + 1
		case c == '<' && attr:
			return nil, s.fail("'<' in attribute value")
		case c >= 0x20 && c < 0x80:
			dst = append(dst, c)
			i++
		case c == '\r':
			// XML 1.0 §2.11: CR LF and a lone CR are read as LF.
			if i+1 < len(raw) && raw[i+1] == '\n' {
				i++
				continue
			}
			if attr {
				dst = append(dst, ' ')
			} else {
				dst = append(dst, '\n')
			}
			i++
		case c == '\n' || c == '\t':
			if attr {
				c = ' '
			}
			dst = append(dst, c)
			i++
		case c < 0x20:
			return nil, s.fail("illegal character code %U", rune(c))
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				s.replaced++
				i++
				continue
			}
			if !isXMLChar(r) {
				return nil, s.fail("illegal character code %U", r)
			}
			dst = append(dst, raw[i:i+size]...)
			i += size
		}
	}
	return dst, nil
}

// entity resolves the name of a reference (between '&' and ';').
func entity(name []byte) (rune, bool) {
	switch string(name) {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "apos":
		return '\'', true
	case "quot":
		return '"', true
	}
	if len(name) < 2 || name[0] != '#' {
		return 0, false
	}
	var n uint64
	var err error
	if name[1] == 'x' {
		n, err = strconv.ParseUint(string(name[2:]), 16, 32)
	} else {
		n, err = strconv.ParseUint(string(name[1:]), 10, 32)
	}
	if err != nil || !isXMLChar(rune(n)) {
		return 0, false
	}
	return rune(n), true
}

// isXMLChar reports whether r is a Char of XML 1.0 §2.2.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// markup reads what starts with '<': a tag, a comment, a processing
// instruction, a CDATA section or a DOCTYPE. skip is true for what carries
// no token.
func (s *xmlScanner) markup(b []byte) (n int, skip bool, err error) {
	if len(b) < 2 {
		return 0, false, s.needMore()
	}
	switch b[1] {
	case '/':
		n, err = s.endTag(b)
		return n, false, err
	case '?':
		i := bytes.Index(b[2:], []byte("?>"))
		if i < 0 {
			return 0, false, s.needMore()
		}
		pi := b[2 : 2+i]
		if n := scanName(pi); len(pi) == 0 || n == 0 || n > 0 && !isSpace(pi[n]) {
			return 0, false, s.fail("expected target name after <?")
		}
		return i + 4, true, nil
	case '!':
		return s.bang(b)
	}
	n, err = s.startTag(b)
	return n, false, err
}

// needMore is errNeedMore, or an error at the end of input.
func (s *xmlScanner) needMore() error {
	if s.eof {
		return s.fail("document ends inside markup: truncated")
	}
	return errNeedMore
}

func (s *xmlScanner) bang(b []byte) (int, bool, error) {
	switch {
	case bytes.HasPrefix(b, []byte("<!--")):
		i := bytes.Index(b[4:], []byte("--"))
		if i < 0 {
			return 0, false, s.needMore()
		}
		if len(b) < 4+i+3 {
			return 0, false, s.needMore()
		}
		if b[4+i+2] != '>' {
			return 0, false, s.fail(`"--" inside a comment`)
		}
		return 4 + i + 3, true, nil
	case bytes.HasPrefix(b, []byte("<![CDATA[")):
		if s.depth() == 0 {
			return 0, false, s.fail("CDATA section outside the root element")
		}
		i := bytes.Index(b[9:], []byte("]]>"))
		if i < 0 {
			return 0, false, s.needMore()
		}
		raw := b[9 : 9+i]
		if !utf8.Valid(raw) {
			var n int
			raw, n = toValidUTF8(raw)
			s.replaced += n
		}
		s.textBuf = append(s.textBuf[:0], raw...)
		s.text = s.textBuf
		s.kind = tokText
		return 9 + i + 3, false, nil
	case bytes.HasPrefix(b, []byte("<!DOCTYPE")):
		if s.sawRoot {
			return 0, false, s.fail("DOCTYPE after the root element")
		}
		// Skip to the '>' that closes it, as encoding/xml does: past quoted
		// strings, comments, and the markup declarations of an internal
		// subset, each a '<' closed by its own '>'.
		var quote byte
		depth := 0
		for i := 9; i < len(b); i++ {
			c := b[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '<':
				rest := b[i:]
				if len(rest) < 4 && bytes.HasPrefix([]byte("<!--"), rest) {
					return 0, false, s.needMore()
				}
				if bytes.HasPrefix(rest, []byte("<!--")) {
					j := bytes.Index(rest[4:], []byte("-->"))
					if j < 0 {
						return 0, false, s.needMore()
					}
					i += 4 + j + 2
					continue
				}
				depth++
			case c == '>':
				if depth == 0 {
					return i + 1, true, nil
				}
				depth--
			}
		}
		return 0, false, s.needMore()
	}
	if len(b) < 9 {
		return 0, false, s.needMore()
	}
	return 0, false, s.fail("invalid markup after '<!'")
}

// name reads an XML name at the start of b and returns its length; 0 when
// b does not start with a name; -1 when b ends inside it.
func scanName(b []byte) int {
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
			i++
		case c >= '0' && c <= '9', c == '-', c == '.':
			if i == 0 {
				return 0
			}
			i++
		case c >= 0x80:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError {
				if !utf8.FullRune(b[i:]) {
					return -1
				}
				return 0
			}
			if !isXMLChar(r) {
				return 0
			}
			i += size
		default:
			return i
		}
	}
	return -1
}

// toValidUTF8 returns b with each byte that is not part of a UTF-8
// sequence replaced by U+FFFD, as text is read, and how many there were.
func toValidUTF8(b []byte) ([]byte, int) {
	out := make([]byte, 0, len(b)+8)
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			n++
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out, n
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// maxAttrs bounds the attributes of one element, which are checked for
// repeats pairwise.
const maxAttrs = 64

func (s *xmlScanner) startTag(b []byte) (int, error) {
	n := scanQName(b[1:])
	if n < 0 {
		return 0, s.needMore()
	}
	if n == 0 {
		return 0, s.fail("expected element name after <")
	}
	qname := b[1 : 1+n]
	if s.depth() == 0 && s.sawRoot {
		return 0, s.fail("second root element <%s>", truncate(string(qname), 40))
	}
	i := 1 + n
	s.attrs = s.attrs[:0]
	s.valBuf = s.valBuf[:0]
	for {
		j := skipSpace(b, i)
		if j == len(b) {
			return 0, s.needMore()
		}
		switch b[j] {
		case '>':
			s.push(qname)
			return j + 1, nil
		case '/':
			if j+1 == len(b) {
				return 0, s.needMore()
			}
			if b[j+1] != '>' {
				return 0, s.fail("expected /> in element")
			}
			s.push(qname)
			s.pendingEnd = true
			return j + 2, nil
		}
		if j == i {
			return 0, s.fail("expected space, > or /> after element name")
		}
		// name = "value"
		an := scanQName(b[j:])
		if an < 0 {
			return 0, s.needMore()
		}
		if an == 0 {
			return 0, s.fail("expected attribute name in element")
		}
		aname := b[j : j+an]
		k := skipSpace(b, j+an)
		if k == len(b) {
			return 0, s.needMore()
		}
		if b[k] != '=' {
			return 0, s.fail("attribute %s without a value", truncate(string(aname), 40))
		}
		k = skipSpace(b, k+1)
		if k == len(b) {
			return 0, s.needMore()
		}
		q := b[k]
		if q != '"' && q != '\'' {
			return 0, s.fail("unquoted attribute value")
		}
		end := bytes.IndexByte(b[k+1:], q)
		if end < 0 {
			return 0, s.needMore()
		}
		if len(s.attrs) >= maxAttrs {
			return 0, s.failLimit("more than %d attributes in an element", maxAttrs)
		}
		for _, a := range s.attrs {
			if bytes.Equal(a.qname, aname) {
				return 0, s.fail("attribute %s repeated", truncate(string(aname), 40))
			}
		}
		start := len(s.valBuf)
		var err error
		if s.valBuf, err = s.decode(b[k+1:k+1+end], s.valBuf, true); err != nil {
			return 0, err
		}
		s.attrs = append(s.attrs, xmlAttr{qname: aname, value: s.valBuf[start:len(s.valBuf):len(s.valBuf)]})
		i = k + 1 + end + 1
	}
}

// push opens an element. qname points into buf: it is copied to the stack,
// and local and qname are set to the copy, which stays valid until the
// element is closed.
func (s *xmlScanner) push(qname []byte) {
	start := len(s.stack)
	s.stack = append(s.stack, qname...)
	s.stackEnd = append(s.stackEnd, len(s.stack))
	s.qname = s.stack[start:len(s.stack):len(s.stack)]
	s.local = localName(s.qname)
	s.kind = tokStart
	s.sawRoot = true
}

func (s *xmlScanner) endTag(b []byte) (int, error) {
	n := scanQName(b[2:])
	if n < 0 {
		return 0, s.needMore()
	}
	if n == 0 {
		return 0, s.fail("expected element name after </")
	}
	qname := b[2 : 2+n]
	j := skipSpace(b, 2+n)
	if j == len(b) {
		return 0, s.needMore()
	}
	if b[j] != '>' {
		return 0, s.fail("invalid characters between </%s and >", truncate(string(qname), 40))
	}
	if s.depth() == 0 {
		return 0, s.fail("unexpected end element </%s>", truncate(string(qname), 40))
	}
	if open := s.top(); !bytes.Equal(open, qname) {
		return 0, s.fail("element <%s> closed by </%s>", truncate(string(open), 40), truncate(string(qname), 40))
	}
	s.pop()
	s.kind = tokEnd
	return j + 1, nil
}
