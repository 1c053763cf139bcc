package report

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLimits keep each fuzz input cheap.
func fuzzLimits() Limits {
	lim := DefaultLimits()
	lim.MaxDecompressedBytes = 4 << 20
	lim.MaxArchiveBytes = 4 << 20
	lim.MaxRecords = 1000
	return lim
}

// addSeeds adds every file of the given testdata folders no larger than
// max bytes to the fuzz corpus.
func addSeeds(f *testing.F, max int64, dirs ...string) {
	for _, dir := range dirs {
		paths, _ := filepath.Glob(filepath.Join("..", "testdata", dir, "*"))
		for _, p := range paths {
			if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Size() > max {
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
}

// checkRecord asserts what a consumer relies on: bounded counts, closed
// enumerations, no count on a record with a bad count, and a flag on every
// record without a source address.
func checkRecordInvariants(t *testing.T, lim Limits, r *Record) {
	if r.Count > lim.MaxCount {
		t.Fatalf("count %d above MaxCount", r.Count)
	}
	if r.BadCount && r.Count != 0 {
		t.Fatalf("record with a bad count counts %d", r.Count)
	}
	if (r.BadCount || r.BadSourceIP) != (r.Problem != "") {
		t.Fatalf("problem %q, bad count %v, bad source IP %v", r.Problem, r.BadCount, r.BadSourceIP)
	}
	if r.BadSourceIP == r.SourceIP.IsValid() {
		t.Fatalf("source IP %v, flagged bad %v", r.SourceIP, r.BadSourceIP)
	}
	if ParseDisposition(string(r.Disposition)) != r.Disposition || ParseDMARCResult(string(r.DKIM)) != r.DKIM ||
		ParseDMARCResult(string(r.SPF)) != r.SPF {
		t.Fatalf("value outside its closed set: %+v", r)
	}
	for _, d := range r.DKIMResults {
		if ParseDKIMResult(string(d.Result)) != d.Result {
			t.Fatalf("DKIM result %q outside its closed set", d.Result)
		}
	}
	for _, s := range r.SPFResults {
		if ParseSPFResult(string(s.Result)) != s.Result {
			t.Fatalf("SPF result %q outside its closed set", s.Result)
		}
	}
}

// decodeAll decodes one aggregate document, checking invariants.
func decodeAll(t *testing.T, r io.Reader, lim Limits) {
	dec := NewAggregateDecoder(r, lim)
	hdr, err := dec.Header()
	if err != nil {
		return
	}
	if hdr.Metadata.ReportID == "" || hdr.Policy.Domain == "" || hdr.Metadata.Begin.After(hdr.Metadata.End) {
		t.Fatalf("header accepted without its required values: %+v", hdr)
	}
	n := 0
	for {
		rec, err := dec.Next()
		if err != nil {
			break
		}
		n++
		if n > lim.MaxRecords {
			t.Fatalf("more than MaxRecords records returned")
		}
		checkRecordInvariants(t, lim, rec)
	}
}

func FuzzAggregateDecoder(f *testing.F) {
	addSeeds(f, 256<<10, "corpus/aggregate", "derived")
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeAll(t, bytes.NewReader(data), lim)
	})
}

// FuzzWalk feeds any bytes to the container sniffer and walker, and decodes
// what it finds.
func FuzzWalk(f *testing.F) {
	addSeeds(f, 256<<10, "corpus/aggregate", "corpus/email", "corpus/failure", "corpus/smtp_tls")
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Walk(bytes.NewReader(data), lim, func(d Document) error {
			switch d.Kind {
			case KindSMTPTLS:
				_, err := ParseTLSReport(d.Body, lim)
				return err
			case KindFailure:
				_, err := ParseFailure(d.Body, lim)
				return err
			}
			decodeAll(t, d.Body, lim)
			return nil
		})
	})
}

// FuzzMail starts the walker at the MIME layer, so that mutations are not
// spent on inputs that do not sniff as mail.
func FuzzMail(f *testing.F) {
	addSeeds(f, 256<<10, "corpus/email", "corpus/failure")
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		w := &walker{lim: lim, fn: func(d Document) error {
			_, err := io.Copy(io.Discard, d.Body)
			return err
		}}
		_ = w.mail("", bytes.NewReader(data), 0)
	})
}

// FuzzTLSReport: any bytes give a report within bounds or an error.
func FuzzTLSReport(f *testing.F) {
	addSeeds(f, 64<<10, "corpus/smtp_tls")
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseTLSReport(bytes.NewReader(data), lim)
		if err != nil {
			return
		}
		if r.ReportID == "" || len(r.Policies) == 0 || len(r.Policies) > maxTLSItems || r.Begin.After(r.End) {
			t.Fatalf("report accepted without its required values or over bounds: %+v", r)
		}
		for _, p := range r.Policies {
			if p.Domain == "" || ParseTLSPolicyType(string(p.Type)) != p.Type || len(p.Failures) > maxTLSItems ||
				p.Successful > lim.MaxCount || p.Failed > lim.MaxCount {
				t.Fatalf("policy out of bounds: %+v", p)
			}
			for _, fd := range p.Failures {
				if ParseTLSResultType(string(fd.ResultType)) != fd.ResultType {
					t.Fatalf("result type %q outside its closed set", fd.ResultType)
				}
			}
		}
	})
}

// FuzzFailure: any bytes give a failure report with closed-set values, or
// an error.
func FuzzFailure(f *testing.F) {
	addSeeds(f, 64<<10, "corpus/failure")
	lim := fuzzLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseFailure(bytes.NewReader(data), lim)
		if err != nil {
			return
		}
		if r.Domain() == "" || r.FeedbackType != "auth-failure" ||
			ParseAuthFailure(string(r.AuthFailure)) != r.AuthFailure && r.AuthFailure != "dmarc" ||
			ParseDeliveryResult(string(r.DeliveryResult)) != r.DeliveryResult {
			t.Fatalf("failure report out of bounds: %+v", r)
		}
		red := r.Redacted()
		for _, s := range []string{red.Reporter, red.OriginalMailFrom, red.OriginalRcptTo, red.Original.From, red.Original.To} {
			for _, a := range strings.Split(s, ", ") {
				if a != "" && a != "*" && !(strings.HasPrefix(a, "*@") && isHostname(a[2:])) {
					t.Fatalf("redacted address list %q keeps more than domains", s)
				}
			}
		}
	})
}
