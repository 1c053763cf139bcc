package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
	"github.com/dmarc-exporter/dmarc-exporter/source"
)

// defaultListenAddress: the 9100-9999 range of the Prometheus default port
// allocations is full; 10037 is outside it and on no exporter's entry.
const defaultListenAddress = ":10037"

// serveCmd runs the exporter: the default command.
type serveCmd struct {
	cmd            *kingpin.CmdClause
	configFile     *string
	configCheck    *bool
	sourceDirs     *[]string
	domains        *[]string
	storagePath    *string
	telemetryPath  *string
	newSeriesDelay *time.Duration
	asnDatabase    *string
	countryDB      *string
	webFlags       *web.FlagConfig
	logConfig      *promslog.Config
}

func newServeCmd(app *kingpin.Application) *serveCmd {
	c := &serveCmd{cmd: app.Command("serve", "Run the exporter (the default).").Default()}
	c.configFile = app.Flag("config.file", "YAML configuration file; optional with --source.dir.").String()
	c.configCheck = app.Flag("config.check", "Check the configuration and exit.").Bool()
	c.sourceDirs = app.Flag("source.dir", "Read reports from this directory (repeatable), besides those of the configuration.").Strings()
	c.domains = app.Flag("domain", "Count reports for this domain and its subdomains (repeatable), besides those of the configuration.").Strings()
	c.storagePath = app.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.telemetryPath = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	c.newSeriesDelay = app.Flag("metrics.new-series-delay", "Serve a new counter series at 0 this long before its value, so that increase() counts its first report; at least the scrape interval.").Default("2m").Duration()
	c.asnDatabase = app.Flag("senders.asn-database", "MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN Lite, IPinfo Lite), instead of senders.asn_database.").String()
	c.countryDB = app.Flag("senders.country-database", "MaxMind-format country database, instead of senders.country_database.").String()
	c.webFlags = kingpinflag.AddFlags(app, defaultListenAddress)
	c.logConfig = &promslog.Config{}
	promslogflag.AddFlags(app, c.logConfig)
	return c
}

// loadConfig reads the configuration file, if any, and adds the sources
// and domains given as flags.
func (c *serveCmd) loadConfig() (*config.Config, error) {
	cfg := config.Default()
	if *c.configFile != "" {
		var err error
		if cfg, err = config.Load(*c.configFile); err != nil {
			return nil, err
		}
	}
	for _, dir := range *c.sourceDirs {
		cfg.Directories = append(cfg.Directories, config.Directory{Path: dir})
	}
	cfg.Domains = append(cfg.Domains, *c.domains...)
	if *c.asnDatabase != "" {
		cfg.Senders.ASNDatabase = *c.asnDatabase
	}
	if *c.countryDB != "" {
		cfg.Senders.CountryDatabase = *c.countryDB
	}
	if err := cfg.Complete(); err != nil {
		return nil, err
	}
	if len(cfg.Directories) == 0 && len(cfg.IMAP) == 0 {
		return nil, errors.New("no source: give --source.dir, or directories or imap in --config.file")
	}
	return cfg, nil
}

