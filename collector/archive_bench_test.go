package collector

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// BenchmarkIngestArchive ingests real-shaped Google aggregate reports (10
// records each, over 50 policy domains) into an empty archive as the
// directory source does: Seen and IngestFile for each file, Commit every
// 20 files and once at the end. The 100k case also reports the cost per
// report of its first and its last 10k reports, to show whether ingest
// slows down as the archive grows.
//
// A real-shaped report of 10 records is about 9 KB (bytes/report): Google
// writes 700-900 bytes a record, so a 17 KB report of theirs has some 20
// records. The 100k case holds about 1 GB of generated reports, which
// makes the process's heap, and the cost of its allocations, larger than
// in the 10k case.
//
//	go test ./collector -run '^$' -bench 'BenchmarkIngestArchive/10k' -benchtime 1x
func BenchmarkIngestArchive(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			benchIngestArchive(b, n)
		})
	}
}

const (
	benchDomains       = 50 // policy domains, domain0.example ... domain49.example
	benchRecords       = 10 // records per report
	benchCommitEvery   = 20 // as source/dir.go
	benchChunk         = 10_000
	benchSourceDirPath = "/var/spool/dmarc/google"
)

// benchFile is a generated report file.
type benchFile struct {
	path, mark string
	identity   string // the report's dedup identity
	data       []byte
	messages   uint64 // sum of its record counts
}

