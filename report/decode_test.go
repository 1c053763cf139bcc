package report

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func agg(dir, name string) string { return filepath.Join("..", "testdata", dir, name) }

// TestLeniency shows, with a real file each, that the quirks real
// reporters produce are read, and read right.
func TestLeniency(t *testing.T) {
	tests := []struct {
		quirk string
		file  string
		check func(t *testing.T, p *parsed)
	}{
		{"no namespace, no version", agg("corpus/aggregate", "dmarcviewer__yahoo.xml"), func(t *testing.T, p *parsed) {
			eq(t, "namespace", p.reps[0].Namespace, "")
			eq(t, "version", p.reps[0].Version, "")
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "Yahoo")
		}},
		{"dmarc-2.0 namespace (GMX) with version 1.0", agg("corpus/aggregate", "dmarcviewer__gmxnet.xml"), func(t *testing.T, p *parsed) {
			eq(t, "namespace", p.reps[0].Namespace, "urn:ietf:params:xml:ns:dmarc-2.0")
			eq(t, "version", p.reps[0].Version, "1.0")
			eq(t, "discovery_method", p.reps[0].Policy.DiscoveryMethod, DiscoveryPSL)
			eq(t, "testing", p.reps[0].Policy.Testing, TestingNo)
			eq(t, "records", len(p.recs[0]), 1)
		}},
		{"RFC 9990 example: disposition pass, np, generator", agg("corpus/aggregate", "ietfdmarc__dmarc-xml-0.2.xml"), func(t *testing.T, p *parsed) {
			r := p.recs[0][0]
			eq(t, "disposition", r.Disposition, DispositionPass)
			eq(t, "count", r.Count, uint64(123))
			eq(t, "np", p.reps[0].Policy.NP, PolicyNone)
			eq(t, "generator", p.reps[0].Metadata.Generator, "Example DMARC Aggregate Reporter v1.2")
			eq(t, "discovery_method", p.reps[0].Policy.DiscoveryMethod, DiscoveryTreewalk)
		}},
		{"RFC 9990 reason policy_test_mode", agg("derived", "rfc9990-policy-test-mode.xml"), func(t *testing.T, p *parsed) {
			r := p.recs[0][0]
			eq(t, "testing", p.reps[0].Policy.Testing, TestingYes)
			eq(t, "reasons", len(r.Reasons), 1)
			eq(t, "reason", r.Reasons[0].Type, ReasonPolicyTestMode)
		}},
		{"version 0.1 (Amazon SES)", agg("corpus/aggregate", "godmarcanalyzer__valid2.xml"), func(t *testing.T, p *parsed) {
			eq(t, "version", p.reps[0].Version, "0.1")
		}},
		{"capitalised enums and hardfail", agg("derived", "yahoo-hardfail-capitalised.xml"), func(t *testing.T, p *parsed) {
			r := p.recs[0][0]
			eq(t, "disposition", r.Disposition, DispositionReject)
			eq(t, "policy spf", r.SPF, DMARCFail)
			eq(t, "spf result", r.SPFResults[0].Result, SPFFail)
			eq(t, "dkim result", r.DKIMResults[0].Result, DKIMPass)
		}},
		{"upper-cased Pass in a real report", agg("corpus/aggregate", "parsedmarc__report_with_upper_cased_pass.xml"), func(t *testing.T, p *parsed) {
			for _, r := range p.recs[0] {
				for _, d := range r.DKIMResults {
					if d.Result == DKIMOther {
						t.Errorf("DKIM result read as other: %+v", d)
					}
				}
				for _, s := range r.SPFResults {
					if s.Result == SPFOther {
						t.Errorf("SPF result read as other: %+v", s)
					}
				}
			}
		}},
		{"<identities> for <identifiers>", agg("corpus/aggregate", "qtdmarc__real-gcisdns.net.xml"), func(t *testing.T, p *parsed) {
			if p.recs[0][0].HeaderFrom == "" {
				t.Error("header_from not read from <identities>")
			}
		}},
		{"UTF-8 BOM, document on one line", agg("corpus/aggregate", "qtdmarc__real-hotmail-1.xml"), func(t *testing.T, p *parsed) {
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "Microsoft Corp.")
			eq(t, "records", len(p.recs[0]), 2)
		}},
		{"whitespace before the XML declaration", agg("corpus/aggregate", "pkerrigan__dmarc-1-space.xml"), func(t *testing.T, p *parsed) {
			eq(t, "domain", p.reps[0].Policy.Domain, "patrickkerrigan.uk")
		}},
		{"encoding=windows-1252 (AOL)", agg("corpus/aggregate", "dmarcaggparser__dmarc.xml"), func(t *testing.T, p *parsed) {
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "AOL")
		}},
		{"ISO-8859-1 with a non-ASCII name", agg("derived", "outlook-latin1.xml"), func(t *testing.T, p *parsed) {
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "Enterprise Outlook Münch")
		}},
		{"UTF-16LE with BOM", agg("derived", "outlook-utf16le.xml"), func(t *testing.T, p *parsed) {
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "Enterprise Outlook")
			eq(t, "records", len(p.recs[0]), 1)
		}},
		{"UTF-16BE without BOM", agg("derived", "outlook-utf16be-nobom.xml"), func(t *testing.T, p *parsed) {
			eq(t, "org_name", p.reps[0].Metadata.OrgName, "Enterprise Outlook")
			eq(t, "records", len(p.recs[0]), 1)
		}},
		{"empty elements", agg("corpus/aggregate", "drconverter__test_empty.xml"), func(t *testing.T, p *parsed) {
			r := p.recs[0][0]
			eq(t, "disposition", r.Disposition, Disposition(""))
			if r.Problem == "" || r.Count != 0 {
				t.Errorf("record without source_ip not flagged: %+v", r)
			}
		}},
		{"empty reason type and comment", agg("corpus/aggregate", "parsedmarc__empty_reason.xml"), func(t *testing.T, p *parsed) {
			eq(t, "reasons", len(p.recs[0][0].Reasons), 1)
			eq(t, "reason type", p.recs[0][0].Reasons[0].Type, ReasonType(""))
		}},
		{"IPv6 sources", agg("corpus/aggregate", "parsedmarc__nice-input.xml"), func(t *testing.T, p *parsed) {
			v6 := 0
			for _, r := range p.recs[0] {
				if r.SourceIP.Is6() {
					v6++
				}
			}
			if v6 == 0 {
				t.Error("no IPv6 source read")
			}
		}},
		{"two SPF results in one record", agg("corpus/aggregate", "communitales__report_multiple_spf.xml"), func(t *testing.T, p *parsed) {
			max := 0
			for _, r := range p.recs[0] {
				max = maxInt(max, len(r.SPFResults))
			}
			eq(t, "most SPF results", max, 2)
		}},
		{"three DKIM results in one record (Outlook mail)", agg("corpus/email", "mailauth__103.eml"), func(t *testing.T, p *parsed) {
			eq(t, "DKIM results", len(p.recs[0][0].DKIMResults), 3)
		}},
		{"whitespace around date_range values", agg("corpus/aggregate", "qtdmarc__real-yahoo-1.xml"), func(t *testing.T, p *parsed) {
			eq(t, "begin", p.reps[0].Metadata.Begin.Unix(), int64(1361318400))
		}},
		{"extensions kept opaque, unknown elements skipped", agg("corpus/aggregate", "mailauth__001.xml"), func(t *testing.T, p *parsed) {
			eq(t, "report extensions", len(p.reps[0].Extensions), 1)
			eq(t, "extension name", p.reps[0].Extensions[0].Name, "otherExtension")
			eq(t, "extension xml", p.reps[0].Extensions[0].XML, "<data>...</data>")
			eq(t, "record extensions", len(p.recs[0][0].Extensions), 2)
			eq(t, "pct absent", p.reps[0].Policy.Pct == nil, true)
		}},
		{"trusted_forwarder override with comment", agg("corpus/aggregate", "mailauth__003.xml"), func(t *testing.T, p *parsed) {
			eq(t, "reason", p.recs[0][0].Reasons[0].Type, ReasonTrustedForwarder)
			eq(t, "comment", p.recs[0][0].Reasons[0].Comment, "Policy ignored due to local white list")
		}},
		{"forwarded as message/rfc822", agg("derived", "forwarded-google-report.eml"), func(t *testing.T, p *parsed) {
			eq(t, "counts", p.counts[0], [2]uint64{2, 4}) // as freitagsrunde__google.eml in MANIFEST
		}},
		{"quoted-printable text/xml attachment", agg("derived", "yahoo-quoted-printable.eml"), func(t *testing.T, p *parsed) {
			eq(t, "counts", p.counts[0], [2]uint64{1, 1}) // as dmarcviewer__yahoo.xml in MANIFEST
		}},
		{"report_metadata error element", agg("corpus/aggregate", "dmarcviewer__acme.xml"), func(t *testing.T, p *parsed) {
			eq(t, "errors", len(p.reps[0].Metadata.Errors), 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.quirk, func(t *testing.T) {
			p, err := parseFile(tt.file, DefaultLimits())
			if err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
			if len(p.reps) == 0 {
				t.Fatal("no report")
			}
			tt.check(t, p)
		})
	}
}