func (c *serveCmd) run(resolvers []string, stdout, stderr io.Writer) int {
	logger := promslog.New(c.logConfig)
	cfg, err := c.loadConfig()
	if *c.configCheck {
		if err != nil {
			fmt.Fprintf(stderr, "configuration is not valid: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "configuration is valid")
		return 0
	}
	if err != nil {
		logger.Error("configuration", "err", err)
		return 1
	}
	logger.Info("starting dmarc-exporter", "version", version.Info(), "build_context", version.BuildContext())

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		versioncollector.NewCollector("dmarc_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	resolver, err := newResolver(resolvers)
	if err != nil {
		logger.Warn("no DNS resolver: the DNS monitor and source names are off", "err", err)
	}
	enrichMetrics := enrich.NewMetrics(reg)
	databases := &enrich.DatabaseCollector{}
	reg.MustRegister(databases)
	enricher, dbs, err := buildEnricher(cfg.Senders, resolver, enrichMetrics, logger)
	if err != nil {
		logger.Error("configuration", "err", err)
		return 1
	}
	databases.Set(dbs)
	arc, err := archive.Open(*c.storagePath)
	if err != nil {
		logger.Error("open archive", "err", err)
		return 1
	}
	defer arc.Close()
	store, err := collector.Open(collector.Options{
		Archive:           arc,
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
		Enricher:          enricher,
		Logger:            logger,
	})
	if err != nil {
		logger.Error("open archive", "err", err)
		return 1
	}
	// The store is served by collector.Handler, after the registry.
	reloadOK := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dmarc_exporter_config_last_reload_successful",
		Help: "Whether the last configuration reload succeeded (1) or not (0).",
	})
	reloadTime := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dmarc_exporter_config_last_reload_success_timestamp_seconds",
		Help: "When the configuration was last loaded successfully.",
	})
	reg.MustRegister(reloadOK, reloadTime)
	reloadOK.Set(1)
	reloadTime.SetToCurrentTime()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sources := &sourceRunner{store: store, arc: arc, metrics: source.NewMetrics(reg), log: logger, resolver: resolver}
	sources.start(ctx, cfg)

	var reloadMu sync.Mutex
	reload := func() error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		cfg, err := c.loadConfig()
		var enricher *enrich.Enricher
		var dbs map[string]*enrich.DB
		if err == nil {
			enricher, dbs, err = buildEnricher(cfg.Senders, resolver, enrichMetrics, logger)
		}
		if err != nil {
			reloadOK.Set(0)
			logger.Error("reload: keeping the running configuration", "err", err)
			return err
		}
		store.SetEnricher(enricher)
		databases.Set(dbs)
		store.SetConfig(cfg.Domains, cfg.SourceNames(), cfg.Limits, time.Duration(cfg.State.DedupRetention), cfg.FailureSamples,
			cfg.ExpectedReporters, cfg.Archive.RawLimit())
		sources.start(ctx, cfg)
		reloadOK.Set(1)
		reloadTime.SetToCurrentTime()
		logger.Info("configuration reloaded")
		return nil
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			_ = reload()
		}
	}()

	mux := http.NewServeMux()
	mux.Handle(*c.telemetryPath, collector.Handler(reg, store, logger))
	mux.Handle("/failure-samples", collector.SamplesHandler(store))
	mux.Handle("/dns-timeline", collector.TimelineHandler(store))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Ready") })
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if err := reload(); err != nil {
			http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded")
	})
	if *c.telemetryPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "DMARC Exporter",
			Description: "Prometheus exporter for DMARC aggregate reports",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: *c.telemetryPath, Text: "Metrics"},
				{Address: "/failure-samples", Text: "Failure report samples", Description: "recent failure reports, redacted (JSON; empty unless failure_samples is set)"},
				{Address: "/dns-timeline", Text: "DNS timeline", Description: "every change of the watched DNS records (JSON)"},
				{Address: "/-/healthy", Text: "Health"},
			},
		})
		if err != nil {
			logger.Error("landing page", "err", err)
			return 1
		}
		mux.Handle("/", landing)
	}

	server := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- web.ListenAndServe(server, c.webFlags, logger) }()
	status := 0
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-serveErr:
		logger.Error("serve", "err", err)
		status = 1
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = server.Shutdown(shutdownCtx)
	sources.stop()
	if err := store.Commit(); err != nil {
		logger.Error("save to the archive", "err", err)
		status = 1
	}
	return status
}

// sourceRunner runs the sources of the current configuration; start
// replaces those of the previous one.
type sourceRunner struct {
	store    *collector.Store
	arc      *archive.Archive
	metrics  *source.Metrics
	log      *slog.Logger
	resolver *dnsclient.Resolver // nil: no DNS monitor

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *sourceRunner) start(ctx context.Context, cfg *config.Config) {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		expire(ctx, r.arc, time.Duration(cfg.Archive.Retention), r.log)
	}()
	if r.resolver != nil && len(cfg.Domains) > 0 && *cfg.DNS.Interval > 0 {
		mon := &dnsmon.Monitor{Resolver: r.resolver, Sink: r.store, Domains: cfg.Domains,
			Selectors: cfg.DNS.DKIMSelectors, Interval: time.Duration(*cfg.DNS.Interval), Log: r.log}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			mon.Run(ctx)
		}()
	}
	for _, d := range cfg.Directories {
		dir := source.NewDir(d, r.store, r.metrics, r.log)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := dir.Run(ctx); err != nil {
				r.log.Error("source stopped", "input", d.Name, "err", err)
			}
		}()
	}
	for _, m := range cfg.IMAP {
		mbox := source.NewIMAP(m, r.store, r.metrics, r.log)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			mbox.Run(ctx)
		}()
	}
}

func (r *sourceRunner) stop() {
	r.mu.Lock()
	cancel := r.cancel
	r.cancel = nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
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
