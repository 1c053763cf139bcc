package source

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

const (
	mails    = "../testdata/corpus/email/"
	imapUser = "dmarc"
	imapPass = "s3cret"
)

// mailbox is a real Dovecot with one user, and a client of the test's own
// to fill and inspect it.
type mailbox struct {
	*testenv.Dovecot
	t testing.TB
	c *imapclient.Client
}

func startMailbox(t testing.TB, opts testenv.DovecotOptions) *mailbox {
	t.Helper()
	if opts.Users == nil {
		opts.Users = map[string]string{imapUser: imapPass}
	}
	d := testenv.StartDovecot(t, opts)
	mb := &mailbox{Dovecot: d, t: t}
	mb.connect()
	t.Cleanup(func() { mb.c.Close() })
	return mb
}

func (mb *mailbox) tlsConfig() *tls.Config {
	pem, err := os.ReadFile(mb.CAFile)
	if err != nil {
		mb.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

func (mb *mailbox) connect() {
	c, err := imapclient.DialTLS(mb.IMAPSAddr, &imapclient.Options{TLSConfig: mb.tlsConfig()})
	if err != nil {
		mb.t.Fatal(err)
	}
	if err := c.Login(imapUser, imapPass).Wait(); err != nil {
		mb.t.Fatal(err)
	}
	mb.c = c
}

// append stores a message in folder, as delivery would.
func (mb *mailbox) append(folder string, data []byte, flags ...imap.Flag) {
	mb.t.Helper()
	cmd := mb.c.Append(folder, int64(len(data)), &imap.AppendOptions{Flags: flags})
	cmd.Write(data)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		mb.t.Fatalf("append: %v", err)
	}
}

func (mb *mailbox) appendFile(folder, name string) {
	mb.t.Helper()
	data, err := os.ReadFile(filepath.Join(mails, name))
	if err != nil {
		mb.t.Fatal(err)
	}
	mb.append(folder, data)
}

// count returns the messages in folder, -1 when it does not exist.
func (mb *mailbox) count(folder string) int {
	mb.t.Helper()
	for range 2 {
		st, err := mb.c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
		if err == nil {
			return int(*st.NumMessages)
		}
		if strings.Contains(err.Error(), "NONEXISTENT") || strings.Contains(err.Error(), "doesn't exist") {
			return -1
		}
		mb.c.Close() // the server restarted: connect again
		mb.connect()
	}
	mb.t.Fatalf("status %s failed", folder)
	return 0
}

// subjects counts the messages of folder by subject.
func (mb *mailbox) subjects(folder string) map[string]int {
	mb.t.Helper()
	mb.count(folder) // reconnects if needed
	if _, err := mb.c.Select(folder, nil).Wait(); err != nil {
		mb.t.Fatal(err)
	}
	defer func() { mb.c.Unselect().Wait() }()
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := mb.c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		mb.t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range msgs {
		out[m.Envelope.Subject]++
	}
	return out
}

// source returns a configuration for the test server with the given TLS
// mode, completed with the defaults.
func (mb *mailbox) source(mode string) config.IMAP {
	pwFile := filepath.Join(mb.t.TempDir(), "password")
	os.WriteFile(pwFile, []byte(imapPass+"\n"), 0o600)
	addr := mb.IMAPSAddr
	if mode != "tls" {
		addr = mb.IMAPAddr
	}
	_, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.Atoi(port)
	c := config.Config{IMAP: []config.IMAP{{Name: "mbox", Host: "localhost", Port: p, TLS: mode, CAFile: mb.CAFile,
		Username: imapUser, PasswordFile: pwFile, PollInterval: config.Duration(time.Hour)}}}
	if err := c.Complete(); err != nil {
		mb.t.Fatal(err)
	}
	return c.IMAP[0]
}

type imapRun struct {
	store *collector.Store
	m     *Metrics
	log   *testenv.SyncBuffer
	stop  func()
}

// runIMAP runs a mailbox source with a real Store until the test ends.
func runIMAP(t testing.TB, cfg config.IMAP, tweak func(*IMAP)) *imapRun {
	t.Helper()
	store := testStore(t)
	r := &imapRun{store: store, m: NewMetrics(prometheus.NewRegistry()), log: &testenv.SyncBuffer{}}
	src := NewIMAP(cfg, store, r.m, slog.New(slog.NewTextHandler(r.log, nil)))
	if tweak != nil {
		tweak(src)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Run(ctx)
	}()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	return r
}

func (r *imapRun) value(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// sum adds every series of a store metric.
func sum(t testing.TB, store *collector.Store, name string, match ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(store)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			total += testenv.Sum(f, match...)
		}
	}
	return total
}

