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
	// keepaliveEvery is how often a NOOP is sent while a batch is parsed,
	// and while waiting for the next poll without IDLE: less than the
	// usual NAT and firewall idle timeouts, far less than IMAP's 30
	// minutes of autologout.
	keepaliveEvery = 4 * time.Minute
	// transferRate is the slowest download accepted: a body fetch may
	// take the timeout plus its size at this rate.
	transferRate = 64 << 10 // bytes per second
	// minSession is the shortest session ended only to renew its token.
	minSession = time.Minute
)

// IMAP reads a mailbox. A message is read when the archive has no mark
// for it, not when it lacks \Seen: \Seen is shared with people and other
// clients, so a message opened in a mail client before the exporter ran
// would be lost, while the archive is the exporter's alone, and report
// dedup makes a second reading harmless. After a message's reports are
// saved, it is moved to the archive folder, or to the invalid folder when
// it holds no usable report; without folders it is flagged \Seen.
type IMAP struct {
	cfg     config.IMAP
	sink    Sink
	metrics *Metrics
	log     *slog.Logger

	tokens     oauth2.TokenSource // cached access tokens; nil until the first OAuth login
	refresh    string             // the newest refresh token (providers may rotate it)
	configured string             // the refresh token last read from the configuration
	tokenEnds  time.Time          // when the access token of this session expires

	noopEvery time.Duration // keepaliveEvery; shorter in tests
	noMove    bool          // tests: use COPY + STORE + UID EXPUNGE, as without MOVE
	// copied are the messages (by path) copied by the COPY fallback whose
	// \Deleted flag the server did not keep (no right to delete): never
	// copied again by this process.
	copied map[string]bool
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
	return &IMAP{cfg: cfg, sink: sink, metrics: m, log: log.With("input", cfg.Name), noopEvery: keepaliveEvery,
		copied: map[string]bool{}}
}

// errNoAnswer: the server did not answer a command in time.
var errNoAnswer = errors.New("no answer from the server in time")

// errReauth ends a session whose access token is about to expire, so that
// the next one logs in with a fresh token; it is not a failure.
var errReauth = errors.New("access token expiring: logging in again")

// localError is a failure on this side (the archive could not be
// saved): not counted as a connection error.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// bounded runs op, closing the connection when it takes longer than d.
// go-imap bounds a response only once it has begun to arrive, so a server
// that stops answering would otherwise hold the session for ever.
func bounded(c *imapclient.Client, d time.Duration, op func() error) error {
	t := time.AfterFunc(d, func() { c.Close() })
	err := op()
	if !t.Stop() {
		return fmt.Errorf("%w (%s)", errNoAnswer, d)
	}
	return err
}

// within is bounded with the configured timeout.
func (s *IMAP) within(c *imapclient.Client, op func() error) error {
	return bounded(c, time.Duration(s.cfg.Timeout), op)
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
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errNoAnswer),
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
		if errors.Is(err, errReauth) {
			s.log.Debug("imap session ended", "reason", err)
			continue
		}
		if synced {
			failures = 0
		}
		wait := backoff(failures)
		failures++
		var le *localError
		if errors.As(err, &le) {
			s.log.Error("imap session stopped", "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			// Logged, then counted: whoever sees the count finds the line.
			kind := errorKind(err)
			s.log.Error("imap session failed", "kind", kind, "err", err, "retry_in", wait.Round(time.Millisecond))
			s.metrics.imapErrors.WithLabelValues(s.cfg.Name, kind).Inc()
		}
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
	started := time.Now()
	c, err := s.dial(ctx, newMail)
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
	var sel *imap.SelectData
	if err := s.within(c, func() (err error) { sel, err = c.Select(f.source, nil).Wait(); return err }); err != nil {
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
		// A token about to expire: log in again with a new one, but not
		// more than once a minute, whatever lifetime the provider gives.
		if !s.tokenEnds.IsZero() && time.Until(s.tokenEnds) < tokenEarly && time.Since(started) >= minSession {
			return synced, errReauth
		}
	}
}

