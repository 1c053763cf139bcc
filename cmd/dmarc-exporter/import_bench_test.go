package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkImport imports an mbox of DMARC_BENCH_MAILS report mails
// (default 10,000; Google-shaped reports of 10 records, gzip attached)
// into an empty archive with the real binary, and reports the time and
// the peak resident memory, which stays the same whatever the mbox's
// size:
//
//	go test ./cmd/dmarc-exporter -run '^$' -bench BenchmarkImport -benchtime 1x
//	DMARC_BENCH_MAILS=40000 go test ./cmd/dmarc-exporter -run '^$' -bench BenchmarkImport -benchtime 1x
func BenchmarkImport(b *testing.B) {
	mails := envInt(b, "DMARC_BENCH_MAILS", 10_000)
	dir := os.Getenv("DMARC_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	mbox := filepath.Join(dir, fmt.Sprintf("reports-%d.mbox", mails))
	if _, err := os.Stat(mbox); err != nil {
		writeReportMbox(b, mbox, mails)
	}
	info, err := os.Stat(mbox)
	if err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	var peak int64
	for b.Loop() {
		storage := b.TempDir()
		cmd := exec.Command(binary, "--dns.resolver=127.0.0.1:1", "import", "--storage.path="+storage, "--progress=none",
			"--domain=example.com", mbox)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		begin := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("import: %v\n%s", err, out.String())
		}
		took += time.Since(begin)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, ru.Maxrss*1024)
		}
		if !bytes.Contains(out.Bytes(), []byte(fmt.Sprintf("inputs=%d refused=0", mails))) {
			b.Fatalf("the import did not read every mail:\n%s", out.String())
		}
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "s/import")
	b.ReportMetric(float64(took.Microseconds())/float64(b.N)/float64(mails), "µs/mail")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(info.Size())/(1<<20), "mbox-MB")
}

// writeReportMbox writes n mails, each with a gzip aggregate report of 10
// records, from 20 reporters over the days of a year.
func writeReportMbox(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	day := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		begin := day.AddDate(0, 0, i%365)
		reporter := fmt.Sprintf("reporter%d.example", i%20)
		var x bytes.Buffer
		fmt.Fprintf(&x, `<?xml version="1.0" encoding="UTF-8" ?>
<feedback><report_metadata><org_name>%s</org_name><email>noreply-dmarc@%s</email><report_id>%d</report_id>
<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>
<policy_published><domain>example.com</domain><adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct></policy_published>
`, reporter, reporter, i, begin.Unix(), begin.Add(24*time.Hour-time.Second).Unix())
		for r := range 10 {
			fmt.Fprintf(&x, `<record><row><source_ip>192.0.2.%d</source_ip><count>%d</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
<identifiers><header_from>example.com</header_from></identifiers><auth_results><dkim><domain>example.com</domain><selector>s1</selector><result>pass</result></dkim><spf><domain>example.com</domain><result>pass</result></spf></auth_results></record>
`, r+1, 1+(i+r)%9)
		}
		x.WriteString("</feedback>\n")
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(x.Bytes())
		zw.Close()
		enc := base64.StdEncoding.EncodeToString(z.Bytes())
		fmt.Fprintf(w, "From noreply-dmarc@%s %s\n", reporter, begin.Add(30*time.Hour).Format("Mon Jan _2 15:04:05 2006"))
		fmt.Fprintf(w, "From: noreply-dmarc@%s\nTo: dmarc@example.com\nSubject: Report domain: example.com Submitter: %s Report-ID: %d\n"+
			"Date: %s\nMessage-ID: <%d@%s>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n"+
			"--b%d\nContent-Type: text/plain\n\nThis is an aggregate report.\n\n--b%d\nContent-Type: application/gzip; name=\"%s!example.com!%d!%d.xml.gz\"\n"+
			"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"%s!example.com!%d!%d.xml.gz\"\n\n",
			reporter, reporter, i, begin.Add(30*time.Hour).Format(time.RFC1123Z), i, reporter, i, i, i,
			reporter, begin.Unix(), begin.Add(24*time.Hour-time.Second).Unix(), reporter, begin.Unix(), begin.Add(24*time.Hour-time.Second).Unix())
		for len(enc) > 76 {
			w.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		fmt.Fprintf(w, "%s\n--b%d--\n\n", enc, i)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}