// TestWrongValues: values that are wrong, not odd, fail the report or flag
// the record, as the package comment says.
func TestWrongValues(t *testing.T) {
	for _, tt := range []struct {
		file string
		want string
	}{
		{"yahoo-begin-after-end.xml", "date_range begins (2026-06-19T20:13:20Z) after it ends (2026-06-18T23:59:59Z)"},
		{"yahoo-no-report-id.xml", "report_metadata has no report_id"},
		{"yahoo-no-domain.xml", "policy_published has no domain"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			_, err := parseFile(agg("derived", tt.file), DefaultLimits())
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInvalid with %q", err, tt.want)
			}
		})
	}

	t.Run("flagged records", func(t *testing.T) {
		p, err := parseFile(agg("derived", "yahoo-bad-counts.xml"), DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		recs := p.recs[0]
		eq(t, "records", len(recs), 3)
		eq(t, "messages", p.counts[0][1], uint64(7))
		eq(t, "problem 1", recs[0].Problem, `count "-3" is not a non-negative integer`)
		eq(t, "problem 2", recs[1].Problem, `count "lots" is not a non-negative integer; source_ip "not-an-ip" is not an IP address`)
		eq(t, "problem 3", recs[2].Problem, "")
	})
	t.Run("absurd count", func(t *testing.T) {
		p, err := parseFile(agg("derived", "yahoo-absurd-count.xml"), DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "messages", p.counts[0][1], uint64(0))
		eq(t, "problem", p.recs[0][0].Problem, "count 99999999999999999 larger than 1000000000")
	})
}

