package explorer

import (
	"strings"
	"testing"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

func TestExplain(t *testing.T) {
	dkim := func(domain string, result report.DKIMResult) report.DKIMAuth {
		return report.DKIMAuth{Domain: domain, Selector: "s1", Result: result}
	}
	spf := func(domain string, result report.SPFResult) report.SPFAuth {
		return report.SPFAuth{Domain: domain, Scope: "mfrom", Result: result}
	}
	for _, c := range []struct {
		name        string
		rec         archive.RecordRow
		adkim, aspf string
		want        []string // each in the explanation
	}{
		{name: "both aligned",
			rec:  archive.RecordRow{DKIM: "pass", SPF: "pass", DMARC: "pass", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "pass")}, SPFResults: []report.SPFAuth{spf("example.com", "pass")}},
			want: []string{"DKIM and SPF passed", "example.com"}},
		{name: "forwarded: SPF for the forwarder, no DKIM",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", SPFResults: []report.SPFAuth{spf("forwarder.example.net", "pass")}},
			want: []string{"SPF passed for forwarder.example.net", "not yours", "DKIM missing", "likely forwarding"}},
		{name: "DKIM only, SPF failed on the way (forwarding)",
			rec:  archive.RecordRow{DKIM: "pass", SPF: "fail", DMARC: "pass", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "pass")}, SPFResults: []report.SPFAuth{spf("example.com", "softfail")}},
			want: []string{"DKIM passed", "SPF softfail for example.com", "forwarding"}},
		{name: "SPF only: sign with DKIM",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "pass", DMARC: "pass", HeaderFrom: "example.com", SPFResults: []report.SPFAuth{spf("example.com", "pass")}},
			want: []string{"SPF passed", "DKIM missing", "DKIM key"}},
		{name: "third party signing with its own domain",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("evastores.com", "pass")}, SPFResults: []report.SPFAuth{spf("example.com", "fail")}},
			want: []string{"DKIM signed by evastores.com, not your domain", "SPF fail for example.com", "without your DKIM key"}},
		{name: "own signature broken: a mailing list",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "fail")}, SPFResults: []report.SPFAuth{spf("lists.example.org", "pass")}, Reasons: []report.Reason{{Type: "mailing_list"}}},
			want: []string{"did not verify", "a mailing list"}},
		{name: "nothing at all: spoofing",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", SPFResults: []report.SPFAuth{spf("example.com", "fail")}},
			want: []string{"SPF fail for example.com", "DKIM missing", "spoofing"}},
		{name: "relaxed alignment: a subdomain aligns",
			rec:  archive.RecordRow{DKIM: "pass", SPF: "pass", DMARC: "pass", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("mail.example.com", "pass")}},
			want: []string{"DKIM and SPF passed"}},
		{name: "strict alignment: a subdomain does not",
			rec:   archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("mail.example.com", "pass")}},
			adkim: "s", want: []string{"DKIM signed by mail.example.com, not aligned under strict alignment (adkim=s)", "relaxed alignment"}},
		{name: "an ESP's return path with aligned DKIM",
			rec:  archive.RecordRow{DKIM: "pass", SPF: "fail", DMARC: "pass", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "pass")}, SPFResults: []report.SPFAuth{spf("em123.sendgrid.net", "pass")}},
			want: []string{"SPF passed for em123.sendgrid.net, not your domain", "return path"}},
		{name: "a missing DKIM key is no modification",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "pass", DMARC: "pass", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "permerror")}, SPFResults: []report.SPFAuth{spf("example.com", "pass")}},
			want: []string{"permerror", "key is missing or broken in DNS"}},
		{name: "a passing HELO is not the MAIL FROM",
			rec: archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com",
				SPFResults: []report.SPFAuth{{Domain: "bounce.example.net", Scope: "mfrom", Result: "fail"}, {Domain: "mail.example.com", Scope: "helo", Result: "pass"}}},
			want: []string{"SPF fail for bounce.example.net", "DKIM missing"}},
		{name: "domains off the public suffix list align only with themselves",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "corp.internal", DKIMResults: []report.DKIMAuth{dkim("evil.lan", "pass")}},
			want: []string{"DKIM signed by evil.lan, not your domain"}},
		{name: "the reporter contradicts itself",
			rec:  archive.RecordRow{DKIM: "fail", SPF: "fail", DMARC: "fail", HeaderFrom: "example.com", DKIMResults: []report.DKIMAuth{dkim("example.com", "pass")}, SPFResults: []report.SPFAuth{spf("example.com", "pass")}},
			want: []string{"DKIM passed", "SPF passed", "contradicts"}},
		{name: "not counted",
			rec:  archive.RecordRow{DMARC: "fail", Problem: "count missing"},
			want: []string{"Not counted: count missing"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.rec.Status = archive.RecordStatus(c.rec.DKIM, c.rec.SPF, c.rec.DMARC)
			got := explain(&c.rec, c.adkim, c.aspf)
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("explanation %q lacks %q", got, w)
				}
			}
			if strings.Contains(got, "\n") {
				t.Errorf("explanation %q is more than one line", got)
			}
		})
	}
}