// dial connects with the configured TLS mode and waits for the greeting.
// Connecting, the greeting, STARTTLS and the TLS handshake are bounded by
// the timeout and by ctx.
func (s *IMAP) dial(ctx context.Context, newMail chan struct{}) (*imapclient.Client, error) {
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
	timeout := time.Duration(s.cfg.Timeout)
	deadline := time.Now().Add(timeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// Until the session is set up, the whole exchange has one deadline,
	// and ctx ending closes the connection.
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	defer stop()
	var c *imapclient.Client
	switch s.cfg.TLS {
	case "starttls":
		c, err = imapclient.NewStartTLS(conn, opts)
	case "plain":
		c = imapclient.New(conn, opts)
	default:
		tc := tls.Client(conn, tlsConfig)
		if err = tc.HandshakeContext(dctx); err == nil {
			c = imapclient.New(tc, opts)
		}
	}
	if err == nil {
		err = c.WaitGreeting()
	}
	if closed := !stop(); closed && ctx.Err() == nil {
		// The deadline closed the connection: whatever error that gave,
		// the server did not answer in time.
		switch {
		case err == nil:
			err = fmt.Errorf("%w (%s)", errNoAnswer, timeout)
		case !errors.Is(err, errNoAnswer):
			err = fmt.Errorf("%w (%s): %v", errNoAnswer, timeout, err)
		}
	} else if closed && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// folderNames are the configured folders in the server's spelling.
type folderNames struct{ source, archive, invalid string }

// folders translates the configured names, which use "/" between levels,
// to the server's hierarchy separator, and creates the archive and
// invalid folders when they are missing.
func (s *IMAP) folders(c *imapclient.Client) (folderNames, error) {
	var list []*imap.ListData
	if err := s.within(c, func() (err error) { list, err = c.List("", "", nil).Collect(); return err }); err != nil {
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
		var found []*imap.ListData
		if err := s.within(c, func() (err error) { found, err = c.List("", n, nil).Collect(); return err }); err != nil {
			return f, fmt.Errorf("list %s: %w", n, err)
		}
		if len(found) > 0 {
			continue
		}
		if err := s.within(c, func() error { return c.Create(n, nil).Wait() }); err != nil {
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

// search returns the UIDs of the messages matching criteria.
func (s *IMAP) search(c *imapclient.Client, criteria *imap.SearchCriteria) ([]imap.UID, error) {
	var found *imap.SearchData
	err := s.within(c, func() (err error) { found, err = c.UIDSearch(criteria, nil).Wait(); return err })
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return found.AllUIDs(), nil
}

// sync reads every message of the folder that the archive has no mark
// for, in batches, and finishes the moves of those read before.
func (s *IMAP) sync(ctx context.Context, c *imapclient.Client, f folderNames, uidValidity uint32) error {
	root := "imap://" + s.cfg.Name
	path := func(uid imap.UID) string { return fmt.Sprintf("%s/%d/%d", root, uidValidity, uid) }
	// Messages flagged \Deleted are the user's business, or copies the
	// COPY fallback made already: never read.
	uids, err := s.search(c, &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}})
	if err != nil {
		return err
	}
	present := map[string]bool{}
	var todo []message
	var saved, savedBad []imap.UID // read before, not moved yet (a crash or a drop after the save)
	for _, uid := range uids {
		m := message{uid: uid, path: path(uid)}
		present[m.path] = true
		seen, rejected := s.sink.Seen(m.path, imapMark)
		switch {
		case !seen:
			todo = append(todo, m)
		case s.copied[m.path]:
			// copied already, and the server keeps it: leave it
		case rejected:
			savedBad = append(savedBad, uid)
		default:
			saved = append(saved, uid)
		}
	}
	s.metrics.imapPending.WithLabelValues(s.cfg.Name).Set(float64(len(todo)))
	if len(saved)+len(savedBad) > 0 {
		// A mark may still be pending (the last save failed): save it
		// before anything is moved.
		if err := s.sink.Commit(); err != nil {
			s.metrics.errors.WithLabelValues(s.cfg.Name).Inc()
			return &localError{fmt.Errorf("save to the archive: %w", err)}
		}
		if err := s.finish(c, f, saved, savedBad, path); err != nil {
			return err
		}
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

// finish moves messages whose reports were saved in an earlier session.
// Without folders, messages stay where they are: those not flagged \Seen
// yet are flagged.
func (s *IMAP) finish(c *imapclient.Client, f folderNames, saved, savedBad []imap.UID, path func(imap.UID) string) error {
	if f.archive == "" || f.invalid == "" {
		found, err := s.search(c, &imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}})
		if err != nil {
			return err
		}
		unseen := make(map[imap.UID]bool, len(found))
		for _, u := range found {
			unseen[u] = true
		}
		keep := func(uids []imap.UID, folder string) []imap.UID {
			if folder != "" {
				return uids
			}
			var out []imap.UID
			for _, u := range uids {
				if unseen[u] {
					out = append(out, u)
				}
			}
			return out
		}
		saved, savedBad = keep(saved, f.archive), keep(savedBad, f.invalid)
	}
	if err := s.dispose(c, saved, f.archive, "archive", path); err != nil {
		return err
	}
	return s.dispose(c, savedBad, f.invalid, "invalid", path)
}

// batch reads, saves and then moves a few messages. Sizes are asked
// first: a message over max_message_size is refused unread, and the
// bodies downloaded at once stay under batchBytes; no more than
// max_message_size+1 bytes of a body are fetched, whatever size the
// server announced. The connection is kept alive with NOOPs while the
// bodies are parsed.
func (s *IMAP) batch(c *imapclient.Client, f folderNames, msgs []message) error {
	byUID := map[imap.UID]message{}
	var set imap.UIDSet
	for _, m := range msgs {
		byUID[m.uid] = m
		set.AddNum(m.uid)
	}
	var sizes []*imapclient.FetchMessageBuffer
	if err := s.within(c, func() (err error) {
		sizes, err = c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
		return err
	}); err != nil {
		return fmt.Errorf("fetch sizes: %w", err)
	}
	max := int64(s.cfg.MaxMessageSize)
	var good, bad []imap.UID
	refuse := func(uid imap.UID, size int64) {
		err := fmt.Errorf("message of %d bytes is over max_message_size (%d bytes): %w", size, max, report.ErrLimit)
		s.log.Warn("message refused", "uid", uid, "err", err)
		s.sink.RejectFile(s.cfg.Name, byUID[uid].path, imapMark, err)
		s.metrics.files.WithLabelValues(s.cfg.Name, "rejected").Inc()
		bad = append(bad, uid)
	}
	var groups [][]imap.UID
	var group []imap.UID
	groupBytes := int64(0)
	for _, m := range sizes {
		if _, ok := byUID[m.UID]; !ok {
			continue
		}
		if m.RFC822Size > max {
			refuse(m.UID, m.RFC822Size)
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
		var bodies []fetched
		limit := time.Duration(s.cfg.Timeout) + time.Duration(int64(len(g))*max/transferRate)*time.Second
		if err := bounded(c, limit, func() (err error) { bodies, err = fetchBodies(c, g, max); return err }); err != nil {
			return fmt.Errorf("fetch messages: %w", err)
		}
		stop := s.keepAlive(c)
		for _, m := range bodies {
			msg, ok := byUID[m.uid]
			if !ok {
				continue
			}
			s.metrics.imapFetched.WithLabelValues(s.cfg.Name).Inc()
			if int64(len(m.body)) > max { // the announced size was wrong
				refuse(m.uid, int64(len(m.body)))
				continue
			}
			err := s.sink.IngestFile(s.cfg.Name, msg.path, imapMark, bytes.NewReader(m.body))
			if errors.Is(err, report.ErrRead) {
				continue // cannot happen from memory; read again next time if it does
			}
			if err != nil {
				s.log.Warn("message rejected", "uid", m.uid, "err", err)
				s.metrics.files.WithLabelValues(s.cfg.Name, "rejected").Inc()
				bad = append(bad, m.uid)
				continue
			}
			s.metrics.files.WithLabelValues(s.cfg.Name, "ingested").Inc()
			good = append(good, m.uid)
		}
		if err := stop(); err != nil {
			return err
		}
	}
	if err := s.sink.Commit(); err != nil {
		s.metrics.errors.WithLabelValues(s.cfg.Name).Inc()
		return &localError{fmt.Errorf("save to the archive: %w", err)} // nothing is moved before it is saved
	}
	path := func(uid imap.UID) string { return byUID[uid].path }
	if err := s.dispose(c, good, f.archive, "archive", path); err != nil {
		return err
	}
	return s.dispose(c, bad, f.invalid, "invalid", path)
}

// fetched is a downloaded message.
type fetched struct {
	uid  imap.UID
	body []byte
}

// fetchBodies downloads messages, at most max+1 bytes of each (the rest of
// a longer body is read and dropped, so that it shows as too large), and
// stops keeping bodies once batchBytes are held: a server that announced
// smaller sizes than it sends costs no more memory. Messages not kept are
// read at the next sync.
func fetchBodies(c *imapclient.Client, uids []imap.UID, max int64) ([]fetched, error) {
	section := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: max + 1}}
	cmd := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	var out []fetched
	held := int64(0)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var m fetched
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				m.uid = item.UID
			case imapclient.FetchItemDataBodySection:
				if item.Literal == nil || held > batchBytes {
					continue
				}
				body, err := io.ReadAll(io.LimitReader(item.Literal, max+1))
				if err != nil {
					cmd.Close()
					return nil, err
				}
				m.body = body
				held += int64(len(body))
			}
		}
		if m.uid != 0 && m.body != nil {
			out = append(out, m)
		}
	}
	return out, cmd.Close()
}