// reportMail is a report mail made from a real Google report, with its
// report_id replaced by id, attached gzipped and base64 encoded as Google
// sends them.
func reportMail(t testing.TB, id string) []byte {
	t.Helper()
	xml, err := os.ReadFile("../testdata/corpus/aggregate/niciliketo__report1.xml")
	if err != nil {
		t.Fatal(err)
	}
	xml = bytes.Replace(xml, []byte("<report_id>251179080903930395</report_id>"), []byte("<report_id>"+id+"</report_id>"), 1)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(xml)
	zw.Close()
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: noreply-dmarc-support@google.com\r\nTo: dmarc@example.com\r\nSubject: Report domain: example.com Submitter: google.com Report-ID: %s\r\n", id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/gzip; name=\"google.com!example.com.xml.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(gz.Bytes())
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
	}
}

// TestIMAPDrain: report mails, a mail without a report, a decompression
// bomb, a message over max_message_size and a second delivery of a report
// end in the right folders with the right counters, over implicit TLS and
// STARTTLS, with MOVE and with the COPY fallback.
func TestIMAPDrain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   string
		noMove bool
	}{
		{"tls+move", "tls", false},
		{"starttls+copy", "starttls", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mb := startMailbox(t, testenv.DovecotOptions{})
			for _, f := range []string{
				"freitagsrunde__google.eml", "freitagsrunde__yahoo.eml", "freitagsrunde__outlook.eml",
				"freitagsrunde__mailru.eml", "freitagsrunde__fastmail.eml", // 5 aggregate reports
				"mox__example.eml",                       // an SMTP TLS report
				"djangodmarc2__dmarcreport-email-gz.eml", // a report ...
				"djangodmarc2__duplicate_report.eml",     // ... delivered twice
				"pkerrigan__test.none.eml",               // no report
				"djangodmarc2__email-large-gz.eml",       // a decompression bomb
			} {
				mb.appendFile("INBOX", f)
			}
			big := append([]byte("From: a@example.net\r\nSubject: big\r\n\r\n"), bytes.Repeat([]byte("0123456789abcdef\r\n"), 20000)...)
			mb.append("INBOX", big)
			// A message the user deleted but did not expunge: not read,
			// and not expunged by the exporter's UID EXPUNGE either.
			mb.append("INBOX", reportMail(t, "user-deleted"), imap.FlagDeleted)

			cfg := mb.source(tc.mode)
			cfg.ArchiveFolder, cfg.InvalidFolder = "DMARC/Archive", "DMARC/Invalid"
			cfg.MaxMessageSize = 256 << 10
			cfg.BatchSize = 4
			r := runIMAP(t, cfg, func(s *IMAP) { s.noMove = tc.noMove })
			waitFor(t, "the first sync", 20*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 1 })

			// Dovecot's separator is ".": "DMARC/Archive" is DMARC.Archive.
			if got := mb.count("DMARC.Archive"); got != 8 {
				t.Errorf("archive holds %d messages, want 8", got)
			}
			if got := mb.count("DMARC.Invalid"); got != 3 {
				t.Errorf("invalid holds %d messages, want 3", got)
			}
			if got := mb.count("INBOX"); got != 1 {
				t.Errorf("INBOX holds %d messages, want only the one the user deleted", got)
			}
			for _, c := range []struct {
				name  string
				match []string
				want  float64
			}{
				{"dmarc_reports_total", nil, 6},
				{"dmarc_reports_duplicate_total", nil, 1},
				{"smtp_tls_reports_total", nil, 1},
				{"dmarc_reports_rejected_total", []string{"reason", "no_report"}, 1},
				{"dmarc_reports_rejected_total", []string{"reason", "too_large"}, 1}, // the big message
				// The bomb inflates to "<<<<...": refused as not XML at its
				// first bytes, long before its 100 MB are inflated.
				{"dmarc_reports_rejected_total", []string{"reason", "malformed"}, 1},
			} {
				if got := sum(t, r.store, c.name, c.match...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.match, got, c.want)
				}
			}
			// The big message was refused without being downloaded.
			if got := r.value(r.m.imapFetched.WithLabelValues("mbox")); got != 10 {
				t.Errorf("fetched %v messages, want 10", got)
			}
			if got := r.value(r.m.imapMoved.WithLabelValues("mbox", "archive")); got != 8 {
				t.Errorf("moved to archive: %v, want 8", got)
			}
			if got := r.value(r.m.imapUp.WithLabelValues("mbox")); got != 1 {
				t.Errorf("dmarc_imap_up = %v", got)
			}
			if !strings.Contains(r.log.String(), "max_message_size") {
				t.Errorf("no log line for the big message:\n%s", r.log)
			}
		})
	}
}

