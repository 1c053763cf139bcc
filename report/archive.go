package report

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// gunzip walks the content of a gzip stream. Concatenated gzip members are
// read as one stream (RFC 1952 §2.2); bytes after the last member that do
// not start another member are ignored, since some reporters (Mimecast)
// append a CRLF to the stream.
func (w *walker) gunzip(p string, br *bufio.Reader, depth int) error {
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fmt.Errorf("%sgunzip: %w", prefix(p), err)
	}
	zr.Multistream(false)
	out := &budgetReader{r: &gzipMembers{br: br, zr: zr}, w: w}
	return w.walk(p, &errPrefixReader{r: out, prefix: "gunzip: "}, depth+1, false)
}

// gzipMembers reads the members of a gzip stream one after another.
type gzipMembers struct {
	br *bufio.Reader
	zr *gzip.Reader
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
		next, _ := g.br.Peek(2)
		if !bytes.Equal(next, []byte{0x1f, 0x8b}) {
			return 0, io.EOF // trailing bytes, if any, are not gzip: ignored
		}
		if err := g.zr.Reset(g.br); err != nil {
			return 0, err
		}
		g.zr.Multistream(false)
	}
}

// errPrefixReader prefixes the errors of a decompressor so that a reader
// of its output can tell a broken container from a broken document.
type errPrefixReader struct {
	r      io.Reader
	prefix string
}

func (e *errPrefixReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = &containerError{prefix: e.prefix, err: err}
	}
	return n, err
}

type containerError struct {
	prefix string
	err    error
}

func (c *containerError) Error() string { return c.prefix + c.err.Error() }
func (c *containerError) Unwrap() error { return c.err }

// unzip walks every member of a zip archive. The archive is held in memory
// (zip needs random access), bounded by MaxArchiveBytes; members' output is
// streamed, and counts against MaxDecompressedBytes for the whole input.
func (w *walker) unzip(p string, r io.Reader, depth int) error {
	data, err := io.ReadAll(newLimitReader(r, w.lim.MaxArchiveBytes, "zip archive"))
	if err != nil {
		return fmt.Errorf("%sread zip: %w", prefix(p), err)
	}
	// Count the entries before reading the directory: zip.NewReader holds
	// them all.
	if n, ok := zipEntries(data); ok && n > uint64(w.lim.MaxMembers) {
		return fmt.Errorf("%szip holds %d entries, more than %d: %w", prefix(p), n, w.lim.MaxMembers, ErrLimit)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("%sunzip: %w", prefix(p), err)
	}
	if w.members += len(zr.File); w.members > w.lim.MaxMembers {
		return fmt.Errorf("%szip entries number more than %d in all: %w", prefix(p), w.lim.MaxMembers, ErrLimit)
	}
	if err := checkOverlap(zr.File); err != nil {
		return fmt.Errorf("%s%w", prefix(p), err)
	}
	members := 0
	for _, f := range zr.File {
		if skipZipEntry(f) {
			continue
		}
		members++
		mp := join(p, quoteName(f.Name))
		if err := w.unzipMember(mp, f, depth); err != nil {
			return err
		}
	}
	if members == 0 {
		return fmt.Errorf("%szip holds no files: %w", prefix(p), ErrNoReport)
	}
	return nil
}

func (w *walker) unzipMember(mp string, f *zip.File, depth int) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%s: unzip: %w", mp, err)
	}
	defer rc.Close()
	out := &budgetReader{r: rc, w: w}
	return w.walk(mp, &errPrefixReader{r: out, prefix: "unzip: "}, depth+1, false)
}

// zipEntries reads the entry count of a zip archive from its end of
// central directory record (APPNOTE 4.3.16), or its ZIP64 form (4.3.14).
func zipEntries(data []byte) (uint64, bool) {
	from := max(0, len(data)-(22+65535))
	i := bytes.LastIndex(data[from:], []byte("PK\x05\x06"))
	if i < 0 || from+i+22 > len(data) {
		return 0, false
	}
	eocd := data[from+i:]
	n := uint64(binary.LittleEndian.Uint16(eocd[10:]))
	if n != 0xFFFF || from+i < 20 {
		return n, true
	}
	loc := data[from+i-20:]
	if !bytes.HasPrefix(loc, []byte("PK\x06\x07")) {
		return n, true
	}
	off := binary.LittleEndian.Uint64(loc[8:])
	if off > uint64(len(data)-56) || !bytes.HasPrefix(data[off:], []byte("PK\x06\x06")) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(data[off+32:]), true
}

// checkOverlap refuses archives whose entries share or overlap their data:
// a quine-like trick that makes one small archive inflate many times.
func checkOverlap(files []*zip.File) error {
	type span struct{ start, end int64 }
	var spans []span
	for _, f := range files {
		off, err := f.DataOffset()
		if err != nil {
			continue // unreadable entry: fails when opened
		}
		spans = append(spans, span{off, off + int64(f.CompressedSize64)})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start < spans[i-1].end {
			return fmt.Errorf("zip entries overlap: not an archive a reporter writes: %w", ErrLimit)
		}
	}
	return nil
}

// skipZipEntry is true for directories and macOS metadata, which hold no
// report: "__MACOSX/" trees and "._name" AppleDouble files.
func skipZipEntry(f *zip.File) bool {
	name := strings.ReplaceAll(f.Name, `\`, "/")
	if strings.HasSuffix(name, "/") || f.FileInfo().IsDir() {
		return true
	}
	if strings.HasPrefix(name, "__MACOSX/") || strings.Contains(name, "/__MACOSX/") {
		return true
	}
	return strings.HasPrefix(path.Base(name), "._")
}
