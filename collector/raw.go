package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"sync"
)

// rawCapture keeps the bytes of a report as the parser reads them, up to
// max, for the archive's "show the report" view; a larger report keeps
// none (over).
type rawCapture struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func newRawCapture(max int) *rawCapture { return &rawCapture{max: max} }

// tee returns r, reading through c. With max 0, r itself.
func (c *rawCapture) tee(r io.Reader) io.Reader {
	if c.max <= 0 {
		return r
	}
	return io.TeeReader(r, c)
}

func (c *rawCapture) Write(p []byte) (int, error) {
	if !c.over {
		if c.buf.Len()+len(p) > c.max {
			c.over = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

// compressed returns the bytes read, gzip-compressed; nil when none are
// kept.
func (c *rawCapture) compressed() []byte {
	if c.max <= 0 || c.over || c.buf.Len() == 0 {
		return nil
	}
	var out bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&out)
	zw.Write(c.buf.Bytes()) // writes to memory do not fail
	zw.Close()
	return out.Bytes()
}

// gzipWriters are reused: a new gzip.Writer allocates and clears about a
// megabyte, many times the cost of compressing a typical report.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // the level is valid
	return zw
}}