// TestIMAPNoFolders: without archive and invalid folders, messages stay
// where they are, flagged \Seen, and are not read twice.
func TestIMAPNoFolders(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{})
	mb.append("INBOX", reportMail(t, "a"))
	mb.appendFile("INBOX", "pkerrigan__test.none.eml")
	cfg := mb.source("tls")
	cfg.PollInterval = config.Duration(time.Second) // so that a second sync happens
	r := runIMAP(t, cfg, nil)
	waitFor(t, "two syncs", 20*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 2 })
	if got := mb.count("INBOX"); got != 2 {
		t.Fatalf("INBOX holds %d messages, want 2", got)
	}
	if _, err := mb.c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	unseen, err := mb.c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(unseen.AllUIDs()); n != 0 {
		t.Errorf("%d messages not flagged \\Seen", n)
	}
	if got := r.value(r.m.imapFetched.WithLabelValues("mbox")); got != 2 {
		t.Errorf("fetched %v messages, want 2 (each once)", got)
	}
	if got := sum(t, r.store, "dmarc_reports_total"); got != 1 {
		t.Errorf("dmarc_reports_total = %v", got)
	}
}

// TestIMAPIdle: a mail delivered while the source idles is read within
// seconds, long before the poll interval.
func TestIMAPIdle(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{})
	cfg := mb.source("tls")
	cfg.ArchiveFolder = "Archive"
	r := runIMAP(t, cfg, nil)
	waitFor(t, "the first sync", 20*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 1 })
	time.Sleep(200 * time.Millisecond) // idling by now
	start := time.Now()
	mb.append("INBOX", reportMail(t, "idle-1"))
	waitFor(t, "the new mail to be archived", 10*time.Second, func() bool { return mb.count("Archive") == 1 })
	t.Logf("read %s after delivery", time.Since(start).Round(time.Millisecond))
	if got := sum(t, r.store, "dmarc_reports_total"); got != 1 {
		t.Errorf("dmarc_reports_total = %v", got)
	}
}

// gatedSink holds the source inside a batch: the n-th IngestFile call
// signals reached and waits for release.
type gatedSink struct {
	Sink
	mu      sync.Mutex
	calls   int
	n       int
	reached chan struct{}
	release chan struct{}
}

func (g *gatedSink) IngestFile(source, path, mark string, r io.Reader) error {
	g.mu.Lock()
	g.calls++
	hold := g.calls == g.n
	g.mu.Unlock()
	if hold {
		close(g.reached)
		<-g.release
	}
	return g.Sink.IngestFile(source, path, mark, r)
}

