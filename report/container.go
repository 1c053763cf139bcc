package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Kind says what a document holds.
type Kind string

const (
	// KindAggregate is a DMARC aggregate report (RFC 7489, RFC 9990): XML.
	KindAggregate Kind = "aggregate"
	// KindFailure is a DMARC failure report (RFC 9991): an ARF message.
	KindFailure Kind = "failure"
	// KindSMTPTLS is an SMTP TLS report (RFC 8460): JSON.
	KindSMTPTLS Kind = "smtp_tls"
)

// A Document is one report found inside an input, not yet decoded.
type Document struct {
	// Part says where in the input the document was found: "" for the input
	// itself, else a path such as `MIME part 2 "r.zip" > r.xml`.
	Part string
	Kind Kind
	// Body holds the document's bytes, decompressed and transfer-decoded.
	// It is valid only until the callback returns.
	Body io.Reader
}

// Walk finds every report in r and calls fn for each, in input order. The
// container is told by its bytes, never by a file name: raw XML, JSON,
// gzip (also with bytes after the stream), zip (every member but
// directories and __MACOSX), or an RFC 5322 mail, whose MIME tree is walked.
// Containers may nest up to lim.MaxDepth.
//
// Walk stops at the first error, from the input or from fn, and returns it
// prefixed with the part where it happened. It returns ErrNoReport when the
// input held no report at all.
func Walk(r io.Reader, lim Limits, fn func(Document) error) error {
	w := &walker{lim: lim, fn: fn, budget: lim.MaxDecompressedBytes}
	rec := &readErrRecorder{r: r}
	in := newLimitReader(rec, lim.MaxDecompressedBytes, "input")
	if err := w.walk("", in, 0, false); err != nil {
		if rec.err != nil {
			return fmt.Errorf("%w: %w", ErrRead, rec.err)
		}
		return err
	}
	if w.found == 0 {
		return fmt.Errorf("mail holds no report attachment: %w", ErrNoReport)
	}
	return nil
}

// readErrRecorder remembers the first error, other than io.EOF, of the
// input itself, so that an I/O error is not mistaken for a broken report.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

type walker struct {
	lim     Limits
	fn      func(Document) error
	found   int   // documents handed to fn
	parts   int   // MIME parts seen
	members int   // zip entries seen, in all archives of the input
	budget  int64 // decompressed bytes left for the whole input
}

// budgetReader counts the output of a decompressor against the budget of
// the whole input, so that nested or overlapping archives cannot multiply
// the work.
type budgetReader struct {
	r io.Reader
	w *walker
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.w.budget <= 0 {
		return 0, fmt.Errorf("decompressed data larger than %d bytes in all: %w", b.w.lim.MaxDecompressedBytes, ErrLimit)
	}
	if int64(len(p)) > b.w.budget {
		p = p[:b.w.budget]
	}
	n, err := b.r.Read(p)
	b.w.budget -= int64(n)
	return n, err
}

// format is what a sniff of the first bytes found.
type format int

const (
	formatUnknown format = iota
	formatEmpty
	formatXML
	formatJSON
	formatGzip
	formatZip
	formatMail
)

// sniffLen is how many bytes sniff looks at.
const sniffLen = 512

// sniff tells a container or document by its first bytes.
func sniff(head []byte) format {
	switch {
	case len(head) == 0:
		return formatEmpty
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return formatGzip
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return formatZip
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}), bytes.HasPrefix(head, []byte{0xFF, 0xFE}),
		bytes.HasPrefix(head, []byte("<\x00?\x00")), bytes.HasPrefix(head, []byte("\x00<\x00?")):
		return formatXML // UTF-16, with or without its byte order mark
	}
	t := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\uFEFF")), " \t\r\n")
	switch {
	case len(t) == 0:
		if len(head) < sniffLen {
			return formatEmpty
		}
		return formatUnknown
	case t[0] == '<':
		return formatXML
	case t[0] == '{':
		return formatJSON
	case looksLikeMail(head):
		return formatMail
	}
	return formatUnknown
}

// looksLikeMail reports whether head starts with an RFC 5322 header field
// (or an mbox "From " line followed by one).
func looksLikeMail(head []byte) bool {
	if bytes.HasPrefix(head, []byte("From ")) {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			return false
		}
		head = head[i+1:]
	}
	// RFC 5322 §2.2: field-name is printable US-ASCII but colon, then ':'.
	for i, c := range head {
		switch {
		case c == ':':
			return i > 0
		case c < 33 || c > 126:
			return false
		}
	}
	return false
}

// walk handles one container or document. inMail is true for the leaves
// of a mail, where bytes that are no report (a logo, a signature) are
// skipped rather than refused.
func (w *walker) walk(path string, r io.Reader, depth int, inMail bool) error {
	if depth > w.lim.MaxDepth {
		return fmt.Errorf("%scontainers nested deeper than %d: %w", prefix(path), w.lim.MaxDepth, ErrLimit)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(sniffLen)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return fmt.Errorf("%sread: %w", prefix(path), err)
	}
	switch f := sniff(head); f {
	case formatGzip:
		return w.gunzip(path, br, depth)
	case formatZip:
		return w.unzip(path, br, depth)
	case formatMail:
		if bytes.HasPrefix(head, []byte("From ")) {
			_, _ = br.ReadSlice('\n') // mbox separator line, not a header field
		}
		return w.mail(path, br, depth)
	case formatXML, formatJSON:
		kind := KindAggregate
		if f == formatJSON {
			kind = KindSMTPTLS
		}
		w.found++
		if err := w.fn(Document{Part: path, Kind: kind, Body: br}); err != nil {
			return fmt.Errorf("%s%w", prefix(path), err)
		}
		return nil
	case formatEmpty:
		if inMail {
			return nil
		}
		return fmt.Errorf("%sempty: %w", prefix(path), ErrNoReport)
	default:
		if inMail {
			return nil
		}
		return fmt.Errorf("%snot a report, a mail or an archive (starts with %q): %w",
			prefix(path), truncate(string(head), 20), ErrNoReport)
	}
}

// prefix returns path followed by ": ", or "" for the input itself.
func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// join appends a step to a path.
func join(path, step string) string {
	if path == "" {
		return step
	}
	return path + " > " + step
}

// quoteName quotes a file name from a mail or archive for an error message,
// bounded in length and with control characters escaped.
func quoteName(s string) string {
	return fmt.Sprintf("%q", truncate(strings.TrimSpace(s), 200))
}
