package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// TestCheckGolden runs `check` against an authoritative test server and
// compares its output, text and JSON, with golden files.
func TestCheckGolden(t *testing.T) {
	srv := testenv.StartDNS(t, filepath.Join(testdata, "dns", "zones.txt"))
	domains := []string{"good.example.test", "extrua.example.test", "toomany.example.test", "void.example.test",
		"loop.example.test", "twodmarc.example.test"}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--dns.resolver=" + srv.Addr, "check", "--format=" + format, "--dkim-selector=s2048", "--dkim-selector=old"}, domains...)
			if status := run(args, &out, &errOut); status != 1 {
				t.Errorf("status %d, want 1 (errors found); stderr %s", status, errOut.String())
			}
			path := filepath.Join(testdata, "golden", "check."+format)
			if *update {
				os.WriteFile(path, out.Bytes(), 0o644)
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("output differs from %s:\n%s", path, out.String())
			}
		})
	}
	var out bytes.Buffer
	if status := run([]string{"--dns.resolver=" + srv.Addr, "check", "good.example.test"}, &out, &out); status != 0 {
		t.Errorf("status %d for a sound domain: %s", status, out.String())
	}
}
