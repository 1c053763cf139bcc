package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/net/netutil"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/explorer"
	"github.com/dmarc-exporter/dmarc-exporter/history"
	"github.com/dmarc-exporter/dmarc-exporter/report"
	"github.com/dmarc-exporter/dmarc-exporter/source"
)

// server is a running exporter: the archive and what is loaded from it
// (the counters, the DNS monitor's state), the jobs of the current
// configuration (sources, DNS monitor, retention), and the HTTP routes.
type server struct {
	cmd      *serveCmd
	log      *slog.Logger
	reg      *prometheus.Registry
	resolver *dnsclient.Resolver // nil: no DNS monitor, no source names
	arc      *archive.Archive
	store    *collector.Store
	dns      *dnsmon.State

	enrichMetrics *enrich.Metrics
	databases     *enrich.DatabaseCollector
	sources       *source.Metrics
	pushMetrics   *history.PushMetrics
	pushServed    sync.Once // the push metrics are served once remote write is on
	// holder names this exporter in the leases of a shared archive;
	// leaders says which sources it reads.
	holder     string
	leaders    *prometheus.GaugeVec
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge

	reloadMu sync.Mutex // one reload at a time
	jobs     jobs
}

// newServer opens the archive and loads what the exporter knows from it.
func newServer(c *serveCmd, cfg *config.Config, resolvers []string, log *slog.Logger) (*server, error) {
	s := &server{cmd: c, log: log, reg: prometheus.NewRegistry()}
	s.reg.MustRegister(
		versioncollector.NewCollector("dmarc_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var err error
	if s.resolver, err = newResolver(resolvers); err != nil {
		log.Warn("no DNS resolver: the DNS monitor and source names are off", "err", err)
	}
	s.enrichMetrics = enrich.NewMetrics(s.reg)
	s.databases = &enrich.DatabaseCollector{}
	s.reg.MustRegister(s.databases)
	enricher, dbs, err := buildEnricher(cfg.Senders, s.resolver, s.enrichMetrics, log)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	s.databases.Set(dbs)
	if cfg.Archive.URL != "" {
		s.arc, err = archive.OpenURL(cfg.Archive.URL)
	} else {
		s.arc, err = archive.Open(*c.storagePath)
	}
	if err != nil {
		return nil, err
	}
	s.store, err = collector.Open(collector.Options{
		Archive:           s.arc,
		Dir:               *c.storagePath,
		Domains:           cfg.Domains,
		Sources:           cfg.SourceNames(),
		Limits:            cfg.Limits,
		DedupRetention:    time.Duration(cfg.State.DedupRetention),
		ReportLimits:      report.DefaultLimits(),
		MaxRawBytes:       cfg.Archive.RawLimit(),
		FailureSamples:    cfg.FailureSamples,
		ExpectedReporters: cfg.ExpectedReporters,
		NewSeriesDelay:    *c.newSeriesDelay,
		Shard:             normalizeDomains(*c.shard),
		Enricher:          enricher,
		Logger:            log,
	})
	if err != nil {
		s.arc.Close()
		return nil, err
	}
	if empty, err := s.arc.Empty(); err == nil && empty {
		// A wrong or unmounted --storage.path would count every report
		// of the sources again: say so before it happens.
		log.Warn("starting on a new, empty archive: every report in the sources is counted as new",
			"archive", s.arc.Path(), "files", filesBelow(cfg.Directories))
	}
	if s.dns, err = dnsmon.LoadState(s.arc, nil, log); err != nil {
		s.arc.Close()
		return nil, err
	}
	s.dns.SetDomains(cfg.Domains)
	// The store is served by collector.Handler, after the registry.
	s.reg.MustRegister(s.dns)
	s.sources = source.NewMetrics(s.reg)
	s.pushMetrics = history.NewPushMetrics()
	if cfg.Archive.URL != "" {
		s.holder = holderName()
		s.leaders = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dmarc_exporter_source_leader",
			Help: "1 while this exporter holds the lease of a source in the shared archive and reads it, else 0: of the exporters sharing an archive, one reads each source.",
		}, []string{"source"})
		s.reg.MustRegister(s.leaders)
	}
	s.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dmarc_exporter_config_last_reload_successful",
		Help: "Whether the last configuration reload succeeded (1) or not (0).",
	})
	s.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dmarc_exporter_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration was last loaded successfully.",
	})
	s.reg.MustRegister(s.reloadOK, s.reloadTime)
	s.reloadOK.Set(1)
	s.reloadTime.SetToCurrentTime()
	return s, nil
}

