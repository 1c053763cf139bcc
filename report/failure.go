package report

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Failure reports (RFC 9991, formerly RFC 7489 §7.3): ARF messages
// (RFC 5965) of Feedback-Type auth-failure (RFC 6591), with a
// message/feedback-report part and the returned message or its headers.
//
// Lenient: the report part anywhere in the MIME tree (NetEase, forwarded
// through Outlook, sends multipart/mixed), base64 on message/* parts (which
// RFC 2046 forbids), field names in any case, unknown fields. Refused with
// a reason: an ARF message of another Feedback-Type (abuse, fraud, ...),
// which is not an authentication failure report, and a mail without a
// message/feedback-report part, unless it is an Exim failure report in its
// own words (eximReport).

// FailureReport is one DMARC failure report. It holds personal data (the
// addresses and headers of a real message): callers must not put any of it
// in a metric label, and Redacted gives a copy fit to keep.
type FailureReport struct {
	// Reporter is the From address of the report mail.
	Reporter          string          `json:"reporter"`
	FeedbackType      string          `json:"feedback_type"`
	UserAgent         string          `json:"user_agent,omitempty"`
	AuthFailure       AuthFailure     `json:"auth_failure"`
	ReportedDomain    string          `json:"reported_domain,omitempty"`
	SourceIP          netip.Addr      `json:"source_ip"`
	OriginalMailFrom  string          `json:"original_mail_from,omitempty"`
	OriginalRcptTo    string          `json:"original_rcpt_to,omitempty"`
	ArrivalDate       time.Time       `json:"arrival_date"`
	DKIMDomain        string          `json:"dkim_domain,omitempty"`
	DKIMSelector      string          `json:"dkim_selector,omitempty"`
	DKIMIdentity      string          `json:"dkim_identity,omitempty"`
	SPFDNS            string          `json:"spf_dns,omitempty"`
	DeliveryResult    DeliveryResult  `json:"delivery_result"`
	IdentityAlignment string          `json:"identity_alignment,omitempty"`
	Original          OriginalHeaders `json:"original"`
	// Identity tells one report from another: the report mail's
	// Message-ID, else a hash of its feedback fields and the returned
	// headers. Two deliveries of one report have the same Identity.
	Identity string `json:"-"`
}

