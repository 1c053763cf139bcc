package report

import (
	"errors"
	"fmt"
	"io"
)

// Limits bound what one input may cost. Every limit names itself in the
// error it causes, so a refused file says which bound it crossed.
type Limits struct {
	// MaxArchiveBytes bounds a zip archive, which is held in memory because
	// zip needs random access.
	MaxArchiveBytes int64
	// MaxDecompressedBytes bounds the input itself, and the output of all
	// its gzip streams and zip members together. A decompression bomb
	// fails here without its output being held: output is streamed.
	MaxDecompressedBytes int64
	// MaxMembers bounds the number of entries in a zip archive and the
	// number of parts in a mail.
	MaxMembers int
	// MaxDepth bounds nesting: a zip in a mail in a message/rfc822 part...
	MaxDepth int
	// MaxRecords bounds the number of records in one report.
	MaxRecords int
	// MaxCount bounds a single record's message count; a larger count is
	// flagged as implausible rather than added to anything.
	MaxCount uint64
	// MaxXMLDepth bounds element nesting inside a report.
	MaxXMLDepth int
	// MaxTextBytes bounds a single text value (a domain, a comment, ...).
	MaxTextBytes int
	// MaxExtensionBytes bounds the XML kept for one extension.
	MaxExtensionBytes int
}

// DefaultLimits are sane for every real report seen so far: the largest
// Google reports are about 100 MB of XML, compressed to a few MB.
func DefaultLimits() Limits {
	return Limits{
		MaxArchiveBytes:      32 << 20,
		MaxDecompressedBytes: 1 << 30,
		MaxMembers:           100,
		MaxDepth:             5,
		MaxRecords:           2_000_000,
		MaxCount:             1_000_000_000,
		MaxXMLDepth:          32,
		MaxTextBytes:         64 << 10,
		MaxExtensionBytes:    16 << 10,
	}
}

// Sentinel errors that callers branch on, checked with errors.Is.
var (
	// ErrNoReport: the input holds nothing that looks like a report.
	ErrNoReport = errors.New("no report found")
	// ErrLimit: a bound of Limits was crossed.
	ErrLimit = errors.New("limit exceeded")
	// ErrNotAggregate: the document is well-formed XML but not a DMARC
	// aggregate report.
	ErrNotAggregate = errors.New("not a DMARC aggregate report")
	// ErrInvalid: the report is well-formed but a value is wrong.
	ErrInvalid = errors.New("invalid report")
	// ErrRead: reading the input itself failed (an I/O error, not a
	// problem of its content): try again later.
	ErrRead = errors.New("read error")
)

// limitReader reads at most max bytes from r and fails, rather than ending
// early, when r holds more.
type limitReader struct {
	r    io.Reader
	left int64
	max  int64
	what string
}

func newLimitReader(r io.Reader, max int64, what string) *limitReader {
	return &limitReader{r: r, left: max, max: max, what: what}
}

func (l *limitReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if l.left <= 0 {
		// Exactly max bytes is fine: probe for one more.
		var b [1]byte
		k, err := io.ReadFull(l.r, b[:])
		if k > 0 {
			return 0, fmt.Errorf("%s larger than %d bytes: %w", l.what, l.max, ErrLimit)
		}
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	k, err := l.r.Read(p)
	l.left -= int64(k)
	return k, err
}

// Describe names a kind of report for an error message.
func (k Kind) Describe() string {
	switch k {
	case KindAggregate:
		return "DMARC aggregate report"
	case KindFailure:
		return "DMARC failure report (RFC 9991)"
	case KindSMTPTLS:
		return "SMTP TLS report (RFC 8460)"
	}
	return string(k)
}
