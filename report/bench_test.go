package report

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html/charset"
)

// The parser's speed goal, measured here rather than in timed tests: at
// least twice the MB/s of a whole-document xml.Unmarshal of the same bytes,
// with peak heap that does not grow with the report.
//
//	go test ./report -run '^$' -bench . -benchmem

// corpusXML returns every well-formed aggregate report of the corpus that is
// stored as raw XML, concatenated per file.
func corpusXML(b *testing.B) [][]byte {
	var docs [][]byte
	for _, e := range readManifest(b) {
		if e.kind != "aggregate" || e.expect != "parse" || !strings.HasSuffix(e.file, ".xml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(corpusDir, e.file))
		if err != nil {
			b.Fatal(err)
		}
		docs = append(docs, data)
	}
	return docs
}

// bigReport generates a Google-style report of about size bytes.
func bigReport(size int) []byte {
	var buf bytes.Buffer
	buf.WriteString(`<?xml version="1.0" encoding="UTF-8" ?><feedback><report_metadata><org_name>google.com</org_name>` +
		`<email>noreply-dmarc-support@google.com</email><report_id>1</report_id><date_range><begin>1700000000</begin>` +
		`<end>1700086399</end></date_range></report_metadata><policy_published><domain>example.com</domain><adkim>r</adkim>` +
		`<aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct></policy_published>` + "\n")
	for i := 0; buf.Len() < size; i++ {
		fmt.Fprintf(&buf, `  <record>
    <row>
      <source_ip>198.51.%d.%d</source_ip>
      <count>%d</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <result>pass</result>
        <selector>google</selector>
      </dkim>
      <dkim>
        <domain>mail.example.net</domain>
        <result>pass</result>
        <selector>s1</selector>
      </dkim>
      <spf>
        <domain>bounce.example.net</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
`, i/256%256, i%256, i%50+1)
	}
	buf.WriteString("</feedback>\n")
	return buf.Bytes()
}

// unmarshalFeedback is the baseline: the whole document as one struct.
type unmarshalFeedback struct {
	Metadata struct {
		OrgName  string `xml:"org_name"`
		ReportID string `xml:"report_id"`
		Begin    string `xml:"date_range>begin"`
		End      string `xml:"date_range>end"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
		P      string `xml:"p"`
	} `xml:"policy_published"`
	Records []struct {
		Row struct {
			SourceIP string `xml:"source_ip"`
			Count    string `xml:"count"`
			Policy   struct {
				Disposition string `xml:"disposition"`
				DKIM        string `xml:"dkim"`
				SPF         string `xml:"spf"`
			} `xml:"policy_evaluated"`
		} `xml:"row"`
		HeaderFrom string `xml:"identifiers>header_from"`
		DKIM       []struct {
			Domain, Selector, Result string
		} `xml:"auth_results>dkim"`
		SPF []struct {
			Domain, Scope, Result string
		} `xml:"auth_results>spf"`
	} `xml:"record"`
}

func decodeBytes(b *testing.B, data []byte) int {
	dec := NewAggregateDecoder(bytes.NewReader(data), DefaultLimits())
	if _, err := dec.Header(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		_, err := dec.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
}

func BenchmarkCorpus(b *testing.B) {
	docs := corpusXML(b)
	total := 0
	for _, d := range docs {
		total += len(d)
	}
	b.Run("decoder", func(b *testing.B) {
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, d := range docs {
				decodeBytes(b, d)
			}
		}
	})
	b.Run("xml.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, d := range docs {
				var f unmarshalFeedback
				dec := xml.NewDecoder(bytes.NewReader(d))
				dec.CharsetReader = charset.NewReaderLabel
				if err := dec.Decode(&f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkLarge reads generated reports of growing size. Beside MB/s it
// reports, from one run before the timed loop, the peak live heap (as of
// each GC) above what was live before, and the allocations per record.
func BenchmarkLarge(b *testing.B) {
	for _, size := range []int{10 << 20, 100 << 20} {
		data := bigReport(size)
		records := bytes.Count(data, []byte("<record>"))
		name := fmt.Sprintf("%dMB", size>>20)
		b.Run(name+"/decoder", func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			peak := peakLiveHeap(func() { decodeBytes(b, data) })
			runtime.ReadMemStats(&after)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				decodeBytes(b, data)
			}
			// After the loop: b.Loop resets reported metrics when it starts.
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(records), "allocs/record")
		})
		b.Run(name+"/xml.Unmarshal", func(b *testing.B) {
			unmarshal := func() {
				var f unmarshalFeedback
				if err := xml.Unmarshal(data, &f); err != nil {
					b.Fatal(err)
				}
			}
			peak := peakLiveHeap(unmarshal)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				unmarshal()
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// peakLiveHeap runs fn and returns the most heap found live by any garbage
// collection while it ran, less what was live before. A small GOGC makes
// collections frequent, so the peak is seen.
func peakLiveHeap(fn func()) uint64 {
	old := debug.SetGCPercent(10)
	defer debug.SetGCPercent(old)
	runtime.GC()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	base := live[0].Value.Uint64()
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				metrics.Read(s)
				if v := s[0].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	fn()
	runtime.GC()
	close(stop)
	<-done
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}
