package source

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// mboxMessages reads an mbox stream (mboxo or mboxrd, as mail programs
// and Google Takeout write it) and calls fn with each message: the byte
// offset of its "From " line, and its text without that line, with
// ">From " lines unescaped. A message longer than max is passed with
// tooBig set and no text; the reading goes on with the next. Only one
// message is held in memory at a time.
//
// A message begins at a line starting with "From " that opens the stream
// or follows an empty line: a body line starting with "From " that a
// writer did not escape splits no message unless it follows an empty
// line.
func mboxMessages(r io.Reader, max int, fn func(offset int64, msg []byte, tooBig bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		msg       bytes.Buffer
		pos       int64 // offset of the next line
		start     int64 = -1
		prevEmpty       = true
		tooBig    bool
	)
	emit := func() error {
		if start < 0 {
			return nil
		}
		// The empty line before the next "From " belongs to the format.
		text := msg.Bytes()
		if bytes.HasSuffix(text, []byte("\r\n\r\n")) {
			text = text[:len(text)-2]
		} else if bytes.HasSuffix(text, []byte("\n\n")) {
			text = text[:len(text)-1]
		}
		err := fn(start, text, tooBig)
		msg.Reset()
		tooBig = false
		return err
	}
	for {
		line, n, err := readLine(br, max)
		if n > 0 {
			if int64(len(line)) < n && start >= 0 {
				tooBig = true // a line longer than a message may be
				msg = bytes.Buffer{}
			}
			if prevEmpty && bytes.HasPrefix(line, []byte("From ")) {
				if err := emit(); err != nil {
					return err
				}
				start = pos
			} else if start >= 0 && !tooBig {
				if isEscapedFrom(line) {
					line = line[1:]
				}
				if msg.Len()+len(line) > max {
					tooBig = true
					msg = bytes.Buffer{} // give the memory back
				} else {
					msg.Write(line)
				}
			}
			pos += n
			prevEmpty = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if errors.Is(err, io.EOF) {
			return emit()
		}
		if err != nil {
			return err
		}
	}
}

// readLine reads a line with its end, and returns at most max bytes of
// it and its whole length: a line of gigabytes costs no more memory.
func readLine(br *bufio.Reader, max int) ([]byte, int64, error) {
	line, err := br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, int64(len(line)), err
	}
	long := append([]byte(nil), line...)
	n := int64(len(line))
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = br.ReadSlice('\n')
		n += int64(len(line))
		if len(long) < max {
			long = append(long, line[:min(len(line), max-len(long))]...)
		}
	}
	return long, n, err
}

// isEscapedFrom tells a line that mboxrd escaped: ">From ", ">>From ", ...
func isEscapedFrom(line []byte) bool {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	return i > 0 && bytes.HasPrefix(line[i:], []byte("From "))
}