// OriginalHeaders are fields of the returned message.
type OriginalHeaders struct {
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Subject   string `json:"subject,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Date      string `json:"date,omitempty"`
}

// Domain is the domain the report is about: Reported-Domain, else the
// domain of the returned message's From.
func (f *FailureReport) Domain() string {
	if f.ReportedDomain != "" {
		return f.ReportedDomain
	}
	return addrDomain(f.Original.From)
}

// Redacted returns a copy without personal data: addresses keep only their
// domain ("*@example.com"), display names and the subject and message id
// are dropped; the reporter's address is redacted too, since a person may
// forward a report.
func (f *FailureReport) Redacted() *FailureReport {
	r := *f
	r.Reporter = redactAddr(f.Reporter)
	r.OriginalMailFrom = redactAddr(f.OriginalMailFrom)
	r.OriginalRcptTo = redactAddr(f.OriginalRcptTo)
	r.DKIMIdentity = redactAddr(f.DKIMIdentity)
	r.Original = OriginalHeaders{From: redactAddr(f.Original.From), To: redactAddr(f.Original.To), Date: f.Original.Date}
	return &r
}

// AuthFailure is the Auth-Failure of RFC 6591 §3.2.2 (dmarc from RFC 7489).
type AuthFailure string

// AuthFailures is the closed set, "other" last.
var AuthFailures = []AuthFailure{"dmarc", "dkim", "spf", "adsp", "bodyhash", "revoked", "signature", "other"}

// ParseAuthFailure maps an Auth-Failure value to the closed set.
func ParseAuthFailure(s string) AuthFailure { return oneOf(s, AuthFailures, "other") }

// DeliveryResult is the Delivery-Result of RFC 6591 §3.2.3.
type DeliveryResult string

// DeliveryResults is the closed set, "other" last; "unknown" when absent.
var DeliveryResults = []DeliveryResult{"delivered", "spam", "policy", "reject", "unknown", "other"}

// ParseDeliveryResult maps a Delivery-Result to the closed set.
func ParseDeliveryResult(s string) DeliveryResult {
	if norm(s) == "" {
		return "unknown"
	}
	return oneOf(s, DeliveryResults, "other")
}

// ParseFailure decodes an ARF failure report from a whole mail.
func ParseFailure(r io.Reader, lim Limits) (*FailureReport, error) {
	e, err := message.Read(newLimitReader(r, lim.MaxDecompressedBytes, "failure report"))
	if err != nil && !benignMIME(err) {
		return nil, fmt.Errorf("failure report: read mail: %w", err)
	}
	f := &FailureReport{Reporter: headerAddr(e.Header.Get("From"))}
	reportID := strings.TrimSpace(e.Header.Get("Message-Id"))
	var feedback, original textproto.Header
	var sawFeedback, sawOriginal bool
	var exim *eximFields
	parts := 0
	var walk func(e *message.Entity, depth int) error
	walk = func(e *message.Entity, depth int) error {
		if depth > lim.MaxDepth {
			return fmt.Errorf("failure report: MIME parts nested deeper than %d: %w", lim.MaxDepth, ErrLimit)
		}
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return nil
				}
				if err != nil && (p == nil || !benignMIME(err)) {
					return fmt.Errorf("failure report: MIME part: %w", err)
				}
				if parts++; parts > lim.MaxMembers {
					return fmt.Errorf("failure report: more than %d MIME parts: %w", lim.MaxMembers, ErrLimit)
				}
				if err := walk(p, depth+1); err != nil {
					return err
				}
			}
		}
		mediaType, _, _ := e.Header.ContentType()
		switch {
		case mediaType == "text/plain" && exim == nil && !sawFeedback:
			exim = eximText(e.Body, lim)
		case mediaType == "message/feedback-report" && !sawFeedback:
			h, err := readFields(e.Body, lim)
			if err != nil {
				return fmt.Errorf("failure report: message/feedback-report part: %w", err)
			}
			feedback, sawFeedback = h, true
		case (mediaType == "message/rfc822" || mediaType == "text/rfc822-headers" || mediaType == "message/rfc822-headers") && !sawOriginal:
			h, err := readFields(e.Body, lim)
			if err == nil {
				original, sawOriginal = h, true
			}
		}
		_, err := io.Copy(io.Discard, e.Body)
		return err
	}
	if err := walk(e, 0); err != nil {
		return nil, err
	}
	if !sawFeedback && exim != nil {
		// Exim's own format: the fields in words, then the returned
		// headers, in one text part.
		feedback, original, sawFeedback, sawOriginal = exim.feedback, exim.original, true, exim.sawOriginal
	}
	if !sawFeedback {
		return nil, fmt.Errorf("mail has no message/feedback-report part: not an ARF failure report: %w", ErrNoReport)
	}
	get := func(k string) string { return truncate(strings.TrimSpace(feedback.Get(k)), lim.MaxTextBytes) }
	f.FeedbackType = strings.ToLower(get("Feedback-Type"))
	if f.FeedbackType != "auth-failure" {
		return nil, fmt.Errorf("ARF report of Feedback-Type %q, not an authentication failure report: %w", truncate(f.FeedbackType, 40), ErrNotFailure)
	}
	f.UserAgent = get("User-Agent")
	f.AuthFailure = ParseAuthFailure(get("Auth-Failure"))
	if get("Auth-Failure") == "" && get("Identity-Alignment") != "" {
		// NetEase omits Auth-Failure; Identity-Alignment is a field of
		// DMARC failure reports only (RFC 7489 §7.3), so this is one.
		f.AuthFailure = "dmarc"
	}
	f.ReportedDomain = normDomain(get("Reported-Domain"))
	if ip, err := netip.ParseAddr(strings.Trim(get("Source-IP"), "[]")); err == nil {
		f.SourceIP = ip.Unmap().WithZone("")
	}
	f.OriginalMailFrom = strings.Trim(get("Original-Mail-From"), "<>")
	f.OriginalRcptTo = strings.Trim(get("Original-Rcpt-To"), "<>")
	if t, err := mail.ParseDate(get("Arrival-Date")); err == nil {
		f.ArrivalDate = t.UTC()
	}
	f.DKIMDomain = normDomain(get("DKIM-Domain"))
	f.DKIMSelector = get("DKIM-Selector")
	f.DKIMIdentity = get("DKIM-Identity")
	f.SPFDNS = get("SPF-DNS")
	f.DeliveryResult = ParseDeliveryResult(get("Delivery-Result"))
	f.IdentityAlignment = get("Identity-Alignment")
	if sawOriginal {
		oget := func(k string) string { return truncate(strings.TrimSpace(original.Get(k)), 1024) }
		f.Original = OriginalHeaders{From: oget("From"), To: oget("To"), Subject: oget("Subject"),
			MessageID: oget("Message-ID"), Date: oget("Date")}
	}
	if reportID != "" {
		f.Identity = "message-id:" + truncate(reportID, 1024)
	} else {
		h := sha256.New()
		for _, hdr := range []textproto.Header{feedback, original} {
			for fields := hdr.Fields(); fields.Next(); {
				fmt.Fprintf(h, "%s:%s\n", strings.ToLower(fields.Key()), fields.Value())
			}
		}
		f.Identity = "fields:" + hex.EncodeToString(h.Sum(nil))
	}
	if f.Domain() == "" {
		return nil, fmt.Errorf("failure report names no domain (no Reported-Domain, no From in the returned message): %w", ErrInvalid)
	}
	return f, nil
}

// eximFields are the fields of a failure report in Exim's own format
// (cPanel hosts send it): no ARF part, but a text part that says
//
//	Sender Domain: example.com
//	Sender IP Address: 203.0.113.68
//	Received date: Mon, 07 Apr 2025 23:16:09 +0200
//	SPF Alignment: no
//	DKIM Alignment: no
//	DMARC Results: None, Accept
//
//	------ This is a copy of the headers that were received before the error was detected.
//
// and then the returned message's headers. They are mapped to the ARF
// fields they mean.
type eximFields struct {
	feedback, original textproto.Header
	sawOriginal        bool
}

// eximCopyLine introduces the returned headers in Exim's format.
const eximCopyLine = "This is a copy of the headers"

// eximText reads the head of a text part (its first 4 × MaxTextBytes: the
// fields come first; a longer text is no error) as eximReport does.
func eximText(r io.Reader, lim Limits) *eximFields {
	head, _ := io.ReadAll(io.LimitReader(r, int64(lim.MaxTextBytes)*4))
	return eximReport(head)
}

// eximReport reads a text part in Exim's failure report format, or
// returns nil when it is not one: it must give the sender domain and
// address and at least one alignment.
func eximReport(body []byte) *eximFields {
	text, rest, _ := bytes.Cut(body, []byte(eximCopyLine))
	fields := map[string]string{}
	for _, line := range strings.Split(string(text), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	domain, ip := fields["sender domain"], fields["sender ip address"]
	spf, dkim := strings.ToLower(fields["spf alignment"]), strings.ToLower(fields["dkim alignment"])
	if domain == "" || ip == "" || spf == "" && dkim == "" {
		return nil
	}
	x := &eximFields{}
	x.feedback.Set("Feedback-Type", "auth-failure")
	x.feedback.Set("User-Agent", "Exim")
	x.feedback.Set("Reported-Domain", domain)
	x.feedback.Set("Source-IP", ip)
	x.feedback.Set("Arrival-Date", fields["received date"])
	// Exim reports a message that failed DMARC: neither identifier aligned.
	x.feedback.Set("Auth-Failure", "dmarc")
	// RFC 7489 §7.3.1: the identifiers that aligned, "none" for none.
	var aligned []string
	if dkim == "yes" {
		aligned = append(aligned, "dkim")
	}
	if spf == "yes" {
		aligned = append(aligned, "spf")
	}
	if len(aligned) == 0 {
		aligned = []string{"none"}
	}
	x.feedback.Set("Identity-Alignment", strings.Join(aligned, ", "))
	// "DMARC Results: None, Accept": the policy, then what was done.
	if _, action, ok := strings.Cut(fields["dmarc results"], ","); ok {
		x.feedback.Set("Delivery-Result", map[string]string{"accept": "delivered", "reject": "reject",
			"quarantine": "spam"}[strings.ToLower(strings.TrimSpace(action))])
	}
	if len(rest) > 0 {
		// Past the rest of the "------ This is a copy ..." line.
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			rest = bytes.TrimLeft(rest[i+1:], "\r\n")
			if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rest))); err == nil || h.Len() > 0 {
				x.original, x.sawOriginal = h, true
			}
		}
	}
	return x
}

// ErrNotFailure: an ARF message that is not an authentication failure
// report (Feedback-Type abuse, fraud, virus, ...).
var ErrNotFailure = fmt.Errorf("not a DMARC failure report: %w", ErrNoReport)

// readFields reads header fields (RFC 5322 syntax) from a part's body.
func readFields(r io.Reader, lim Limits) (textproto.Header, error) {
	br := bufio.NewReader(newLimitReader(r, int64(lim.MaxTextBytes)*4, "header block"))
	h, err := textproto.ReadHeader(br)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return h, err
	}
	return h, nil
}

// headerAddr returns the address of an address header, or the header as
// it is when it does not parse.
func headerAddr(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return strings.ToLower(a.Address)
	}
	return truncate(strings.TrimSpace(s), 256)
}

// addrDomain returns the domain of an address (in a header or bare).
func addrDomain(s string) string {
	a := headerAddr(s)
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return normDomain(strings.Trim(a[i+1:], "<> "))
	}
	return ""
}

// redactAddr keeps only the domains of an address or address list:
// "*@example.com", or "*" for what does not parse as addresses with a
// domain name.
func redactAddr(s string) string {
	if strings.TrimSpace(s) == "" {
		return ""
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		// A bare address, as in Original-Mail-From.
		a, err := mail.ParseAddress("<" + strings.Trim(strings.TrimSpace(s), "<>") + ">")
		if err != nil {
			return "*"
		}
		list = []*mail.Address{a}
	}
	var out []string
	for _, a := range list {
		d := ""
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
			d = normDomain(a.Address[i+1:])
		}
		if d == "" || !isHostname(d) {
			out = append(out, "*")
			continue
		}
		out = append(out, "*@"+d)
	}
	return strings.Join(out, ", ")
}

// isHostname reports whether s is made of DNS label characters.
func isHostname(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return strings.Contains(s, ".")
}
