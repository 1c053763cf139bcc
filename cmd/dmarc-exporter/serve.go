package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/dmarc-exporter/dmarc-exporter/config"
)

// defaultListenAddress: the 9100-9999 range of the Prometheus default port
// allocations is full; 10037 is outside it and on no exporter's entry.
const defaultListenAddress = ":10037"

// serveCmd runs the exporter: the default command.
type serveCmd struct {
	cmd             *kingpin.CmdClause
	configFile      *string
	configCheck     *bool
	sourceDirs      *[]string
	domains         *[]string
	storagePath     *string
	telemetryPath   *string
	externalURL     *string
	routePrefix     *string
	enableLifecycle *bool
	newSeriesDelay  *time.Duration
	asnDatabase     *string
	countryDB       *string
	shard           *[]string
	webFlags        *web.FlagConfig
	logConfig       *promslog.Config
}

func newServeCmd(app *kingpin.Application) *serveCmd {
	c := &serveCmd{cmd: app.Command("serve", "Run the exporter (the default).").Default()}
	c.configFile = c.cmd.Flag("config.file", "YAML configuration file; optional with --source.dir.").String()
	c.configCheck = c.cmd.Flag("config.check", "Check the configuration and exit.").Bool()
	c.sourceDirs = c.cmd.Flag("source.dir", "Read reports from this directory (repeatable), besides those of the configuration.").Strings()
	c.domains = c.cmd.Flag("domain", "Count reports for this domain and its subdomains (repeatable), besides those of the configuration.").Strings()
	c.storagePath = c.cmd.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.enableLifecycle = c.cmd.Flag("web.enable-lifecycle", "Allow a configuration reload by HTTP POST to /-/reload (SIGHUP always reloads).").Bool()
	c.telemetryPath = c.cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
	c.externalURL = c.cmd.Flag("web.external-url", "The URL under which the exporter is reached from outside (behind a reverse proxy, say); the pages link to its path. Defaults to http://localhost:<port>/.").String()
	c.routePrefix = c.cmd.Flag("web.route-prefix", "Prefix of the routes served. Defaults to the path of --web.external-url.").String()
	c.newSeriesDelay = c.cmd.Flag("metrics.new-series-delay", "Serve a new counter series at 0 this long before its value, so that increase() counts its first report; at least the scrape interval.").Default("2m").Duration()
	c.asnDatabase = c.cmd.Flag("senders.asn-database", "MaxMind-format ASN database (GeoLite2-ASN, DB-IP ASN Lite, IPinfo Lite), instead of senders.asn_database.").String()
	c.countryDB = c.cmd.Flag("senders.country-database", "MaxMind-format country database, instead of senders.country_database.").String()
	c.shard = c.cmd.Flag("shard.domain", "Serve only this domain's series (repeatable): one shard of several exporters sharing a PostgreSQL archive. Default: every domain.").Strings()
	c.webFlags = kingpinflag.AddFlags(c.cmd, defaultListenAddress)
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
	if len(cfg.Directories) == 0 && len(cfg.IMAP) == 0 && len(cfg.Mbox) == 0 && len(cfg.Maildir) == 0 {
		return nil, errors.New("no source: give --source.dir, or directories, imap, mbox or maildir in --config.file")
	}
	return cfg, nil
}

func (c *serveCmd) run(resolvers []string, stdout, stderr io.Writer) int {
	logger := promslog.New(c.logConfig)
	cfg, err := c.loadConfig()
	if *c.configCheck {
		if err == nil {
			err = checkSources(cfg)
		}
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
	srv, err := newServer(c, cfg, resolvers, logger)
	if err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	defer srv.close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return srv.run(ctx, cfg)
}

// checkSources reports the source directories that cannot be read: a
// path that does not exist, is not a directory, or may not be listed.
func checkSources(cfg *config.Config) error {
	var problems []error
	for _, d := range cfg.Directories {
		if _, err := os.ReadDir(d.Path); err != nil {
			problems = append(problems, fmt.Errorf("directory source %s: %w", d.Name, err))
		}
	}
	return errors.Join(problems...)
}
