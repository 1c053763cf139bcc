package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/oauth2"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// imapMark is the read mark of a message: its path (UIDVALIDITY and UID)
// already names one message for ever, so the mark needs nothing more.
const imapMark = "imap"

// Reconnection backoff: capped exponential, with jitter.
const (
	backoffMin = time.Second
	backoffMax = 5 * time.Minute
	// batchBytes bounds the message bytes held in memory at once.
	batchBytes = 64 << 20
	// keepaliveEvery is how often a NOOP is sent while a batch is parsed.
	keepaliveEvery = time.Minute
)

// IMAP reads a mailbox. A message is read when the state file has no mark
// for it, not when it lacks \Seen: \Seen is shared with people and other
// clients, so a message opened in a mail client before the exporter ran
// would be lost, while the state file is the exporter's alone, and report
// dedup makes a second reading harmless. After a message's reports are
// saved, it is moved to the archive folder, or to the invalid folder when
// it holds no usable report; without folders it is flagged \Seen.
type IMAP struct {
	cfg     config.IMAP
	sink    Sink
	metrics *Metrics
	log     *slog.Logger
	tokens  oauth2.TokenSource // cached access tokens; nil until the first OAuth login
	noMove  bool               // tests: use COPY + STORE + UID EXPUNGE, as without MOVE
}

// NewIMAP returns a mailbox source.
func NewIMAP(cfg config.IMAP, sink Sink, m *Metrics, log *slog.Logger) *IMAP {
	m.init(cfg.Name)
	m.imapUp.WithLabelValues(cfg.Name).Set(0)
	for _, kind := range []string{errAuth, errTLS, errNetwork, errProtocol} {
		m.imapErrors.WithLabelValues(cfg.Name, kind)
	}
	for _, f := range []string{"archive", "invalid"} {
		m.imapMoved.WithLabelValues(cfg.Name, f)
	}
	m.imapFetched.WithLabelValues(cfg.Name)
	return &IMAP{cfg: cfg, sink: sink, metrics: m, log: log.With("input", cfg.Name)}
}

// Connection error kinds, for dmarc_imap_connection_errors_total.
const (
	errAuth     = "auth"
	errTLS      = "tls"
	errNetwork  = "network"
	errProtocol = "protocol"
)

// errorKind classifies why a session ended.
func errorKind(err error) string {
	var ae *authError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		return errAuth
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci),
		errors.As(err, &rh), errors.As(err, &alert), strings.Contains(err.Error(), "tls: "):
		return errTLS
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errNetwork
	}
	// go-imap formats some errors with %v, which drops the chain: known
	// network faults are recognised by their words.
	msg := err.Error()
	for _, s := range []string{"connection reset", "broken pipe", "EOF", "use of closed network connection", "i/o timeout", "connection refused", "BYE"} {
		if strings.Contains(msg, s) {
			return errNetwork
		}
	}
	return errProtocol
}