// keepAlive sends a NOOP every noopEvery until stop is called, so that a
// long parse never leaves the connection idle long enough for the server
// or a middlebox to drop it. stop returns the error of a failed NOOP.
func (s *IMAP) keepAlive(c *imapclient.Client) (stop func() error) {
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		t := time.NewTicker(s.noopEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				result <- nil
				return
			case <-t.C:
				if err := s.within(c, func() error { return c.Noop().Wait() }); err != nil {
					<-done
					result <- fmt.Errorf("noop: %w", err)
					return
				}
			}
		}
	}()
	return func() error { close(done); return <-result }
}

// dispose moves saved messages to folder (archive or invalid), or, with no
// folder configured, flags them \Seen. Without MOVE, it copies, flags the
// originals \Deleted and expunges exactly those UIDs (UID EXPUNGE); a
// server without UIDPLUS cannot expunge only them, so they stay flagged
// \Deleted for the user to expunge (as they do after a crash between the
// copy and the expunge). Nothing is removed unless the copy succeeded, and
// a message whose \Deleted flag the server does not keep is not copied
// again. A server that refuses (NO: a full or missing folder, no rights)
// is logged and counted, and reading goes on; the move is tried again at
// the next sync.
func (s *IMAP) dispose(c *imapclient.Client, uids []imap.UID, folder, kind string, path func(imap.UID) string) error {
	if len(uids) == 0 {
		return nil
	}
	set := imap.UIDSetNum(uids...)
	err := s.within(c, func() error {
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
			return nil
		}
		if _, err := c.Copy(set, folder).Wait(); err != nil {
			return fmt.Errorf("copy to %s: %w", folder, err)
		}
		for _, u := range uids {
			s.copied[path(u)] = true // until the flag is seen to stick
		}
		if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return fmt.Errorf("flag copied messages \\Deleted: %w", err)
		}
		kept, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}, Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err != nil {
			return fmt.Errorf("check the \\Deleted flags: %w", err)
		}
		for _, u := range kept.AllUIDs() {
			delete(s.copied, path(u))
		}
		if n := len(uids) - len(kept.AllUIDs()); n > 0 {
			s.log.Warn("the server did not keep the \\Deleted flag of copied messages (no right to delete?): they stay in the folder and are not copied again", "messages", n, "folder", folder)
		}
		if c.Caps().Has(imap.CapUIDPlus) {
			if err := c.UIDExpunge(set).Close(); err != nil {
				return fmt.Errorf("expunge copied messages: %w", err)
			}
		}
		return nil
	})
	var refused *imap.Error
	if errors.As(err, &refused) {
		s.metrics.errors.WithLabelValues(s.cfg.Name).Inc()
		s.log.Error("imap server refused to file messages away; they are read, and tried again at the next sync", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	if folder != "" {
		s.metrics.imapMoved.WithLabelValues(s.cfg.Name, kind).Add(float64(len(uids)))
	}
	return nil
}

// wait returns when the folder may hold new mail: with IDLE, when the
// server says so or after poll_interval; without, after poll_interval,
// with a NOOP every noopEvery meanwhile (which also brings news of new
// mail).
func (s *IMAP) wait(ctx context.Context, c *imapclient.Client, newMail chan struct{}) error {
	timer := time.NewTimer(time.Duration(s.cfg.PollInterval))
	defer timer.Stop()
	if !c.Caps().Has(imap.CapIdle) {
		noop := time.NewTicker(s.noopEvery)
		defer noop.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
				return nil
			case <-newMail:
				return nil
			case <-noop.C:
				if err := s.within(c, func() error { return c.Noop().Wait() }); err != nil {
					return fmt.Errorf("noop: %w", err)
				}
			case <-c.Closed():
				return fmt.Errorf("connection closed by the server: %w", io.EOF)
			}
		}
	}
	select { // mail that arrived during the sync
	case <-newMail:
		return nil
	default:
	}
	if !s.tokenEnds.IsZero() {
		timer.Reset(min(time.Duration(s.cfg.PollInterval), max(time.Until(s.tokenEnds)-tokenEarly, minSession)))
	}
	var idle *imapclient.IdleCommand
	if err := s.within(c, func() (err error) { idle, err = c.Idle(); return err }); err != nil {
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
	if err := s.within(c, func() error {
		if err := idle.Close(); err != nil {
			return err
		}
		return idle.Wait()
	}); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	return nil
}
