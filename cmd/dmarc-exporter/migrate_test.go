package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// TestStateFileImport starts this version on state files written by the
// last version before the archive (testdata/state-v1: the corpus, and a
// DNS-monitored domain), and checks that it serves exactly what that
// version served, and that the file is kept under a new name.
func TestStateFileImport(t *testing.T) {
	for _, tt := range []struct {
		name, config string
		sources      []string
	}{
		{"corpus", "failure_samples: 10\n", []string{"aggregate", "email", "failure", "smtp_tls", "derived"}},
		// The DNS monitor off: what is served is what the state file holds.
		{"dns", "failure_samples: 5\ndomains: [good.example.test, extrua.example.test]\ndns:\n  interval: 0s\n",
			[]string{"derived", "failure"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			state := filepath.Join(dir, "state")
			os.MkdirAll(state, 0o755)
			fixture := filepath.Join(testdata, "state-v1", tt.name)
			writeRecentState(t, filepath.Join(fixture, "state.json"), filepath.Join(state, "state.json"))
			cfg := filepath.Join(dir, "config.yml")
			// The sources of the run that wrote the state, empty now.
			text := tt.config + "directories:\n"
			for _, src := range tt.sources {
				os.MkdirAll(filepath.Join(dir, src), 0o755)
				text += fmt.Sprintf("  - name: %s\n    path: %s\n", src, filepath.Join(dir, src))
			}
			os.WriteFile(cfg, []byte(text), 0o644)

			e := startExporter(t, "--config.file="+cfg, "--storage.path="+state, "--metrics.new-series-delay=0s")
			got := exposition(e.families(), true)
			f, err := os.Open(filepath.Join(fixture, "metrics.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			parser := expfmt.NewTextParser(model.UTF8Validation)
			old, err := parser.TextToMetricFamilies(f)
			if err != nil {
				t.Fatal(err)
			}
			withInvalidReasons(old)
			if want := exposition(old, true); got != want {
				t.Errorf("served after the import differs from what the earlier version served:\n%s", lineDiff(want, got))
			}
			for _, name := range []string{"dmarc_exporter_dedup_keys", "dmarc_exporter_label_overflow_total"} {
				if g, w := exposition(map[string]*dto.MetricFamily{name: e.families()[name]}, false),
					exposition(map[string]*dto.MetricFamily{name: old[name]}, false); g != w {
					t.Errorf("%s: got\n%s\nwant\n%s", name, g, w)
				}
			}
			e.stop()
			if _, err := os.Stat(filepath.Join(state, "state.json.imported")); err != nil {
				t.Errorf("the state file is not kept: %v", err)
			}
			if _, err := os.Stat(filepath.Join(state, "state.json")); err == nil {
				t.Error("the state file is still in place: it would be imported again")
			}
			// A second start serves the same, from the archive alone.
			e = startExporter(t, "--config.file="+cfg, "--storage.path="+state, "--metrics.new-series-delay=0s")
			if again := exposition(e.families(), true); again != got {
				t.Errorf("a second start serves otherwise:\n%s", lineDiff(got, again))
			}
		})
	}
}

// writeRecentState copies a state file as if it had been written just now:
// reporters last heard of and DNS records last checked now, so that the
// watchdog and the DNS staleness rule see what they saw when it was made.
func writeRecentState(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	now := float64(time.Now().Unix())
	for _, key := range []string{"reporters", "dns"} {
		list, _ := st[key].([]any)
		for _, e := range list {
			m := e.(map[string]any)
			if key == "reporters" {
				m["last_received"] = now
			} else if m["checked"].(float64) != 0 {
				m["checked"] = now
			}
		}
	}
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// withInvalidReasons rewrites dmarc_records_invalid_total as this version
// serves it: the earlier version refused records with a bad source IP like
// those with a bad count, so its series are reason="count", each with a
// reason="source_ip" series at 0 beside it.
func withInvalidReasons(mfs map[string]*dto.MetricFamily) {
	mf := mfs["dmarc_records_invalid_total"]
	if mf == nil {
		return
	}
	var out []*dto.Metric
	for _, m := range mf.GetMetric() {
		for _, reason := range []string{"count", "source_ip"} {
			c := proto.Clone(m).(*dto.Metric)
			c.Label = append(c.Label, &dto.LabelPair{Name: proto.String("reason"), Value: proto.String(reason)})
			if reason == "source_ip" {
				c.Counter.Value = proto.Float64(0)
			}
			out = append(out, c)
		}
	}
	mf.Metric = out
}
