package report

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
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
	out := newLimitReader(&gzipMembers{br: br, zr: zr}, w.lim.MaxDecompressedBytes, "gzip output")
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
// (zip needs random access), bounded by MaxArchiveBytes; each member's
// output is bounded by MaxDecompressedBytes and streamed.
func (w *walker) unzip(p string, r io.Reader, depth int) error {
	data, err := io.ReadAll(newLimitReader(r, w.lim.MaxArchiveBytes, "zip archive"))
	if err != nil {
		return fmt.Errorf("%sread zip: %w", prefix(p), err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("%sunzip: %w", prefix(p), err)
	}
	if len(zr.File) > w.lim.MaxMembers {
		return fmt.Errorf("%szip holds %d entries, more than %d: %w", prefix(p), len(zr.File), w.lim.MaxMembers, ErrLimit)
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
	out := newLimitReader(rc, w.lim.MaxDecompressedBytes, "zip member")
	return w.walk(mp, &errPrefixReader{r: out, prefix: "unzip: "}, depth+1, false)
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