// close closes the archive.
func (s *server) close() { s.arc.Close() }

// run starts the jobs of cfg and serves HTTP until ctx is done, then
// saves what is pending; it returns the exit status.
func (s *server) run(ctx context.Context, cfg *config.Config) int {
	s.jobs.start(ctx, s, cfg)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = s.reload(ctx)
		}
	}()
	mux, err := s.routes(ctx)
	if err != nil {
		s.log.Error("routes", "err", err)
		return 1
	}
	if u := s.cmd.explorerURL(); u != "" {
		s.log.Info("report explorer", "url", u)
	}
	httpServer := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute,
		IdleTimeout: idleTimeout}
	serveErr := make(chan error, 1)
	go func() { serveErr <- listenAndServe(httpServer, s.cmd.webFlags, maxConnections, s.log) }()
	status := 0
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case err := <-serveErr:
		s.log.Error("serve", "err", err)
		status = 1
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpServer.Shutdown(shutdownCtx)
	s.jobs.stop()
	if err := s.store.Commit(); err != nil {
		s.log.Error("save to the archive", "err", err)
		status = 1
	}
	return status
}

// Bounds on HTTP clients: a connection idle this long is closed, and past
// maxConnections open ones a new connection waits for one to close, so
// that idle keep-alive clients cannot use up the file descriptors that
// sources and scrapes need.
const (
	idleTimeout    = time.Minute
	maxConnections = 256
)

// listenAndServe is web.ListenAndServe (TLS and basic auth of
// --web.config.file) with at most max connections open on each TCP
// address; systemd and vsock listeners are served as the toolkit does.
func listenAndServe(srv *http.Server, flags *web.FlagConfig, max int, log *slog.Logger) error {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		return web.ListenAndServe(srv, flags, log)
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, addr := range *flags.WebListenAddresses {
		if strings.HasPrefix(addr, "vsock://") {
			return web.ListenAndServe(srv, flags, log)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, netutil.LimitListener(l, max))
	}
	if len(listeners) == 0 {
		return errors.New("no --web.listen-address")
	}
	return web.ServeMultiple(listeners, srv, flags, log)
}

// reload applies the configuration file again; on error the running
// configuration stays, and the reload gauge says so.
func (s *server) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := s.cmd.loadConfig()
	var enricher *enrich.Enricher
	var dbs map[string]*enrich.DB
	if err == nil {
		enricher, dbs, err = buildEnricher(cfg.Senders, s.resolver, s.enrichMetrics, s.log)
	}
	if err != nil {
		s.reloadOK.Set(0)
		s.log.Error("reload: keeping the running configuration", "err", err)
		return err
	}
	s.store.SetEnricher(enricher)
	s.databases.Set(dbs)
	s.store.SetConfig(cfg.Domains, cfg.SourceNames(), cfg.Limits, time.Duration(cfg.State.DedupRetention), cfg.FailureSamples,
		cfg.ExpectedReporters, cfg.Archive.RawLimit())
	s.dns.SetDomains(cfg.Domains)
	s.jobs.start(ctx, s, cfg)
	s.reloadOK.Set(1)
	s.reloadTime.SetToCurrentTime()
	s.log.Info("configuration reloaded")
	return nil
}

// webPaths are the path prefix of the pages' links (the external URL's
// path) and the prefix of the routes served (--web.route-prefix, else the
// same), both "" at the root or "/path" without a trailing slash.
func (c *serveCmd) webPaths() (links, routes string, err error) {
	if *c.externalURL != "" {
		u, err := url.Parse(*c.externalURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", "", fmt.Errorf("--web.external-url %q: want an absolute URL such as https://example.com/dmarc/", *c.externalURL)
		}
		links = strings.TrimSuffix(u.Path, "/")
	}
	routes = links
	if *c.routePrefix != "" {
		routes = "/" + strings.Trim(*c.routePrefix, "/")
		if routes == "/" {
			routes = ""
		}
		if *c.externalURL == "" {
			links = routes // reached directly, where it serves
		}
	}
	return links, routes, nil
}