// TestIMAPServerRestart: the server killed in the middle of a batch
// (bodies downloaded, not saved, not moved), then restarted, loses no mail
// and counts none twice.
func TestIMAPServerRestart(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{})
	const n = 60
	for i := range n {
		mb.append("INBOX", reportMail(t, fmt.Sprintf("restart-%d", i)))
	}
	cfg := mb.source("tls")
	cfg.ArchiveFolder = "Archive"
	cfg.BatchSize = 5
	var gate *gatedSink
	r := runIMAP(t, cfg, func(s *IMAP) {
		gate = &gatedSink{Sink: s.sink, n: 8, reached: make(chan struct{}), release: make(chan struct{})}
		s.sink = gate
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("exporter log:\n%s\ndovecot log:\n%s", r.log, mb.Logs())
		}
	})
	select {
	case <-gate.reached: // in the second batch, the first one moved
	case <-time.After(20 * time.Second):
		t.Fatal("the source did not reach its second batch")
	}
	mb.Restart(t, true) // SIGKILL: connections drop without BYE
	close(gate.release)
	waitFor(t, "the INBOX to be drained", 60*time.Second, func() bool { return mb.count("INBOX") == 0 })
	// Every report is in the archive. A MOVE cut by the kill may leave
	// a message both copied and not expunged, so the next MOVE makes a
	// second copy: nothing is lost, and it is not counted twice.
	subjects := mb.subjects("Archive")
	for i := range n {
		if subjects[fmt.Sprintf("Report domain: example.com Submitter: google.com Report-ID: restart-%d", i)] == 0 {
			t.Errorf("report restart-%d is not in the archive", i)
		}
	}
	waitFor(t, "the counters", 10*time.Second, func() bool { return sum(t, r.store, "dmarc_reports_total") == n })
	if got := sum(t, r.store, "dmarc_reports_duplicate_total"); got != 0 {
		t.Errorf("%v reports read twice", got)
	}
	if got := r.value(r.m.imapErrors.WithLabelValues("mbox", "network")); got < 1 {
		t.Errorf("no network error counted for the restart")
	}
	if got := r.value(r.m.imapUp.WithLabelValues("mbox")); got != 1 {
		t.Errorf("dmarc_imap_up = %v after the restart", got)
	}
}

// TestIMAPWithoutExtensions: a server without IDLE, MOVE and UIDPLUS.
// Messages are copied, flagged \Deleted and left for the user to expunge
// (expunging without UIDPLUS would remove others' deleted messages too),
// never copied twice; new mail is found by polling, with NOOPs between
// polls.
func TestIMAPWithoutExtensions(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{Capability: "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE"})
	mb.append("INBOX", reportMail(t, "plain-1"))
	mb.append("INBOX", reportMail(t, "plain-2"))
	cfg := mb.source("tls")
	cfg.ArchiveFolder = "Archive"
	cfg.PollInterval = config.Duration(time.Second)
	r := runIMAP(t, cfg, func(s *IMAP) { s.noopEvery = 200 * time.Millisecond })
	waitFor(t, "the first sync", 20*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 1 })
	mb.append("INBOX", reportMail(t, "plain-3"))
	waitFor(t, "the new mail, by polling", 10*time.Second, func() bool { return mb.count("Archive") == 3 })
	waitFor(t, "two more polls", 10*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 4 })
	if got := mb.count("Archive"); got != 3 {
		t.Errorf("archive holds %d messages, want 3 (none copied twice)", got)
	}
	if got := mb.count("INBOX"); got != 3 {
		t.Errorf("INBOX holds %d messages, want the 3 originals, flagged \\Deleted", got)
	}
	if got := sum(t, r.store, "dmarc_reports_total"); got != 3 {
		t.Errorf("dmarc_reports_total = %v", got)
	}
	if got := r.value(r.m.imapErrors.WithLabelValues("mbox", "network")) + r.value(r.m.imapErrors.WithLabelValues("mbox", "protocol")); got != 0 {
		t.Errorf("%v session failures:\n%s", got, r.log)
	}
}

