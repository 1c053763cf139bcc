package archive

import (
	"context"
	"fmt"
	"strings"
)

// SourceGroup is who sent as a domain in a period: the records of one
// class, AS and name, summed.
type SourceGroup struct {
	Class          string `json:"class"`
	ASN            uint32 `json:"asn,omitempty"`
	Org            string `json:"org,omitempty"`
	Name           string `json:"name,omitempty"`
	Addresses      int    `json:"addresses"`
	Reports        int    `json:"reports"`
	Messages       uint64 `json:"messages"`
	FailedMessages uint64 `json:"failed_messages"` // messages whose DMARC result is fail
}

// SourceAddress is one sending address of a source group.
type SourceAddress struct {
	IP             string `json:"ip"`
	Class          string `json:"class"`
	ASN            uint32 `json:"asn,omitempty"`
	Org            string `json:"org,omitempty"`
	Country        string `json:"country,omitempty"`
	Name           string `json:"name,omitempty"`
	Reports        int    `json:"reports"`
	Messages       uint64 `json:"messages"`
	FailedMessages uint64 `json:"failed_messages"`
}

// classOrder puts the classes that need a look first: threats, unknown
// sources, misconfigured ones, then the rest.
const classOrder = `CASE r.source_class WHEN 'threat' THEN 0 WHEN 'unknown' THEN 1 WHEN 'misconfigured' THEN 2
	WHEN 'mailing_list' THEN 3 WHEN 'forwarded' THEN 4 WHEN 'authorized' THEN 5 ELSE 6 END`

// sourceWhere selects the records of the reports f selects, narrowed by
// its source fields.
func (f *ReportFilter) sourceWhere() (string, []any) {
	reports := *f
	reports.Class, reports.ASN, reports.Name, reports.IP = "", nil, nil, ""
	where, args := reports.where()
	conds := []string{"r.problem NOT LIKE 'count%'"}
	if where != "" {
		conds = append(conds, "r.report IN (SELECT id FROM aggregate_reports"+where+")")
	}
	rec, recArgs := f.recordConds()
	return " WHERE " + strings.Join(append(conds, rec...), " AND "), append(args, recArgs...)
}

// Sources groups the records of the reports f selects by class, AS and
// name: unknown and threat sources first, then by messages.
func (a *Archive) Sources(ctx context.Context, f ReportFilter, limit int) ([]SourceGroup, error) {
	where, args := f.sourceWhere()
	rows, err := a.h().r.QueryContext(ctx, `SELECT r.source_class, r.source_asn, max(r.source_org), r.source_name,
		count(DISTINCT r.source_ip), count(DISTINCT r.report), sum(r.count), sum(CASE WHEN r.dmarc = 'pass' THEN 0 ELSE r.count END)
		FROM aggregate_records r`+where+` GROUP BY r.source_class, r.source_asn, r.source_name
		ORDER BY `+classOrder+`, 7 DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("archive: sources: %w", err)
	}
	defer rows.Close()
	out := []SourceGroup{}
	for rows.Next() {
		var g SourceGroup
		var asn int64
		if err := rows.Scan(&g.Class, &asn, &g.Org, &g.Name, &g.Addresses, &g.Reports, &g.Messages, &g.FailedMessages); err != nil {
			return nil, fmt.Errorf("archive: sources: %w", err)
		}
		g.ASN = uint32(asn)
		out = append(out, g)
	}
	return out, rows.Err()
}

// SourceAddresses lists the sending addresses of the records f selects,
// with the same order as Sources.
func (a *Archive) SourceAddresses(ctx context.Context, f ReportFilter, limit int) ([]SourceAddress, error) {
	where, args := f.sourceWhere()
	rows, err := a.h().r.QueryContext(ctx, `SELECT r.source_ip, r.source_class, r.source_asn, max(r.source_org),
		max(r.source_country), r.source_name, count(DISTINCT r.report), sum(r.count),
		sum(CASE WHEN r.dmarc = 'pass' THEN 0 ELSE r.count END)
		FROM aggregate_records r`+where+` GROUP BY r.source_ip, r.source_class, r.source_asn, r.source_name
		ORDER BY `+classOrder+`, 8 DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("archive: source addresses: %w", err)
	}
	defer rows.Close()
	out := []SourceAddress{}
	for rows.Next() {
		var s SourceAddress
		var asn int64
		if err := rows.Scan(&s.IP, &s.Class, &asn, &s.Org, &s.Country, &s.Name, &s.Reports, &s.Messages, &s.FailedMessages); err != nil {
			return nil, fmt.Errorf("archive: source addresses: %w", err)
		}
		s.ASN = uint32(asn)
		out = append(out, s)
	}
	return out, rows.Err()
}
