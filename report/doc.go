// Package report finds DMARC reports in files and mails and decodes
// aggregate reports.
//
// Two steps, so that a report of any size is read in constant memory:
//
//   - Walk finds the reports inside an input: raw XML, gzip, zip, or an
//     RFC 5322 mail whose MIME tree it walks (multipart/*, nested
//     message/rfc822, base64, quoted-printable, binary; RFC 2231 and
//     folded file names). The container is told by its bytes, never by a
//     name or a Content-Type, because reporters get both wrong (Amazon SES
//     sends gzip as application/octet-stream, Google sends a mail whose
//     whole body is a zip). One input may hold several reports.
//   - AggregateDecoder reads one aggregate report (RFC 7489 Appendix C,
//     the pre-RFC drafts, RFC 9990) from a token stream and returns its
//     records one at a time.
//
// Walk also finds failure reports (RFC 9991), which ParseFailure decodes
// (failure.go), and SMTP TLS reports (RFC 8460), which ParseTLSReport
// decodes (tlsrpt.go).
//
// # Leniency
//
// Real reports rarely validate against any schema. The decoder accepts:
//
//   - elements matched by local name, whatever their namespace (none,
//     http://dmarc.org/dmarc-xml/0.1, urn:ietf:params:xml:ns:dmarc-2.0),
//     and any <version> or none;
//   - a UTF-8 byte order mark or whitespace before the XML declaration,
//     UTF-16 with a byte order mark, and any encoding the declaration
//     names that golang.org/x/net/html/charset knows (windows-1252,
//     ISO-8859-x, ...);
//   - enumerated values in any case and with surrounding whitespace;
//     "hardfail" as fail; unknown values as the type's Other value, so
//     that every enumeration is a closed set (see enums.go);
//   - <identities> for <identifiers>; unknown elements anywhere (skipped);
//     empty elements; several DKIM and SPF results per record; RFC 9990's
//     disposition "pass", reason "policy_test_mode", np, testing,
//     discovery_method and generator; <extension> elements, kept opaque.
//
// # Wrong values
//
// A value that is wrong rather than odd either fails the report or flags
// the record, and never turns into a count:
//
//   - The report fails (ErrInvalid) when it has no report_metadata,
//     report_id, date_range, or policy_published domain, or when the date
//     range begins after it ends. Without these a report cannot be
//     identified or attributed.
//   - A record is flagged (Record.Problem set, Count 0) when its count is
//     missing, negative, not a number or larger than Limits.MaxCount, or
//     when its source_ip is missing or not an IP address. The rest of the
//     report is sound and is kept; the caller counts flagged records.
//
// XML that is not well-formed fails the report with the line where
// decoding stopped. Since records are returned as they are read, such an
// error can come after records were returned: callers keep records
// pending until Next returns io.EOF.
//
// # Limits
//
// Limits bounds every cost an input can impose: decompressed bytes per
// stream (1 GiB by default; output is streamed, never held), zip archive
// size (64 MiB, held for random access), zip members and MIME parts (100),
// container nesting (5), records per report (2,000,000), XML nesting (32)
// and text length (64 KiB). Crossing one fails the input with ErrLimit and
// names the limit.
package report