// explorerURL is where the report explorer is, for the start-up log line.
func (c *serveCmd) explorerURL() string {
	if *c.externalURL != "" {
		return strings.TrimSuffix(*c.externalURL, "/") + "/reports"
	}
	addrs := *c.webFlags.WebListenAddresses
	if len(addrs) == 0 {
		return ""
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	scheme := "http"
	if *c.webFlags.WebConfigFile != "" {
		scheme = "http(s)" // the web configuration may turn TLS on
	}
	_, routes, _ := c.webPaths()
	return scheme + "://" + net.JoinHostPort(host, port) + routes + "/reports"
}

// routes are the HTTP endpoints, under the route prefix.
func (s *server) routes(ctx context.Context) (http.Handler, error) {
	links, prefix, err := s.cmd.webPaths()
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	telemetry := prefix + *s.cmd.telemetryPath
	mux.Handle(telemetry, collector.Handler(s.reg, s.store, s.log))
	mux.Handle(prefix+"/failure-samples", collector.SamplesHandler(s.store))
	mux.Handle(prefix+"/dns-timeline", s.dns.TimelineHandler())
	mux.HandleFunc(prefix+"/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	mux.HandleFunc(prefix+"/-/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Ready") })
	mux.HandleFunc(prefix+"/-/reload", func(w http.ResponseWriter, r *http.Request) {
		// As Prometheus: only with --web.enable-lifecycle (SIGHUP always
		// works), and the reason of a failure stays in the log: it may
		// name paths and quote the files the configuration names.
		if !*s.cmd.enableLifecycle {
			http.Error(w, "Lifecycle API is not enabled (--web.enable-lifecycle); send SIGHUP to reload", http.StatusForbidden)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if err := s.reload(ctx); err != nil {
			http.Error(w, "reload failed: the running configuration stays; the log says why", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded")
	})
	ex, err := explorer.New(s.arc, s.dns, links, *s.cmd.telemetryPath, s.log)
	if err != nil {
		return nil, err
	}
	pages := http.StripPrefix(prefix, ex.Handler())
	for _, p := range []string{"/reports", "/reports/", "/sources", "/tls", "/tls/", "/failures", "/failures/", "/static/", "/api/v1/", "/favicon.ico"} {
		mux.Handle(prefix+p, pages)
	}
	if *s.cmd.telemetryPath != "/" {
		landingLinks := []web.LandingLinks{{Address: *s.cmd.telemetryPath, Text: "Metrics"}}
		for _, p := range explorer.Paths {
			landingLinks = append(landingLinks, web.LandingLinks{Address: p.Path, Text: p.Text, Description: p.Description})
		}
		landingLinks = append(landingLinks,
			web.LandingLinks{Address: "/dns-timeline", Text: "DNS timeline", Description: "the latest changes of the watched DNS records (JSON)"},
			web.LandingLinks{Address: "/-/healthy", Text: "Health"})
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "DMARC Exporter",
			Description: "Prometheus exporter for DMARC aggregate reports",
			Version:     version.Info(),
			Profiling:   "false", // no /debug/pprof is served
			RoutePrefix: links + "/",
			Links:       landingLinks,
		})
		if err != nil {
			return nil, fmt.Errorf("landing page: %w", err)
		}
		mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != prefix+"/" {
				http.NotFound(w, r)
				return
			}
			r2 := r.Clone(r.Context())
			r2.URL.Path = links + "/" // the path the landing page knows itself by
			landing.ServeHTTP(w, r2)
		})
	}
	if prefix != "" {
		// As Prometheus: the root leads to the prefix.
		mux.Handle("/{$}", http.RedirectHandler(prefix+"/", http.StatusFound))
	}
	return mux, nil
}

// jobs run the background work of the current configuration: its sources,
// the DNS monitor and the archive's retention; start replaces those of the
// previous configuration.
type jobs struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (j *jobs) start(ctx context.Context, s *server, cfg *config.Config) {
	j.stop()
	j.mu.Lock()
	defer j.mu.Unlock()
	ctx, j.cancel = context.WithCancel(ctx)
	j.goRun(func() { expire(ctx, s.arc, time.Duration(cfg.Archive.Retention), s.log) })
	// On a shared archive, a source (and the remote-write pusher, which
	// keeps its watermark there) runs while this exporter holds its lease.
	goSource := func(name string, run func(context.Context)) {
		if cfg.Archive.URL == "" {
			j.goRun(func() { run(ctx) })
			return
		}
		j.goRun(func() { s.leased(ctx, name, time.Duration(cfg.Archive.LeaseTTL), run) })
	}
	if cfg.Archive.URL != "" {
		j.goRun(func() { refresh(ctx, s.store, time.Duration(cfg.Archive.RefreshInterval), s.log) })
	}
	if s.resolver != nil && len(cfg.Domains) > 0 && *cfg.DNS.Interval > 0 {
		mon := &dnsmon.Monitor{Resolver: s.resolver, State: s.dns, Domains: cfg.Domains, Selectors: cfg.DNS.DKIMSelectors,
			Learned: s.store.Selectors, Interval: time.Duration(*cfg.DNS.Interval), Log: s.log}
		j.goRun(func() { mon.Run(ctx) })
	}
	for _, d := range cfg.Directories {
		dir := source.NewDir(d, s.store, s.sources, s.log)
		goSource(d.Name, func(ctx context.Context) {
			if err := dir.Run(ctx); err != nil {
				s.log.Error("source stopped", "input", d.Name, "err", err)
			}
		})
	}
	for _, m := range cfg.IMAP {
		mbox := source.NewIMAP(m, s.store, s.sources, s.log)
		goSource(m.Name, func(ctx context.Context) { mbox.Run(ctx) })
	}
	if cfg.RemoteWrite.URL != "" {
		if pusher, err := history.NewPusher(s.arc, cfg.RemoteWrite, s.pushMetrics, s.log); err != nil {
			s.log.Error("remote write is off", "err", err)
		} else {
			s.pushServed.Do(func() { s.pushMetrics.Register(s.reg) })
			goSource("remote_write", pusher.Run)
		}
	}
	for _, m := range append(slices.Clone(cfg.Mbox), cfg.Maildir...) {
		mb := source.NewMailbox(m.Name, m.Path, time.Duration(m.RescanInterval), s.store, s.sources, s.log)
		goSource(m.Name, func(ctx context.Context) { mb.Run(ctx) })
	}
}

func (j *jobs) goRun(fn func()) {
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		fn()
	}()
}

