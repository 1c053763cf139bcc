package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpAndVersion: help and version go to stdout and end the program
// with status 0, for every command and whatever else the line holds;
// a command's help lists only the flags it uses.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"--version"}, {"--version", "--source.dir=X"}, {"--help", "--source.dir=X"},
		{"parse", "--help", "../../testdata/corpus/aggregate"}, {"check", "--help"}, {"archive", "stats", "--help"},
	} {
		var out, errOut bytes.Buffer
		if status := run(args, &out, &errOut); status != 0 || out.Len() == 0 || errOut.Len() != 0 {
			t.Errorf("%v: status %d, %d bytes on stdout, stderr %q", args, status, out.Len(), errOut.String())
		}
		if strings.Contains(out.String(), `"kind":"aggregate"`) {
			t.Errorf("%v: parsed the file after the help", args)
		}
	}
	var out, errOut bytes.Buffer
	run([]string{"parse", "--help"}, &out, &errOut)
	for _, flag := range []string{"--storage.path", "--web.listen-address", "--metrics.new-series-delay", "--source.dir", "--config.file"} {
		if strings.Contains(out.String(), flag) {
			t.Errorf("parse --help lists %s, which parse does not use", flag)
		}
	}
	if !strings.Contains(out.String(), "--format") {
		t.Errorf("parse --help lacks its own --format:\n%s", out.String())
	}
}