// Run reads the mailbox until ctx is done, reconnecting after any fault
// with capped exponential backoff and jitter. Each failure is logged once,
// with the server's words, when it happens: once per backoff step.
func (s *IMAP) Run(ctx context.Context) error {
	failures := 0
	for {
		synced, err := s.session(ctx)
		s.metrics.imapUp.WithLabelValues(s.cfg.Name).Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if synced {
			failures = 0
		}
		kind := errorKind(err)
		s.metrics.imapErrors.WithLabelValues(s.cfg.Name, kind).Inc()
		wait := backoff(failures)
		failures++
		s.log.Error("imap session failed", "kind", kind, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is the wait after n consecutive failures: 1s, 2s, 4s, ... up to
// 5m, each between half and all of that, so that many exporters behind
// one server do not reconnect in step.
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 20 {
		d = min(backoffMin<<n, backoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// session connects, logs in and syncs until the connection fails or ctx
// is done; synced says whether a sync completed.
func (s *IMAP) session(ctx context.Context) (synced bool, err error) {
	newMail := make(chan struct{}, 1)
	c, err := s.dial(newMail)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	if err := s.login(c); err != nil {
		return false, fmt.Errorf("login as %s: %w", s.cfg.Username, err)
	}
	s.metrics.imapUp.WithLabelValues(s.cfg.Name).Set(1)
	f, err := s.folders(c)
	if err != nil {
		return false, err
	}
	sel, err := c.Select(f.source, nil).Wait()
	if err != nil {
		return false, fmt.Errorf("select %s: %w", f.source, err)
	}
	s.log.Debug("imap logged in", "folder", f.source, "messages", sel.NumMessages, "idle", c.Caps().Has(imap.CapIdle))
	for {
		if err := s.sync(ctx, c, f, sel.UIDValidity); err != nil {
			return synced, err
		}
		synced = true
		if err := s.wait(ctx, c, newMail); err != nil {
			return synced, err
		}
		if ctx.Err() != nil {
			return synced, ctx.Err()
		}
	}
}

// dial connects with the configured TLS mode and waits for the greeting.
func (s *IMAP) dial(newMail chan struct{}) (*imapclient.Client, error) {
	tlsConfig := &tls.Config{ServerName: s.cfg.ServerName, InsecureSkipVerify: s.cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = s.cfg.Host
	}
	if s.cfg.CAFile != "" {
		pem, err := os.ReadFile(s.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", s.cfg.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	opts := &imapclient.Options{
		TLSConfig: tlsConfig,
		Dialer:    &net.Dialer{Timeout: time.Duration(s.cfg.Timeout)},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					select {
					case newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	var c *imapclient.Client
	var err error
	switch s.cfg.TLS {
	case "starttls":
		c, err = imapclient.DialStartTLS(addr, opts)
	case "none":
		c, err = imapclient.DialInsecure(addr, opts)
	default:
		c, err = imapclient.DialTLS(addr, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return c, nil
}

// folderNames are the configured folders in the server's spelling.
type folderNames struct{ source, archive, invalid string }

// folders translates the configured names, which use "/" between levels,
// to the server's hierarchy separator, and creates the archive and
// invalid folders when they are missing.
func (s *IMAP) folders(c *imapclient.Client) (folderNames, error) {
	list, err := c.List("", "", nil).Collect()
	if err != nil {
		return folderNames{}, fmt.Errorf("list: %w", err)
	}
	sep := "/"
	if len(list) > 0 && list[0].Delim != 0 {
		sep = string(list[0].Delim)
	}
	name := func(n string) string { return strings.ReplaceAll(n, "/", sep) }
	f := folderNames{source: name(s.cfg.Folder), archive: name(s.cfg.ArchiveFolder), invalid: name(s.cfg.InvalidFolder)}
	for _, n := range []string{f.archive, f.invalid} {
		if n == "" {
			continue
		}
		found, err := c.List("", n, nil).Collect()
		if err != nil {
			return f, fmt.Errorf("list %s: %w", n, err)
		}
		if len(found) > 0 {
			continue
		}
		if err := c.Create(n, nil).Wait(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
				return f, fmt.Errorf("create %s: %w", n, err)
			}
		}
		s.log.Info("imap folder created", "folder", n)
	}
	return f, nil
}

// message is one message of the folder.
type message struct {
	uid  imap.UID
	path string
}

// sync reads every message of the folder that the state file has no mark
// for, in batches, and moves those already saved.
func (s *IMAP) sync(ctx context.Context, c *imapclient.Client, f folderNames, uidValidity uint32) error {
	// Messages flagged \Deleted by a COPY fallback without UIDPLUS are
	// copied already; they stay until someone expunges them.
	found, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("search %s: %w", f.source, err)
	}
	root := "imap://" + s.cfg.Name
	present := map[string]bool{}
	var todo []message
	var saved, savedBad []imap.UID // read before, but not moved yet (a crash or a drop after the save)
	for _, uid := range found.AllUIDs() {
		m := message{uid: uid, path: fmt.Sprintf("%s/%d/%d", root, uidValidity, uid)}
		present[m.path] = true
		seen, rejected := s.sink.Seen(m.path, imapMark)
		switch {
		case !seen:
			todo = append(todo, m)
		case rejected && f.invalid != "":
			savedBad = append(savedBad, uid)
		case !rejected && f.archive != "":
			saved = append(saved, uid)
		}
	}
	s.metrics.imapPending.WithLabelValues(s.cfg.Name).Set(float64(len(todo)))
	if err := s.dispose(c, saved, f.archive, "archive"); err != nil {
		return err
	}
	if err := s.dispose(c, savedBad, f.invalid, "invalid"); err != nil {
		return err
	}
	for len(todo) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := min(len(todo), s.cfg.BatchSize)
		if err := s.batch(c, f, todo[:n]); err != nil {
			return err
		}
		todo = todo[n:]
		s.metrics.imapPending.WithLabelValues(s.cfg.Name).Set(float64(len(todo)))
	}
	s.sink.PruneFiles(root+"/", present)
	s.metrics.scans.WithLabelValues(s.cfg.Name).Inc()
	s.metrics.lastScan.WithLabelValues(s.cfg.Name).SetToCurrentTime()
	return nil
}

// batch reads, saves and then moves a few messages. Sizes are asked
// first: a message over max_message_size is refused unread, and the
// bodies downloaded at once stay under batchBytes. The connection is
// kept alive with NOOPs while the bodies are parsed.
func (s *IMAP) batch(c *imapclient.Client, f folderNames, msgs []message) error {
	byUID := map[imap.UID]message{}
	var set imap.UIDSet
	for _, m := range msgs {
		byUID[m.uid] = m
		set.AddNum(m.uid)
	}
	sizes, err := c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return fmt.Errorf("fetch sizes: %w", err)
	}
	var good, bad []imap.UID
	var groups [][]imap.UID
	var group []imap.UID
	groupBytes := int64(0)
	for _, m := range sizes {
		msg, ok := byUID[m.UID]
		if !ok {
			continue
		}
		if m.RFC822Size > int64(s.cfg.MaxMessageSize) {
			err := fmt.Errorf("message of %d bytes is over max_message_size (%d bytes): %w", m.RFC822Size, s.cfg.MaxMessageSize, report.ErrLimit)
			s.log.Warn("message refused", "uid", m.UID, "err", err)
			s.sink.RejectFile(s.cfg.Name, msg.path, imapMark, err)
			s.metrics.files.WithLabelValues(s.cfg.Name, "rejected").Inc()
			bad = append(bad, m.UID)
			continue
		}
		if len(group) > 0 && groupBytes+m.RFC822Size > batchBytes {
			groups = append(groups, group)
			group, groupBytes = nil, 0
		}
		group = append(group, m.UID)
		groupBytes += m.RFC822Size
	}
	if len(group) > 0 {
		groups = append(groups, group)
	}
	for _, g := range groups {
		bodies, err := c.Fetch(imap.UIDSetNum(g...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			return fmt.Errorf("fetch messages: %w", err)
		}
		stop := s.keepalive(c)
		for _, m := range bodies {
			msg, ok := byUID[m.UID]
			if !ok || len(m.BodySection) == 0 {
				continue
			}
			s.metrics.imapFetched.WithLabelValues(s.cfg.Name).Inc()
			err := s.sink.IngestFile(s.cfg.Name, msg.path, imapMark, bytes.NewReader(m.BodySection[0].Bytes))
			if errors.Is(err, report.ErrRead) {
				continue // cannot happen from memory; read again next time if it does
			}
			if err != nil {
				s.log.Warn("message rejected", "uid", m.UID, "err", err)
				s.metrics.files.WithLabelValues(s.cfg.Name, "rejected").Inc()
				bad = append(bad, m.UID)
				continue
			}
			s.metrics.files.WithLabelValues(s.cfg.Name, "ingested").Inc()
			good = append(good, m.UID)
		}
		stop()
	}
	if err := s.sink.Commit(); err != nil {
		s.metrics.errors.WithLabelValues(s.cfg.Name).Inc()
		return fmt.Errorf("save state: %w", err) // nothing is moved before it is saved
	}
	if err := s.dispose(c, good, f.archive, "archive"); err != nil {
		return err
	}
	return s.dispose(c, bad, f.invalid, "invalid")
}

// keepalive sends a NOOP every keepaliveEvery until stop is called, so
// that a long parse never leaves the connection idle long enough for the
// server or a middlebox to drop it.
func (s *IMAP) keepalive(c *imapclient.Client) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(keepaliveEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := c.Noop().Wait(); err != nil {
					return // the next command will see the fault
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// dispose moves saved messages to folder (archive or invalid), or, with no
// folder configured, flags them \Seen. Without MOVE, it copies, flags the
// originals \Deleted and expunges exactly those UIDs (UID EXPUNGE); a
// server without UIDPLUS cannot expunge only them, so they stay flagged
// \Deleted for the user to expunge. Nothing is removed unless the copy
// succeeded.
func (s *IMAP) dispose(c *imapclient.Client, uids []imap.UID, folder, kind string) error {
	if len(uids) == 0 {
		return nil
	}
	set := imap.UIDSetNum(uids...)
	if folder == "" {
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
			return fmt.Errorf("flag %s messages \\Seen: %w", kind, err)
		}
		return nil
	}
	if c.Caps().Has(imap.CapMove) && !s.noMove {
		if _, err := c.Move(set, folder).Wait(); err != nil {
			return fmt.Errorf("move to %s: %w", folder, err)
		}
	} else {
		if _, err := c.Copy(set, folder).Wait(); err != nil {
			return fmt.Errorf("copy to %s: %w", folder, err)
		}
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return fmt.Errorf("flag copied messages \\Deleted: %w", err)
		}
		if c.Caps().Has(imap.CapUIDPlus) {
			if err := c.UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("expunge copied messages: %w", err)
			}
		}
	}
	s.metrics.imapMoved.WithLabelValues(s.cfg.Name, kind).Add(float64(len(uids)))
	return nil
}

// wait returns when the folder may hold new mail: with IDLE, when the
// server says so or after poll_interval; without, after poll_interval.
func (s *IMAP) wait(ctx context.Context, c *imapclient.Client, newMail chan struct{}) error {
	timer := time.NewTimer(time.Duration(s.cfg.PollInterval))
	defer timer.Stop()
	if !c.Caps().Has(imap.CapIdle) {
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-c.Closed():
			return errors.New("connection closed by the server")
		}
		return nil
	}
	select { // mail that arrived during the sync
	case <-newMail:
		return nil
	default:
	}
	idle, err := c.Idle()
	if err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	select {
	case <-ctx.Done():
		idle.Close()
		return nil
	case <-newMail:
	case <-timer.C:
	case <-c.Closed():
	}
	if err := idle.Close(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	if err := idle.Wait(); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}
