// Command dmarc-exporter turns DMARC reports into Prometheus metrics.
//
// Commands:
//
//	serve (default)  read reports from the configured sources, serve /metrics
//	parse FILE...    print every report found in the files as NDJSON
//	check DOMAIN...  check a domain's DMARC and SPF records
//	archive stats|check|vacuum|copy  look after the archive, move it to PostgreSQL
//	reports list|show           the archive's reports on a terminal
//	export openmetrics          the report-time series, for promtool
//	import PATH...              read mail exports (mbox, Maildir, zip) into the archive
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run parses the command line and runs a subcommand; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("dmarc-exporter", "A Prometheus exporter for DMARC reports.")
	app.Version(version.Print("dmarc-exporter"))
	app.HelpFlag.Short('h')
	// Help and version are what was asked for: on stdout, and then the
	// program ends, whatever else the command line says.
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	done := false
	app.Terminate(func(int) { done = true })

	resolvers := app.Flag("dns.resolver", "DNS resolver HOST:PORT for every lookup the program makes (repeatable); default: the system's.").Strings()
	serve := newServeCmd(app)
	parse := newParseCmd(app)
	check := newCheckCmd(app)
	arc := newArchiveCmd(app)
	reports := newReportsCmd(app)
	export := newExportCmd(app)
	imp := newImportCmd(app)

	cmd, err := app.Parse(args)
	if done {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 2
	}
	switch cmd {
	case parse.cmd.FullCommand():
		return parse.run(*resolvers, stdout, stderr)
	case check.cmd.FullCommand():
		return check.run(*resolvers, stdout, stderr)
	case arc.stats.FullCommand(), arc.check.FullCommand(), arc.vacuum.FullCommand(), arc.copy.FullCommand():
		return arc.run(cmd, stdout, stderr)
	case reports.list.FullCommand(), reports.show.FullCommand():
		return reports.run(cmd, stdout, stderr)
	case imp.cmd.FullCommand():
		return imp.run(*resolvers, serve.logConfig, stdout, stderr)
	case export.openmetrics.FullCommand():
		return export.run(stdout, stderr)
	case serve.cmd.FullCommand():
		return serve.run(*resolvers, stdout, stderr)
	}
	return 0
}
