package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
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

// TestIdleClients: more idle keep-alive clients than the connection cap
// hold no one out for long: idle connections are closed, and a new client
// is served.
func TestIdleClients(t *testing.T) {
	addr := testenv.FreeAddr(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }),
		IdleTimeout: 300 * time.Millisecond}
	flags := &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: new(bool), WebConfigFile: new(string)}
	go listenAndServe(srv, flags, 5, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { srv.Close() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	// Twenty clients, each with one request answered and its connection
	// kept open, idle.
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a new client behind twenty idle ones: %v", err)
	}
	resp.Body.Close()
}

// TestLifecycleOff: without --web.enable-lifecycle, POST /-/reload is
// refused (SIGHUP still reloads), and the landing page links no
// profiling pages, which are not served.
func TestLifecycleOff(t *testing.T) {
	e := startExporter(t, "--source.dir="+t.TempDir(), "--storage.path="+t.TempDir())
	resp, err := http.Post(e.url+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /-/reload without --web.enable-lifecycle: %d", resp.StatusCode)
	}
	resp, err = http.Get(e.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(page), "debug/pprof") {
		t.Error("the landing page links /debug/pprof, which is not served")
	}
}

// TestEmptyArchiveWarning: a start on a new, empty archive says so, with
// the archive's path and how many files are about to be counted; a start
// on an archive that has read them does not.
func TestEmptyArchiveWarning(t *testing.T) {
	state := t.TempDir()
	src := filepath.Join(testdata, "corpus/smtp_tls")
	e := startExporter(t, "--source.dir="+src, "--storage.path="+state)
	e.waitScans(1, src)
	e.stop()
	files, _ := os.ReadDir(src)
	want := fmt.Sprintf("starting on a new, empty archive: every report in the sources is counted as new\" archive=%s files=%d",
		filepath.Join(state, "dmarc.db"), len(files))
	if !strings.Contains(e.logs.String(), want) {
		t.Errorf("no warning %q:\n%s", want, e.logs)
	}
	e = startExporter(t, "--source.dir="+src, "--storage.path="+state)
	e.stop()
	if strings.Contains(e.logs.String(), "empty archive") {
		t.Errorf("warned on an archive that has read its sources:\n%s", e.logs)
	}
}