// TestIMAPNoDeleteRight: without MOVE, and without the right to delete in
// the folder (Dovecot's ACL), the server drops the \Deleted flag of the
// copied messages: each is copied once, not again at every sync, and the
// log says why it stays.
func TestIMAPNoDeleteRight(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "acl")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	acl := filepath.Join(dir, "acl")
	os.WriteFile(acl, []byte("INBOX owner lrwsip\n"), 0o644) // no t (delete) nor e (expunge)
	mb := startMailbox(t, testenv.DovecotOptions{
		Capability: "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS",
		Extra:      "mail_plugins = acl\nplugin {\n acl = vfile:" + acl + "\n}\n",
	})
	mb.append("INBOX", reportMail(t, "acl-1"))
	cfg := mb.source("tls")
	cfg.ArchiveFolder = "Archive"
	cfg.PollInterval = config.Duration(300 * time.Millisecond)
	r := runIMAP(t, cfg, func(s *IMAP) { s.noMove = true })
	waitFor(t, "four syncs", 20*time.Second, func() bool { return r.value(r.m.scans.WithLabelValues("mbox")) >= 4 })
	if a, in := mb.count("Archive"), mb.count("INBOX"); a != 1 || in != 1 {
		t.Errorf("archive %d, INBOX %d: want one copy, and the original kept", a, in)
	}
	if !strings.Contains(r.log.String(), "did not keep the") {
		t.Errorf("the log does not say why the message stays:\n%s", r.log)
	}
}

// silentServer accepts connections, greets (unless tls), then never
// answers; it returns its port.
func silentServer(t *testing.T, greet bool) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if greet {
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n"))
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestIMAPSilentServer: a server that stops answering (after the
// greeting, at STARTTLS, at login, or before the TLS handshake) costs a
// timeout and a counted network error, not a session held for ever; and
// stopping the source does not wait for it.
func TestIMAPSilentServer(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		greet bool
	}{{"plain", true}, {"starttls", true}, {"tls", false}} {
		t.Run(tc.mode, func(t *testing.T) {
			pw := filepath.Join(t.TempDir(), "pw")
			os.WriteFile(pw, []byte("x"), 0o600)
			c := config.Config{IMAP: []config.IMAP{{Name: "mbox", Host: "127.0.0.1", Port: silentServer(t, tc.greet), TLS: tc.mode,
				Insecure: true, Username: "u", PasswordFile: pw, Timeout: config.Duration(time.Second)}}}
			if err := c.Complete(); err != nil {
				t.Fatal(err)
			}
			r := runIMAP(t, c.IMAP[0], nil)
			waitFor(t, "a timeout", 10*time.Second, func() bool { return r.value(r.m.imapErrors.WithLabelValues("mbox", "network")) >= 1 })
			if !strings.Contains(r.log.String(), "no answer from the server in time") && !strings.Contains(r.log.String(), "i/o timeout") {
				t.Errorf("log:\n%s", r.log)
			}
			stopped := make(chan struct{})
			go func() { r.stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("the source did not stop")
			}
		})
	}
}

// TestIMAPWrongPassword: a wrong password sets dmarc_imap_up to 0, counts
// an auth error, and logs the server's words once per attempt.
func TestIMAPWrongPassword(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{})
	cfg := mb.source("tls")
	os.WriteFile(cfg.PasswordFile, []byte("wrong\n"), 0o600)
	r := runIMAP(t, cfg, nil)
	waitFor(t, "an auth error", 20*time.Second, func() bool { return r.value(r.m.imapErrors.WithLabelValues("mbox", "auth")) >= 2 })
	if got := r.value(r.m.imapUp.WithLabelValues("mbox")); got != 0 {
		t.Errorf("dmarc_imap_up = %v", got)
	}
	logs := r.log.String()
	if !strings.Contains(logs, "AUTHENTICATIONFAILED") {
		t.Errorf("the log does not give the server's words:\n%s", logs)
	}
	// Backoff: 2 failures take at least 0.5 s + 1 s of waiting, so there
	// cannot be dozens of log lines in that time.
	r.stop()
	attempts := r.value(r.m.imapErrors.WithLabelValues("mbox", "auth"))
	if lines := strings.Count(logs, "imap session failed"); lines > int(attempts)+1 {
		t.Errorf("%d log lines for %v attempts", lines, attempts)
	}
}

