package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// copyTables are the tables Copy copies, parents before children.
var copyTables = []string{"meta", "inputs", "report_identities", "aggregate_reports", "aggregate_records", "record_dkim",
	"record_spf", "tls_reports", "tls_policies", "tls_failures", "failure_reports", "totals", "reporters", "dkim_selectors",
	"dns_records", "dns_changes", "leases"}

// CopyTo copies everything of this archive into dst, a new PostgreSQL
// archive (dmarc-exporter archive copy --to=postgres://...), in one
// transaction, and checks that every table has as many rows on both
// sides. dst must hold no report and no counter: a copy never merges.
func (a *Archive) CopyTo(ctx context.Context, dst *Archive, progress func(table string, rows int64)) error {
	if !dst.postgres || a.postgres {
		return errors.New("archive copy: from an SQLite archive to a PostgreSQL one")
	}
	var used bool
	if err := dst.h().r.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM totals) OR EXISTS (SELECT 1 FROM inputs)").Scan(&used); err != nil {
		return fmt.Errorf("archive copy: %w", err)
	}
	if used {
		return fmt.Errorf("archive copy: %s already holds an archive; a copy goes into an empty one", dst.path)
	}
	tx, err := dst.h().w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, table := range copyTables {
		n, err := copyTable(ctx, a.h().r, tx, table)
		if err != nil {
			return fmt.Errorf("archive copy: %s: %w", table, err)
		}
		if progress != nil {
			progress(table, n)
		}
	}
	// The identity columns go on after the numbers copied.
	for _, t := range [][2]string{{"tls_reports", "id"}, {"failure_reports", "id"}, {"dns_changes", "rowid"}} {
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("SELECT setval(pg_get_serial_sequence('%s', '%s'), coalesce((SELECT max(%s) FROM %s), 0) + 1, false)",
			t[0], t[1], t[1], t[0])); err != nil {
			return fmt.Errorf("archive copy: %s: %w", t[0], err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive copy: %w", err)
	}
	for _, table := range copyTables {
		var from, to int64
		if err := a.h().r.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&from); err != nil {
			return fmt.Errorf("archive copy: count %s: %w", table, err)
		}
		if err := dst.h().r.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&to); err != nil {
			return fmt.Errorf("archive copy: count %s in the copy: %w", table, err)
		}
		if from != to {
			return fmt.Errorf("archive copy: %s has %d rows, the copy %d", table, from, to)
		}
	}
	return nil
}

// copyTable copies the rows of a table, by the target's columns (the
// SQLite rowid of dns_changes included), converting 0 and 1 to booleans
// where the target wants them.
func copyTable(ctx context.Context, from *sql.DB, to *sql.Tx, table string) (int64, error) {
	rows, err := to.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position`, table)
	if err != nil {
		return 0, err
	}
	var cols []string
	var boolean []bool
	for rows.Next() {
		var c, t string
		if err := rows.Scan(&c, &t); err != nil {
			rows.Close()
			return 0, err
		}
		cols = append(cols, c)
		boolean = append(boolean, t == "boolean")
	}
	rows.Close()
	if len(cols) == 0 {
		return 0, fmt.Errorf("no such table in the target")
	}
	src, err := from.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+table)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	insert := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	stmt, err := to.PrepareContext(ctx, insert)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	var n int64
	values := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range values {
		ptrs[i] = &values[i]
	}
	for src.Next() {
		if err := src.Scan(ptrs...); err != nil {
			return n, err
		}
		for i, b := range boolean {
			if v, ok := values[i].(int64); ok && b {
				values[i] = v != 0
			}
		}
		if _, err := stmt.ExecContext(ctx, values...); err != nil {
			return n, fmt.Errorf("row %d: %w", n+1, err)
		}
		n++
	}
	return n, src.Err()
}