func TestEnums(t *testing.T) {
	eq(t, "hardfail", ParseSPFResult(" HardFail "), SPFFail)
	eq(t, "dkim hardfail", ParseDKIMResult("hardfail"), DKIMFail)
	eq(t, "unknown", ParseSPFResult("maybe"), SPFOther)
	eq(t, "empty", ParseSPFResult("  "), SPFResult(""))
	eq(t, "policy softfail", ParseDMARCResult("softfail"), DMARCFail)
	eq(t, "policy garbage", ParseDMARCResult("<script>"), DMARCOther)
	eq(t, "disposition", ParseDisposition("QUARANTINE"), DispositionQuarantine)
	eq(t, "alignment", ParseAlignment("relaxed"), AlignmentRelaxed)
	eq(t, "reason", ParseReasonType("Mailing_List"), ReasonMailingList)
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TestParseSourceIP: the address forms reporters write, read where their
// meaning is plain, refused where it is not.
func TestParseSourceIP(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{" 192.0.2.1\n", "192.0.2.1"},
		{"192.000.002.010", "192.0.2.10"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"::FFFF:010.001.002.003", "10.1.2.3"},
		{"2001:db8::1", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"fe80::1%eth0", ""},
		{"[fe80::1%eth0]", ""},
		{"192.0.2.256", ""},
		{"192.0.2", ""},
		{"0x7f.0.0.1", ""},
		{"1234.0.0.1", ""},
		{"2001:db8::192.000.002.001", ""},
		{"not-an-ip", ""},
		{"", ""},
	} {
		addr, ok := ParseSourceIP(tt.in)
		got := ""
		if ok {
			got = addr.String()
		}
		if got != tt.want {
			t.Errorf("ParseSourceIP(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestStrayStartTag: a start tag before <feedback> that never closes is
// dropped when what is left is a well-formed <feedback> document, and
// said so in the repairs; anything else around <feedback> is refused.
func TestStrayStartTag(t *testing.T) {
	const feedback = `<feedback><report_metadata><org_name>x</org_name><email>a@x.test</email><report_id>1</report_id>` +
		`<date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>` +
		`<policy_published><domain>example.com</domain><p>none</p></policy_published>` +
		`<record><row><source_ip>192.0.2.1</source_ip><count>3</count><policy_evaluated><disposition>none</disposition>` +
		`<dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from></identifiers></record></feedback>`
	for _, tt := range []struct{ name, doc, err string }{
		{"unclosed", `<?xml version="1.0"?>` + "\n" + `<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">` + "\n" + feedback + "\n", ""},
		{"closed", `<wrap>` + feedback + `</wrap>`, ""},
		{"content after feedback", `<wrap>` + feedback + `<record/>`, "content after </feedback> inside the unclosed <wrap>"},
		{"text before feedback", `<wrap>hello` + feedback, "root element is <wrap>, not <feedback>"},
		{"element before feedback", `<wrap><other/>` + feedback, "root element is <wrap>, not <feedback>"},
		{"empty wrapper", `<wrap/>`, "root element is <wrap>, not <feedback>"},
		{"truncated feedback", `<wrap>` + feedback[:len(feedback)-20], "truncated"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dec := NewAggregateDecoder(strings.NewReader(tt.doc), DefaultLimits())
			hdr, err := dec.Header()
			n := 0
			if err == nil {
				for _, err = range dec.All() {
					if err != nil {
						break
					}
					n++
				}
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("%d records, error %v", n, err)
			}
			if hdr.Repairs.StrayStartTag == "" {
				t.Error("the dropped start tag is not in the repairs")
			}
		})
	}
}

// TestMailWithoutClosingBoundary: a mail whose multipart body has no
// closing boundary is read up to its end; when the last part was cut
// short, the error says the mail ends inside it. The cut mails are the
// corpus's Mail.ru mail without its last 200 bytes, and the TLS report
// mail cut right after its first boundary line.
func TestMailWithoutClosingBoundary(t *testing.T) {
	mailru := readTestFile(t, "corpus", "email/mox__mailru-no-closing-boundary.eml")
	tlsrpt := readTestFile(t, "corpus", "email/tlsrptbe__test.eml")
	for _, tt := range []struct {
		name string
		data []byte
		err  string
	}{
		{"mailru", mailru, ""},
		{"tlsrpt", tlsrpt, ""},
		{"cut inside the report", mailru[:len(mailru)-200],
			`mail ends inside part 2 ("mail.ru!ueber.net!1559779200!1559865600.xml.gz"), without a closing boundary: read: gunzip: unexpected EOF`},
		{"cut before the first part", tlsrpt[:bytes.Index(tlsrpt, []byte("\n------=_NextPart"))+12],
			"mail ends before its MIME part 1, without a closing boundary"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseReader(bytes.NewReader(tt.data), DefaultLimits())
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(p.kinds) != 1 {
				t.Fatalf("%d reports, want 1", len(p.kinds))
			}
		})
	}
}

// TestEximFailureReport: Exim's own failure report format (no ARF part,
// the fields in words, then the returned headers) is read as a failure
// report with the ARF fields it means.
func TestEximFailureReport(t *testing.T) {
	p, err := parseFile(filepath.Join(corpusDir, "failure/parsedmarc__exim_plain_text_only_no_arf_part.eml"), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.failures) != 1 {
		t.Fatalf("%d failure reports (kinds %v)", len(p.failures), p.kinds)
	}
	f := p.failures[0]
	eq(t, "domain", f.Domain(), "example.com")
	eq(t, "source IP", f.SourceIP.String(), "203.0.113.68")
	eq(t, "auth failure", f.AuthFailure, AuthFailure("dmarc"))
	eq(t, "delivery result", f.DeliveryResult, DeliveryResult("delivered"))
	eq(t, "identity alignment", f.IdentityAlignment, "none")
	eq(t, "arrival", f.ArrivalDate.Format(time.RFC3339), "2025-04-07T21:16:09Z")
	eq(t, "original subject", f.Original.Subject, "Payment from your account.")
	eq(t, "identity", f.Identity, "message-id:<E1u1tpB-00AA5u-ED@node04.mailgate.example.net>")

	// The same words in a mail that is not a report are not one.
	mail := "From: a@example.com\r\nSubject: hello\r\nContent-Type: text/plain\r\n\r\nWe met at the Sender Domain: example.com stand.\r\n"
	if _, err := parseReader(strings.NewReader(mail), DefaultLimits()); !errors.Is(err, ErrNoReport) {
		t.Errorf("a plain mail: %v, want ErrNoReport", err)
	}
}

// TestRejectKinds: every crossed bound is ErrLimit (too_large), and JSON
// that is no SMTP TLS report at all is ErrNoReport (no_report), not a
// malformed one.
func TestRejectKinds(t *testing.T) {
	lim := DefaultLimits()
	for _, tt := range []struct {
		name string
		doc  string
		want error
	}{
		{"long tag", `<feedback a="` + strings.Repeat("x", 2<<20) + `"/>`, ErrLimit},
		{"long text", "<feedback><report_metadata><org_name>" + strings.Repeat("x", 2<<20) + "</org_name></report_metadata></feedback>", ErrLimit},
		{"many attributes", "<feedback" + manyAttrs(300) + "/>", ErrLimit},
		{"JSON schema", `{"$schema": "http://json-schema.org/draft-07/schema#", "title": "SMTP TLS report", "type": "object"}`, ErrNoReport},
		{"JSON array", `[1, 2, 3]`, ErrNoReport},
		{"TLS report without report-id", `{"organization-name": "x", "policies": []}`, ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReader(strings.NewReader(tt.doc), lim)
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d=\"1\"", i)
	}
	return b.String()
}

// TestFailureLongText: an ARF report whose human-readable text part is
// longer than the head read for Exim's fields is read all the same.
func TestFailureLongText(t *testing.T) {
	mail := "From: abuse@163.com\r\nMessage-ID: <long@163.com>\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\n" + strings.Repeat("This is an authentication failure report.\r\n", 10_000) +
		"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: auth-failure\r\nAuth-Failure: dmarc\r\nSource-IP: 192.0.2.1\r\nReported-Domain: example.com\r\n\r\n" +
		"--b--\r\n"
	p, err := parseReader(strings.NewReader(mail), DefaultLimits())
	if err != nil || len(p.failures) != 1 {
		t.Fatalf("%d failure reports, error %v", len(p.failures), err)
	}
}
