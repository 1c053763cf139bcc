package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// metric returns the sum of a family's series whose labels include the
// given name/value pairs.
func (e *exporter) metric(name string, match ...string) float64 {
	return testenv.Sum(e.families()[name], match...)
}

func (e *exporter) waitFor(what string, cond func() bool) {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; log:\n%s", what, e.logs)
		}
	}
}

// TestIMAPReload: the exporter reads a real Dovecot mailbox configured in
// its file; a wrong password shows in dmarc_imap_up, the error counter and
// the log with the server's words, and a reload with the right password
// file recovers.
func TestIMAPReload(t *testing.T) {
	d := testenv.StartDovecot(t, testenv.DovecotOptions{Users: map[string]string{"rua": "right"}})
	d.AppendFile(t, "rua", "right", "INBOX", filepath.Join(testdata, "corpus/email/freitagsrunde__google.eml"))

	dir := t.TempDir()
	for name, pw := range map[string]string{"wrong": "nope\n", "right": "right\n"} {
		os.WriteFile(filepath.Join(dir, name), []byte(pw), 0o600)
	}
	_, port, _ := strings.Cut(d.IMAPAddr, ":")
	cfgFile := filepath.Join(dir, "config.yml")
	write := func(pwFile string) {
		cfg := fmt.Sprintf(`imap:
  - name: rua
    host: localhost
    port: %s
    tls: starttls
    ca_file: %s
    username: rua
    password_file: %s
    archive_folder: Archive
`, port, d.CAFile, filepath.Join(dir, pwFile))
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("wrong")
	e := startExporter(t, "--config.file="+cfgFile, "--storage.path="+filepath.Join(dir, "state"), "--metrics.new-series-delay=0s")
	e.waitFor("an auth error", func() bool {
		return e.metric("dmarc_imap_connection_errors_total", "source", "rua", "kind", "auth") >= 1
	})
	if up := e.metric("dmarc_imap_up", "source", "rua"); up != 0 {
		t.Errorf("dmarc_imap_up = %v with a wrong password", up)
	}
	e.waitFor("the server's words in the log", func() bool { return strings.Contains(e.logs.String(), "AUTHENTICATIONFAILED") })

	write("right")
	e.cmd.Process.Signal(syscall.SIGHUP)
	e.waitFor("the mailbox to be read", func() bool { return e.metric("dmarc_reports_total") == 1 })
	if up := e.metric("dmarc_imap_up", "source", "rua"); up != 1 {
		t.Errorf("dmarc_imap_up = %v after the reload", up)
	}
	if n := e.metric("dmarc_imap_messages_moved_total", "source", "rua", "folder", "archive"); n != 1 {
		t.Errorf("%v messages archived, want 1", n)
	}
}
