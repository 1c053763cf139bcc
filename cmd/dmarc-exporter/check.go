package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
)

// checkCmd is `dmarc-exporter check DOMAIN...`: a DMARC record tester. It
// prints one finding per line (or one JSON object per finding) and exits 1
// when any finding is an error.
type checkCmd struct {
	cmd       *kingpin.CmdClause
	domains   *[]string
	format    *string
	selectors *[]string
}

func newCheckCmd(app *kingpin.Application) *checkCmd {
	c := &checkCmd{cmd: app.Command("check", "Check the DMARC, SPF, DKIM, MTA-STS, TLS-RPT and BIMI records of DOMAINs and explain what is wrong.")}
	c.selectors = c.cmd.Flag("dkim-selector", "DKIM selector to check (repeatable).").Strings()
	c.format = c.cmd.Flag("format", "Output: text (a line per finding) or json (an object per finding).").Default("text").Enum("text", "json")
	c.domains = c.cmd.Arg("domain", "domains to check").Required().Strings()
	return c
}

func (c *checkCmd) run(resolvers []string, stdout, stderr io.Writer) int {
	r, err := newResolver(resolvers)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 2
	}
	status := 0
	enc := json.NewEncoder(stdout)
	for _, d := range *c.domains {
		domain := config.NormalizeDomain(d)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, findings := dnsmon.CheckDMARC(ctx, r, domain)
		_, spf := dnsmon.CheckSPF(ctx, r, domain)
		findings = append(findings, spf...)
		for _, sel := range *c.selectors {
			findings = append(findings, dnsmon.Observe(ctx, r, domain, dnsmon.KindDKIM, sel).Finding())
		}
		for _, kind := range []string{dnsmon.KindMTASTS, dnsmon.KindTLSRPT, dnsmon.KindBIMI} {
			findings = append(findings, dnsmon.Observe(ctx, r, domain, kind, "").Finding())
		}
		cancel()
		for _, f := range findings {
			if f.Severity == dnsmon.SeverityError {
				status = 1
			}
			if *c.format == "json" {
				enc.Encode(f)
				continue
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s: %s\n", f.Domain, f.Record, f.Severity, f.Code, f.Message)
		}
	}
	return status
}

// newResolver uses the --dns.resolver servers, else the system's.
func newResolver(servers []string) (*dnsclient.Resolver, error) {
	if len(servers) > 0 {
		return &dnsclient.Resolver{Servers: servers, Timeout: 5 * time.Second}, nil
	}
	return dnsclient.SystemResolver()
}
