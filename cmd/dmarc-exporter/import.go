package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	"github.com/schollz/progressbar/v3"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
	"github.com/dmarc-exporter/dmarc-exporter/source"
)

// importCmd is `dmarc-exporter import PATH...`: a backfill of mail
// exports (mbox, Maildir, a directory of them or of report files, a zip
// of any) into the archive, read-only, with progress.
type importCmd struct {
	cmd         *kingpin.CmdClause
	paths       *[]string
	configFile  *string
	storagePath *string
	domains     *[]string
	asnDatabase *string
	countryDB   *string
	progress    *string
}

func newImportCmd(app *kingpin.Application) *importCmd {
	c := &importCmd{cmd: app.Command("import", "Read mail exports into the archive (mbox, Maildir, a directory of them or of reports, or a zip of any), without changing them. Stop the exporter first: it loads its counters at start.")}
	c.paths = c.cmd.Arg("path", "mbox file, Maildir, directory or zip.").Required().ExistingFilesOrDirs()
	c.configFile = c.cmd.Flag("config.file", "The exporter's configuration: its domains, limits and senders apply.").String()
	c.storagePath = c.cmd.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.domains = c.cmd.Flag("domain", "Count reports for this domain and its subdomains (repeatable), besides those of the configuration.").Strings()
	c.asnDatabase = c.cmd.Flag("senders.asn-database", "MaxMind-format ASN database, instead of senders.asn_database.").String()
	c.countryDB = c.cmd.Flag("senders.country-database", "MaxMind-format country database, instead of senders.country_database.").String()
	c.progress = c.cmd.Flag("progress", "Progress: a bar on a terminal, log lines every 10s otherwise (auto), or none.").Default("auto").Enum("auto", "bar", "log", "none")
	return c
}

func (c *importCmd) run(resolvers []string, logConfig *promslog.Config, stdout, stderr io.Writer) int {
	lc := *logConfig
	lc.Writer = stderr
	log := promslog.New(&lc)
	cfg := config.Default()
	if *c.configFile != "" {
		var err error
		if cfg, err = config.Load(*c.configFile); err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
	}
	cfg.Domains = append(cfg.Domains, *c.domains...)
	if *c.asnDatabase != "" {
		cfg.Senders.ASNDatabase = *c.asnDatabase
	}
	if *c.countryDB != "" {
		cfg.Senders.CountryDatabase = *c.countryDB
	}
	if err := cfg.Complete(); err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: configuration: %v\n", err)
		return 1
	}
	resolver, err := newResolver(resolvers)
	if err != nil {
		log.Warn("no DNS resolver: source names are off", "err", err)
	}
	enricher, _, err := buildEnricher(cfg.Senders, resolver, enrich.NewMetrics(prometheus.NewRegistry()), log)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: configuration: %v\n", err)
		return 1
	}
	arc, err := archive.Open(*c.storagePath)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	defer arc.Close()
	const sourceName = "import"
	store, err := collector.Open(collector.Options{
		Archive: arc, Dir: *c.storagePath, Domains: cfg.Domains, Sources: append(cfg.SourceNames(), sourceName),
		Limits: cfg.Limits, DedupRetention: time.Duration(cfg.State.DedupRetention), ReportLimits: report.DefaultLimits(),
		MaxRawBytes: cfg.Archive.RawLimit(), FailureSamples: cfg.FailureSamples, ExpectedReporters: cfg.ExpectedReporters,
		Enricher: enricher, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	metrics := source.NewMetrics(prometheus.NewRegistry())
	show := c.progressFunc(stderr, log)
	status := 0
	for _, path := range *c.paths {
		mb := source.NewMailbox(sourceName, path, 0, store, metrics, log)
		mb.Progress = func(p source.Progress) { show(path, p) }
		if err := mb.Pass(ctx); err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: import %s: %v (what was read is saved; run import again to go on)\n", path, err)
			status = 1
			if ctx.Err() != nil {
				break
			}
		}
	}
	if err := store.Commit(); err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: save to the archive: %v\n", err)
		return 1
	}
	return status
}

// progressFunc returns what shows a pass's progress: a bar on a terminal,
// a log line every 10 s otherwise.
func (c *importCmd) progressFunc(stderr io.Writer, log *slog.Logger) func(path string, p source.Progress) {
	mode := *c.progress
	if mode == "auto" {
		mode = "log"
		if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		var bar *progressbar.ProgressBar
		var barPath string
		return func(path string, p source.Progress) {
			if bar == nil || barPath != path {
				barPath = path
				bar = progressbar.NewOptions64(p.Size, progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
					progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(true))
			}
			bar.Describe(fmt.Sprintf("%d inputs, %d reports", p.Inputs+int(p.Skipped), p.Reports))
			bar.Set64(min(p.Read, p.Size))
			if p.Done {
				bar.Finish()
				fmt.Fprintln(stderr)
			}
		}
	case "log":
		var last time.Time
		began := time.Now()
		return func(path string, p source.Progress) {
			if !p.Done && time.Since(last) < 10*time.Second {
				return
			}
			last = time.Now()
			elapsed := time.Since(began).Seconds()
			rate := float64(p.Read) / max(elapsed, 0.001)
			eta := "-"
			if rate > 0 && p.Size > p.Read {
				eta = (time.Duration(float64(p.Size-p.Read)/rate) * time.Second).Round(time.Second).String()
			}
			log.Info("import progress", "path", path, "read_mb", p.Read>>20, "size_mb", p.Size>>20,
				"inputs", p.Inputs, "already_read", p.Skipped, "refused", p.Refused, "reports", p.Reports,
				"mb_per_s", fmt.Sprintf("%.1f", rate/(1<<20)), "eta", eta)
		}
	}
	return func(string, source.Progress) {}
}