// idp is an OAuth 2.0 token endpoint and an RFC 7662 introspection
// endpoint, served by the test on 127.0.0.1: Dovecot's oauth2 passdb asks
// it whether a token is valid, the source gets its tokens from it.
type idp struct {
	url string

	mu      sync.Mutex
	tokens  map[string]string // access token -> user
	grants  []string          // grant types asked for
	revoked bool              // every token is reported inactive
	down    bool              // the token endpoint answers 503
}

func startIDP(t *testing.T) *idp {
	p := &idp{tokens: map[string]string{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.serve)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	p.url = "http://" + l.Addr().String()
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.mu.Lock()
	defer p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/token":
		if p.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
			return
		}
		id, secret, _ := r.BasicAuth()
		if id == "" {
			id, secret = r.Form.Get("client_id"), r.Form.Get("client_secret")
		}
		grant := r.Form.Get("grant_type")
		p.grants = append(p.grants, grant)
		if id != "exporter" || grant == "refresh_token" && r.Form.Get("refresh_token") != "refresh-1" ||
			grant == "client_credentials" && secret != "client-secret" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant","error_description":"bad refresh token or client"}`)
			return
		}
		tok := fmt.Sprintf("access-%d", len(p.tokens))
		p.tokens[tok] = imapUser
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
	case "/introspect":
		user, ok := p.tokens[r.Form.Get("token")]
		fmt.Fprintf(w, `{"active":%v,"email":%q}`, ok && !p.revoked, user)
	default:
		http.NotFound(w, r)
	}
}

