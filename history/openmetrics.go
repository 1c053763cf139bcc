package history

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// Each calls fn for every series of a family in the order of its label
// values, with its samples in the order of their days.
func (s *Series) Each(family string, fn func(labels []string, samples []Sample) error) error {
	keys := make([]string, 0, len(s.values[family]))
	for k := range s.values[family] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		days := s.values[family][k]
		samples := make([]Sample, 0, len(days))
		for d, v := range days {
			samples = append(samples, Sample{Day: d, Value: v})
		}
		slices.SortFunc(samples, func(a, b Sample) int { return a.Day.Compare(b.Day) })
		if err := fn(strings.Split(k, archive.LabelSep), samples); err != nil {
			return err
		}
	}
	return nil
}

// WriteOpenMetrics writes the series as OpenMetrics text with a timestamp
// on every sample, ending with # EOF, as promtool tsdb
// create-blocks-from openmetrics reads it.
func (s *Series) WriteOpenMetrics(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	for _, f := range Families {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s gauge\n", f.Name, escapeHelp(f.Help), f.Name)
		err := s.Each(f.Name, func(labels []string, samples []Sample) error {
			var b strings.Builder
			b.WriteString(f.Name)
			b.WriteByte('{')
			for i, l := range f.Labels {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l)
				b.WriteString(`="`)
				b.WriteString(escapeLabel(labels[i]))
				b.WriteByte('"')
			}
			b.WriteString("} ")
			prefix := b.String()
			for _, sm := range samples {
				bw.WriteString(prefix)
				bw.WriteString(strconv.FormatUint(sm.Value, 10))
				bw.WriteByte(' ')
				bw.WriteString(strconv.FormatInt(Timestamp(sm.Day).Unix(), 10))
				bw.WriteByte('\n')
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	bw.WriteString("# EOF\n")
	return bw.Flush()
}

// escapeLabel escapes a label value as OpenMetrics does.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func escapeHelp(s string) string { return escapeLabel(s) }
