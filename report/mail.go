package report

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
)

// mail walks the MIME tree of an RFC 5322 message (RFC 2045, RFC 2046):
// multipart bodies, nested message/rfc822 parts, and leaves in any
// transfer encoding. Each leaf that is not body text is sniffed like a file.
//
// A mail is read into memory first (bounded by MaxArchiveBytes), because
// a failure report is handed on whole, as the mail it came in.
func (w *walker) mail(p string, r io.Reader, depth int) error {
	raw, err := io.ReadAll(newLimitReader(r, w.lim.MaxArchiveBytes, "mail"))
	if err != nil {
		return fmt.Errorf("%sread mail: %w", prefix(p), err)
	}
	if w.isFailureReport(raw, depth) {
		// An ARF message (RFC 5965), or one that holds its part though it
		// is not multipart/report (NetEase through Outlook): the whole
		// mail is the report, and the returned original message may carry
		// attachments, which must not be read as reports.
		return w.document(p, KindFailure, bytes.NewReader(raw))
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !benignMIME(err) {
		return fmt.Errorf("%sread mail: %w", prefix(p), err)
	}
	return w.entity(p, "", e, raw, depth)
}

// isFailureReport looks, before anything is walked, for what makes a mail
// an ARF report: multipart/report with report-type=feedback-report, or a
// message/feedback-report part anywhere but inside a returned message.
func (w *walker) isFailureReport(raw []byte, depth int) bool {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !benignMIME(err) {
		return false
	}
	parts := 0
	var find func(e *message.Entity, depth int) bool
	find = func(e *message.Entity, depth int) bool {
		mediaType, params, _ := e.Header.ContentType()
		switch {
		case mediaType == "multipart/report" && strings.EqualFold(params["report-type"], "feedback-report"),
			mediaType == "message/feedback-report":
			return true
		case mediaType == "text/plain":
			// Exim's failure reports have no ARF part: their text says it.
			return eximText(e.Body, w.lim) != nil
		case depth > w.lim.MaxDepth:
			return false
		}
		mr := e.MultipartReader()
		if mr == nil {
			return false
		}
		for {
			part, err := mr.NextPart()
			if err != nil && (part == nil || !benignMIME(err)) {
				return false
			}
			if parts++; parts > w.lim.MaxMembers {
				return false
			}
			if find(part, depth+1) {
				return true
			}
		}
	}
	return find(e, depth)
}

// benignMIME is true for go-message's errors that still leave a readable
// entity: an unknown charset (we never want the body converted; XML names
// its own encoding) or an unknown transfer encoding (the body is then
// read as it is, and sniffed).
func benignMIME(err error) bool {
	return message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)
}

// entity walks one MIME entity of the mail raw; num is its part number
// ("1.2"), "" for the message itself.
func (w *walker) entity(p, num string, e *message.Entity, raw []byte, depth int) error {
	if depth > w.lim.MaxDepth {
		return fmt.Errorf("%sMIME parts nested deeper than %d: %w", prefix(p), w.lim.MaxDepth, ErrLimit)
	}
	mediaType, params, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		// Some mailers (Mail.ru among them) end a mail without the closing
		// boundary of its multipart body: the parts before the end are
		// whole, and the last one runs to the end of the mail.
		closed := bytes.Contains(raw, []byte("--"+params["boundary"]+"--"))
		return w.multipart(p, num, mr, raw, closed, depth)
	}
	switch mediaType {
	case "message/rfc822", "message/global":
		return w.mail(p, e.Body, depth+1)
	}
	if isBodyText(mediaType, e.Header) {
		_, err := io.Copy(io.Discard, e.Body)
		return mimeErr(p, err)
	}
	if err := w.walk(p, e.Body, depth+1, true); err != nil {
		return mimeErr("", err)
	}
	return nil
}

func (w *walker) multipart(p, num string, mr message.MultipartReader, raw []byte, closed bool, depth int) error {
	for i := 1; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil && !closed && i > 1 {
			return nil // the mail ended after the last whole part
		}
		if err != nil && (part == nil || !benignMIME(err)) {
			if !closed {
				return fmt.Errorf("%smail ends before its MIME part %s, without a closing boundary: %w", prefix(p), partNum(num, i), err)
			}
			return fmt.Errorf("%sMIME part %s: %w", prefix(p), partNum(num, i), err)
		}
		w.parts++
		if w.parts > w.lim.MaxMembers {
			return fmt.Errorf("%smail has more than %d MIME parts: %w", prefix(p), w.lim.MaxMembers, ErrLimit)
		}
		n := partNum(num, i)
		step := "MIME part " + n
		if name := fileName(part.Header); name != "" {
			step += " " + quoteName(name)
		}
		var end *unclosedEnd
		if !closed {
			end = &unclosedEnd{r: part.Body}
			part.Body = end
		}
		if err := w.entity(join(p, step), n, part, raw, depth+1); err != nil {
			if end != nil && end.reached {
				// The part ran to the end of the mail and could not be
				// read whole: the mail was cut short inside it.
				where := "part " + n
				if name := fileName(part.Header); name != "" {
					where += " (" + quoteName(name) + ")"
				}
				return &cutShort{msg: prefix(p) + "mail ends inside " + where + ", without a closing boundary: " +
					strings.TrimPrefix(err.Error(), step+": "), err: err}
			}
			return err
		}
	}
}

// cutShort is the error of a part the mail ended inside: its words say so
// (and name the part once), and it wraps what reading the part found.
type cutShort struct {
	msg string
	err error
}

func (c *cutShort) Error() string { return c.msg }
func (c *cutShort) Unwrap() error { return c.err }

// unclosedEnd reads the body of a part that may run to the end of a mail
// without a closing boundary: the end of the mail ends the part, as a
// boundary would (the multipart reader calls it io.ErrUnexpectedEOF).
// Whether the part is whole is for what reads it to say.
type unclosedEnd struct {
	r       io.Reader
	reached bool // the part ran to the end of the mail
}

func (u *unclosedEnd) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		u.reached = true
		err = io.EOF
	}
	return n, err
}

func (w *walker) document(p string, kind Kind, body io.Reader) error {
	w.found++
	if err := w.fn(Document{Part: p, Kind: kind, Body: body}); err != nil {
		return fmt.Errorf("%s%w", prefix(p), err)
	}
	return nil
}

// mimeErr names the part when reading its body failed (bad base64, a
// part cut short).
func mimeErr(p string, err error) error {
	if err == nil {
		return nil
	}
	var cErr *containerError
	if errors.As(err, &cErr) || p == "" {
		return err
	}
	return fmt.Errorf("%sread MIME body: %w", prefix(p), err)
}

func partNum(num string, i int) string {
	if num == "" {
		return strconv.Itoa(i)
	}
	return num + "." + strconv.Itoa(i)
}

// isBodyText is true for the human-readable text of a mail: text/plain or
// text/html that is not an attachment with a file name. text/xml and
// named text attachments are sniffed like any other leaf.
func isBodyText(mediaType string, h message.Header) bool {
	switch mediaType {
	case "text/plain", "text/html", "text/enriched", "text/rfc822-headers":
		return fileName(h) == ""
	}
	return strings.HasPrefix(mediaType, "image/")
}

// fileName returns the file name of a MIME part from Content-Disposition
// or, as older mailers write it, the name parameter of Content-Type;
// RFC 2231 continuations and RFC 2047 words are decoded by go-message.
func fileName(h message.Header) string {
	if _, params, err := h.ContentDisposition(); err == nil && params["filename"] != "" {
		return params["filename"]
	}
	if _, params, err := h.ContentType(); err == nil {
		return params["name"]
	}
	return ""
}
