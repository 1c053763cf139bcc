package collector

import (
	"bytes"
	"compress/gzip"
	"io"
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
	zw, _ := gzip.NewWriterLevel(&out, gzip.BestSpeed) // the level is valid
	zw.Write(c.buf.Bytes())                            // writes to memory do not fail
	zw.Close()
	return out.Bytes()
}
