package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
)

// buildEnricher makes the source enricher of a configuration: its
// databases, names through resolver (nil: no names), known senders and
// trust. A trusted service must be a known sender.
func buildEnricher(cfg config.Senders, resolver *dnsclient.Resolver, m *enrich.Metrics, log *slog.Logger) (*enrich.Enricher, map[string]*enrich.DB, error) {
	opts := enrich.Options{Resolver: resolver, Metrics: m, Log: log, Trust: map[string]enrich.Trust{}}
	dbs := map[string]*enrich.DB{}
	for kind, path := range map[string]string{"asn": cfg.ASNDatabase, "country": cfg.CountryDatabase} {
		if path == "" {
			continue
		}
		db, err := enrich.OpenDB(path)
		if err != nil {
			return nil, nil, fmt.Errorf("senders.%s_database: %w", kind, err)
		}
		dbs[kind] = db
	}
	opts.ASN, opts.Country = dbs["asn"], dbs["country"]
	senders, err := enrich.LoadSenders(cfg.KnownSendersFile)
	if err != nil {
		return nil, nil, fmt.Errorf("senders.known_senders_file: %w", err)
	}
	opts.Senders = senders
	for domain, t := range cfg.Trusted {
		trust := enrich.Trust{Networks: t.Prefixes, Services: t.Services, SPF: t.SPF}
		for _, s := range t.Services {
			if senders.ByName(s) == nil {
				return nil, nil, fmt.Errorf("senders.trusted: %s: service %q is not a known sender (see enrich/senders.yml, or add it in known_senders_file)", domain, s)
			}
		}
		opts.Trust[domain] = trust
	}
	if resolver != nil && *cfg.ReverseDNS {
		opts.Names = enrich.NewNames(resolver, time.Duration(cfg.LookupTimeout), 0, 0, m)
	}
	return enrich.New(opts), dbs, nil
}
