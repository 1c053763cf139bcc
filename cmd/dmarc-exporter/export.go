package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/history"
)

// exportCmd is `dmarc-exporter export openmetrics`: the report-time
// series of the archive, with timestamps, for promtool tsdb
// create-blocks-from openmetrics.
type exportCmd struct {
	cmd, openmetrics *kingpin.CmdClause
	storagePath      *string
	since, until     *string
	output           *string
}

func newExportCmd(app *kingpin.Application) *exportCmd {
	c := &exportCmd{cmd: app.Command("export", "Write the archive's report-time series.")}
	c.storagePath = c.cmd.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.openmetrics = c.cmd.Command("openmetrics", "Write the messages per report day as OpenMetrics with timestamps (for promtool tsdb create-blocks-from openmetrics).")
	c.since = c.openmetrics.Flag("since", "First day written (YYYY-MM-DD, UTC); default: the oldest report's.").String()
	c.until = c.openmetrics.Flag("until", "Last day written (YYYY-MM-DD, UTC, inclusive); default: yesterday, the last complete day.").String()
	c.output = c.openmetrics.Flag("output", "Write to this file instead of standard output.").Short('o').String()
	return c
}

func (c *exportCmd) run(stdout, stderr io.Writer) int {
	from, until, err := exportRange(*c.since, *c.until, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 2
	}
	// Reading never creates nor upgrades an archive.
	arc, err := archive.OpenExisting(*c.storagePath)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	defer arc.Close()
	series, err := history.FromArchive(context.Background(), arc, archive.GroupFilter{From: from, Until: until}, from, until)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	out := stdout
	if *c.output != "" {
		f, err := os.Create(*c.output)
		if err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
		defer f.Close()
		out = f
	}
	if err := series.WriteOpenMetrics(out); err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: write: %v\n", err)
		return 1
	}
	if f, ok := out.(*os.File); ok && f != os.Stdout {
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: write %s: %v\n", *c.output, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%d samples\n", series.Len())
	return 0
}

// exportRange reads --since and --until as the days [from, until).
func exportRange(since, until string, now time.Time) (from, end time.Time, err error) {
	if since != "" {
		if from, err = time.Parse(time.DateOnly, since); err != nil {
			return from, end, fmt.Errorf("--since %q: want YYYY-MM-DD", since)
		}
	}
	end = now.UTC().Truncate(24 * time.Hour)
	if until != "" {
		if end, err = time.Parse(time.DateOnly, until); err != nil {
			return from, end, fmt.Errorf("--until %q: want YYYY-MM-DD", until)
		}
		end = end.AddDate(0, 0, 1)
	}
	if !from.IsZero() && !end.After(from) {
		return from, end, fmt.Errorf("--until %s is before --since %s", until, since)
	}
	return from, end, nil
}