func (j *jobs) stop() {
	j.mu.Lock()
	cancel := j.cancel
	j.cancel = nil
	j.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	j.wg.Wait()
}

// expireEvery is how often reports past archive.retention are deleted.
const expireEvery = time.Hour

// expire deletes the reports past the retention from the archive, at start
// and every expireEvery, until ctx is done.
func expire(ctx context.Context, arc *archive.Archive, retention time.Duration, log *slog.Logger) {
	for {
		n, err := arc.Expire(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("archive retention", "err", err)
		case n > 0:
			log.Info("archive retention: reports deleted", "reports", n, "retention", model.Duration(retention))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(expireEvery):
		}
	}
}

// normalizeDomains writes domains as the domain labels do.
func normalizeDomains(domains []string) []string {
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		out = append(out, config.NormalizeDomain(d))
	}
	return out
}

// refresh takes in, every interval, what other exporters sharing the
// PostgreSQL archive counted, until ctx is done.
func refresh(ctx context.Context, store *collector.Store, interval time.Duration, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		if err := store.Refresh(); err != nil && ctx.Err() == nil {
			log.Warn("refresh from the shared archive", "err", err)
		}
	}
}

// filesBelow counts the files below the directory sources (at most a
// million: it is for a log line).
func filesBelow(dirs []config.Directory) int {
	n := 0
	for _, d := range dirs {
		root, err := filepath.EvalSymlinks(d.Path)
		if err != nil {
			continue
		}
		filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				n++
			}
			if n >= 1_000_000 {
				return filepath.SkipAll
			}
			return nil
		})
	}
	return n
}