// TestIMAPOAuth: XOAUTH2 and OAUTHBEARER logins with tokens from a
// refresh token and from client credentials, against Dovecot's oauth2
// passdb; a refused token ends with the server's words, not a hang.
func TestIMAPOAuth(t *testing.T) {
	p := startIDP(t)
	mb := startMailbox(t, testenv.DovecotOptions{IntrospectionURL: p.url + "/introspect"})
	dir := t.TempDir()
	refresh, secret := filepath.Join(dir, "refresh"), filepath.Join(dir, "secret")
	os.WriteFile(refresh, []byte("refresh-1\n"), 0o600)
	os.WriteFile(secret, []byte("client-secret"), 0o600)
	for i, tc := range []struct {
		auth  string
		oauth config.OAuth2
		grant string
	}{
		{"xoauth2", config.OAuth2{RefreshTokenFile: refresh}, "refresh_token"},
		{"oauthbearer", config.OAuth2{RefreshTokenFile: refresh}, "refresh_token"},
		{"xoauth2", config.OAuth2{ClientSecretFile: secret, Scopes: []string{"https://outlook.office365.com/.default"}}, "client_credentials"},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.auth, tc.grant), func(t *testing.T) {
			mb.append("INBOX", reportMail(t, fmt.Sprintf("oauth-%d", i)))
			cfg := mb.source("tls")
			tc.oauth.TokenURL, tc.oauth.ClientID = p.url+"/token", "exporter"
			cfg.PasswordFile, cfg.Auth, cfg.OAuth2 = "", tc.auth, &tc.oauth
			cfg.ArchiveFolder = "Archive"
			r := runIMAP(t, cfg, nil)
			waitFor(t, "the mail to be archived", 20*time.Second, func() bool { return mb.count("Archive") == i+1 })
			if got := r.value(r.m.imapUp.WithLabelValues("mbox")); got != 1 {
				t.Errorf("dmarc_imap_up = %v", got)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if last := p.grants[len(p.grants)-1]; last != tc.grant {
				t.Errorf("grant %q, want %q", last, tc.grant)
			}
			if !strings.Contains(mb.Logs(), "method="+strings.ToUpper(tc.auth)) {
				t.Errorf("Dovecot logged no %s login", tc.auth)
			}
		})
	}
	// oauthSource reads the mailbox with tokens from the test's endpoint.
	oauthSource := func(auth, refreshFile string) config.IMAP {
		cfg := mb.source("tls")
		cfg.PasswordFile, cfg.Auth = "", auth
		cfg.OAuth2 = &config.OAuth2{TokenURL: p.url + "/token", ClientID: "exporter", RefreshTokenFile: refreshFile}
		return cfg
	}
	t.Run("revoked", func(t *testing.T) {
		p.mu.Lock()
		p.revoked = true
		p.mu.Unlock()
		r := runIMAP(t, oauthSource("xoauth2", refresh), nil)
		waitFor(t, "an auth error", 20*time.Second, func() bool { return r.value(r.m.imapErrors.WithLabelValues("mbox", "auth")) >= 1 })
		if !strings.Contains(r.log.String(), "AUTHENTICATIONFAILED") {
			t.Errorf("the log does not give the server's words:\n%s", r.log)
		}
	})
	t.Run("bad refresh token", func(t *testing.T) {
		p.mu.Lock()
		p.revoked = false
		p.mu.Unlock()
		bad := filepath.Join(dir, "bad")
		os.WriteFile(bad, []byte("expired"), 0o600)
		r := runIMAP(t, oauthSource("oauthbearer", bad), nil)
		waitFor(t, "an auth error", 20*time.Second, func() bool { return r.value(r.m.imapErrors.WithLabelValues("mbox", "auth")) >= 1 })
		if !strings.Contains(r.log.String(), "invalid_grant") {
			t.Errorf("the log does not give the token endpoint's words:\n%s", r.log)
		}
		// A new refresh token in the file is used at the next attempt.
		os.WriteFile(bad, []byte("refresh-1"), 0o600)
		waitFor(t, "the login with the new token", 20*time.Second, func() bool { return r.value(r.m.imapUp.WithLabelValues("mbox")) == 1 })
	})
	t.Run("token endpoint down", func(t *testing.T) {
		p.mu.Lock()
		p.down = true
		p.mu.Unlock()
		r := runIMAP(t, oauthSource("xoauth2", refresh), nil)
		waitFor(t, "an error", 20*time.Second, func() bool {
			return r.value(r.m.imapErrors.WithLabelValues("mbox", "auth"))+r.value(r.m.imapErrors.WithLabelValues("mbox", "protocol"))+
				r.value(r.m.imapErrors.WithLabelValues("mbox", "network")) >= 1
		})
		if n := r.value(r.m.imapErrors.WithLabelValues("mbox", "auth")); n != 0 {
			t.Errorf("an outage of the token endpoint counted as %v auth failures", n)
		}
	})
}

// unsavableSink cannot save: a full disk.
type unsavableSink struct{ Sink }

func (unsavableSink) Commit() error { return errors.New("no space left on device") }

// TestIMAPNothingMovedUnsaved: while the state cannot be saved, no
// message is moved, in the session that read it or in the next ones; it
// is not counted as a connection error.
func TestIMAPNothingMovedUnsaved(t *testing.T) {
	mb := startMailbox(t, testenv.DovecotOptions{})
	mb.append("INBOX", reportMail(t, "unsaved-1"))
	mb.appendFile("INBOX", "pkerrigan__test.none.eml")
	cfg := mb.source("tls")
	cfg.ArchiveFolder, cfg.InvalidFolder = "Archive", "Invalid"
	r := runIMAP(t, cfg, func(s *IMAP) { s.sink = unsavableSink{s.sink} })
	waitFor(t, "three failed saves", 20*time.Second, func() bool { return r.value(r.m.errors.WithLabelValues("mbox")) >= 3 })
	if a, i, in := mb.count("Archive"), mb.count("Invalid"), mb.count("INBOX"); a > 0 || i > 0 || in != 2 {
		t.Errorf("archive %d, invalid %d, INBOX %d: moved before saved", a, i, in)
	}
	for _, kind := range []string{"auth", "tls", "network", "protocol"} {
		if n := r.value(r.m.imapErrors.WithLabelValues("mbox", kind)); n != 0 {
			t.Errorf("%v %s connection errors for a local failure", n, kind)
		}
	}
}