func benchIngestArchive(b *testing.B, n int) {
	files := genBenchFiles(n)
	var size, messages uint64
	for _, f := range files {
		size += uint64(len(f.data))
		messages += f.messages
	}

	// Collect and sweep the generator's garbage (a few GB for 100k
	// reports) now, not while the first reports are timed.
	runtime.GC()

	chunks := make([]time.Duration, (n+benchChunk-1)/benchChunk)
	var ingest time.Duration
	var dbBytes int64
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		arc, err := archive.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		// As serve.go with the default configuration: no domains configured
		// (every policy domain is counted, up to 100), no enricher, raw
		// reports kept.
		cfg := config.Default()
		s, err := Open(Options{
			Archive:        arc,
			Dir:            dir,
			Limits:         cfg.Limits,
			DedupRetention: time.Duration(cfg.State.DedupRetention),
			ReportLimits:   report.DefaultLimits(),
			MaxRawBytes:    cfg.Archive.RawLimit(),
			Now:            func() time.Time { return testNow },
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		start := time.Now()
		chunkStart := start
		for i, f := range files {
			if seen, _ := s.Seen(f.path, f.mark); seen {
				b.Fatalf("%s seen before it was read", f.path)
			}
			if err := s.IngestFile("google", f.path, f.mark, bytes.NewReader(f.data)); err != nil {
				b.Fatalf("%s: %v", f.path, err)
			}
			if (i+1)%benchCommitEvery == 0 {
				if err := s.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			if (i+1)%benchChunk == 0 || i == len(files)-1 {
				if i == len(files)-1 {
					if err := s.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				now := time.Now()
				chunks[i/benchChunk] += now.Sub(chunkStart)
				chunkStart = now
			}
		}
		ingest += time.Since(start)

		b.StopTimer()
		var reports, counted uint64
		for _, v := range s.live[reportsFamily] {
			reports += v
		}
		for _, v := range s.live[messagesFamily] {
			counted += v
		}
		if reports != uint64(n) || counted != messages || len(s.live[overflowFamily]) > 0 {
			b.Fatalf("counted %d reports and %d messages (overflow %v), want %d and %d",
				reports, counted, s.live[overflowFamily], n, messages)
		}
		if raw, ok, err := arc.RawReport(files[n-1].identity); err != nil || !ok || !bytes.Equal(raw, files[n-1].data) {
			b.Fatalf("the last report as kept: ok %v, err %v", ok, err)
		}
		// Before Close, which checkpoints the WAL into dmarc.db.
		dbBytes = fileSize(b, filepath.Join(dir, archive.FileName)) + fileSize(b, filepath.Join(dir, archive.FileName+"-wal"))
		if err := arc.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}

	perReport := func(d time.Duration, reports int) float64 {
		return float64(d.Microseconds()) / float64(reports*b.N)
	}
	b.ReportMetric(float64(n*b.N)/ingest.Seconds(), "reports/s")
	b.ReportMetric(perReport(ingest, n), "µs/report")
	b.ReportMetric(float64(size)/float64(n), "bytes/report")
	b.ReportMetric(float64(dbBytes)/float64(n*benchRecords), "db-bytes/record")
	if n >= 2*benchChunk {
		per := make([]string, len(chunks))
		for i, d := range chunks {
			per[i] = fmt.Sprintf("%.0f", perReport(d, min(benchChunk, n-i*benchChunk)))
		}
		b.Logf("µs/report by 10k reports: %s", strings.Join(per, " "))
		b.ReportMetric(perReport(chunks[0], benchChunk), "first10k-µs/report")
		last := len(chunks) - 1
		b.ReportMetric(perReport(chunks[last], n-last*benchChunk), "last10k-µs/report")
	}
}

// fileSize is the size of a file, 0 when it does not exist.
func fileSize(b *testing.B, path string) int64 {
	info, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	return info.Size()
}

// benchSender is a kind of mail stream seen in a domain's reports: where it
// comes from and what its messages authenticate as.
type benchSender struct {
	prefixes []string // source address /16s
	// dkim are the signing domains and selectors, one or two signatures.
	// In these and envFrom, {d} is the policy domain, {d-} the same with
	// dashes for dots, and {n} a number varying from record to record.
	dkim [][2]string
	// dkimPass is the result of each signature; aligned is whether the
	// first one aligns with the header From (a pass of it passes DMARC DKIM).
	dkimPass []bool
	aligned  bool
	envFrom  string // the envelope (SPF) domain
	spfPass  bool
	spfAlign bool   // the envelope domain aligns with the header From
	reason   string // a policy override Google writes, "" for none
}

// benchSenders are the usual sources of a domain's mail, as they look in
// Google's reports: its own servers, Google Workspace, two ESPs, mail
// forwarded through Microsoft 365 and spoofing.
var benchSenders = []benchSender{
	{ // the domain's own outbound relays
		prefixes: []string{"203.0", "198.51"},
		dkim:     [][2]string{{"{d}", "mail2024"}},
		dkimPass: []bool{true}, aligned: true,
		envFrom: "{d}", spfPass: true, spfAlign: true,
	},
	{ // Google Workspace: the domain's signature and the gappssmtp one
		prefixes: []string{"209.85", "74.125", "172.217"},
		dkim:     [][2]string{{"{d}", "google"}, {"{d-}.20230601.gappssmtp.com", "20230601"}},
		dkimPass: []bool{true, true}, aligned: true,
		envFrom: "{d}", spfPass: true, spfAlign: true,
	},
	{ // SendGrid, with a branded return path
		prefixes: []string{"149.72", "167.89", "168.245"},
		dkim:     [][2]string{{"{d}", "s1"}, {"sendgrid.info", "smtpapi"}},
		dkimPass: []bool{true, true}, aligned: true,
		envFrom: "em8412.{d}", spfPass: true, spfAlign: true,
	},
	{ // Amazon SES, with its own MAIL FROM
		prefixes: []string{"54.240", "23.251"},
		dkim: [][2]string{{"{d}", "6gbrjpgwjskckoa6a5zn6fwqkn67xbtw"},
			{"amazonses.com", "224i4yxa5dv7c2xz3womw6peuasteono"}},
		dkimPass: []bool{true, true}, aligned: true,
		envFrom: "eu-west-1.amazonses.com", spfPass: true,
	},
	{ // forwarded by a Microsoft 365 tenant: the domain's signature broken
		// on the way, the tenant's own one and its SPF; ARC passed
		prefixes: []string{"40.107", "52.100", "104.47"},
		dkim:     [][2]string{{"{d}", "selector1"}, {"forwarder{n}.onmicrosoft.com", "selector1-forwarder{n}-onmicrosoft-com"}},
		dkimPass: []bool{false, true}, aligned: true,
		envFrom: "forwarder{n}.onmicrosoft.com", spfPass: true,
		reason: "local_policy",
	},
	{ // spoofing from a bulk mailer
		prefixes: []string{"185.234", "45.95", "194.165"},
		dkim:     [][2]string{{"bulk-mailer-{n}.example.net", "default"}},
		dkimPass: []bool{false}, aligned: false,
		envFrom: "mta{n}.bulk-mailer.example.net", spfPass: false,
	},
}

// genBenchFiles generates n Google aggregate report files, deterministic:
// report i is for domain i%50 and the day i/50 days before testNow.
func genBenchFiles(n int) []benchFile {
	rng := rand.New(rand.NewPCG(2026, 11))
	firstDay := testNow.Truncate(24 * time.Hour)
	files := make([]benchFile, n)
	for i := range files {
		domain := fmt.Sprintf("domain%d.example", i%benchDomains)
		begin := firstDay.AddDate(0, 0, -1-i/benchDomains)
		end := begin.Add(24*time.Hour - time.Second)
		id := strconv.FormatUint(rng.Uint64(), 10)
		data, messages := genGoogleReport(rng, domain, id, begin, end)
		files[i] = benchFile{
			identity: dedupKey("noreply-dmarc-support@google.com", id, begin, end, domain),
			path:     fmt.Sprintf("%s/google.com!%s!%d!%d.xml", benchSourceDirPath, domain, begin.Unix(), end.Unix()),
			mark:     fmt.Sprintf("%d:%d", len(data), end.Add(6*time.Hour).UnixNano()),
			data:     data,
			messages: messages,
		}
	}
	return files
}

// genGoogleReport writes an aggregate report as Google does (indented by
// two spaces), of benchRecords records, and returns it with its message
// count.
func genGoogleReport(rng *rand.Rand, domain, id string, begin, end time.Time) ([]byte, uint64) {
	var b bytes.Buffer
	b.Grow(12 << 10)
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <version>1.0</version>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>%s</report_id>
    <date_range>
      <begin>%d</begin>
      <end>%d</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>%s</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>reject</p>
    <sp>reject</sp>
    <pct>100</pct>
    <np>reject</np>
  </policy_published>
`, id, begin.Unix(), end.Unix(), domain)
	var messages uint64
	for range benchRecords {
		snd := &benchSenders[rng.IntN(len(benchSenders))]
		prefix := snd.prefixes[rng.IntN(len(snd.prefixes))]
		ip := fmt.Sprintf("%s.%d.%d", prefix, rng.IntN(256), 1+rng.IntN(254))
		// Mostly a few messages, sometimes a bulk send.
		count := 1 + rng.IntN(5)
		if rng.IntN(8) == 0 {
			count = 20 + rng.IntN(5000)
		}
		messages += uint64(count)
		expand := strings.NewReplacer("{d}", domain, "{d-}", strings.ReplaceAll(domain, ".", "-"),
			"{n}", strconv.Itoa(1+rng.IntN(90))).Replace
		dkimAligned := snd.aligned && snd.dkimPass[0]
		dkim, spf := "fail", "fail"
		if dkimAligned {
			dkim = "pass"
		}
		if snd.spfAlign && snd.spfPass {
			spf = "pass"
		}
		disposition := "none"
		if dkim == "fail" && spf == "fail" && snd.reason == "" {
			disposition = []string{"reject", "reject", "quarantine"}[rng.IntN(3)] // quarantine: a local override
		}
		fmt.Fprintf(&b, `  <record>
    <row>
      <source_ip>%s</source_ip>
      <count>%d</count>
      <policy_evaluated>
        <disposition>%s</disposition>
        <dkim>%s</dkim>
        <spf>%s</spf>
`, ip, count, disposition, dkim, spf)
		if snd.reason != "" {
			fmt.Fprintf(&b, `        <reason>
          <type>%s</type>
          <comment>arc=pass as.1.google.com=pass ams.1.google.com=pass</comment>
        </reason>
`, snd.reason)
		}
		fmt.Fprintf(&b, `      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>%s</header_from>
      <envelope_from>%s</envelope_from>
    </identifiers>
    <auth_results>
`, domain, expand(snd.envFrom))
		for j, d := range snd.dkim {
			result := "pass"
			if !snd.dkimPass[j] {
				result = "fail"
			}
			fmt.Fprintf(&b, `      <dkim>
        <domain>%s</domain>
        <selector>%s</selector>
        <result>%s</result>
      </dkim>
`, expand(d[0]), expand(d[1]), result)
		}
		result := "fail"
		if snd.spfPass {
			result = "pass"
		}
		fmt.Fprintf(&b, `      <spf>
        <domain>%s</domain>
        <scope>mfrom</scope>
        <result>%s</result>
      </spf>
    </auth_results>
  </record>
`, expand(snd.envFrom), result)
	}
	b.WriteString("</feedback>\n")
	return b.Bytes(), messages
}
