// Package archive keeps every report the exporter reads, and everything it
// knows besides, in one SQLite database (<storage.path>/dmarc.db): the
// reports and their records, the inputs they came from, the counter
// totals served on /metrics, the watchdog's and the DNS monitor's state.
// It is the single source of truth: a start loads the totals from it, and
// nothing else is saved anywhere.
//
// What one input (a file, a mail) brings is written in one transaction
// with the input's mark, by Apply: after a crash at any moment, an input
// is in the archive entirely or not at all, so that a restart neither
// loses a report nor counts one twice. Sources move an input aside only
// after Apply returned.
//
// The database is in WAL mode, so that readers (/metrics, the API) never
// wait for a write; commits are synchronous (synchronous=FULL), since a
// file is moved away once its transaction returns. The schema is created
// and upgraded by the numbered migrations embedded from migrations/.
package archive

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the pure Go SQLite driver: the binary stays static
)

// FileName is the database's name under the storage path.
const FileName = "dmarc.db"

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// Archive is an open archive.
type Archive struct {
	path string
	db   atomic.Pointer[handles] // replaced when the file is written anew (EnsureFile)
	file os.FileInfo             // the database file as opened
	// postgres: the archive is a PostgreSQL database (OpenURL), path its
	// URL without password.
	postgres bool
}

// handles are the connections to the database file.
type handles struct {
	// w is the one writing connection; r a pool of readers, which WAL
	// lets read while w writes.
	w, r *sql.DB
	// Reads made for every input, prepared once.
	inputStmt, knownStmt *sql.Stmt
}

// h returns the current connections.
func (a *Archive) h() *handles { return a.db.Load() }

// Open opens the archive under dir, creating dir and the database when
// they do not exist, and applies the migrations it lacks.
//
// dir may be a PostgreSQL URL instead (IsURL): OpenURL opens it.
func Open(dir string) (*Archive, error) {
	if IsURL(dir) {
		return OpenURL(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	path := filepath.Join(dir, FileName)
	a, err := openPath(path)
	if err != nil {
		return nil, err
	}
	if err := a.migrate(context.Background(), SchemaVersion()); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	if err := a.h().prepare(); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	if a.file, err = os.Stat(path); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	return a, nil
}

// OpenExisting opens the archive under dir for a command that reads it
// beside a running exporter: it creates nothing and migrates nothing, and
// refuses an archive of another schema version, which the exporter of
// this version upgrades when it starts.
func OpenExisting(dir string) (*Archive, error) {
	if IsURL(dir) {
		return openURL(dir, false)
	}
	path := filepath.Join(dir, FileName)
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("no archive: %w (give --storage.path)", err)
	}
	a, err := openPath(path)
	if err != nil {
		return nil, err
	}
	var have int
	if err := a.h().r.QueryRow("PRAGMA user_version").Scan(&have); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: read schema version: %w", path, err)
	}
	if want := SchemaVersion(); have != want {
		a.Close()
		return nil, fmt.Errorf("archive %s has schema version %d, this build reads %d: start this version's exporter on it once (it upgrades the archive), or use the dmarc-exporter that wrote it", path, have, want)
	}
	if err := a.h().prepare(); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	a.file = st
	return a, nil
}

func openPath(path string) (*Archive, error) {
	h, err := openHandles(path)
	if err != nil {
		return nil, err
	}
	a := &Archive{path: path}
	a.db.Store(h)
	return a, nil
}

func openHandles(path string) (*handles, error) {
	dsn := func(readOnly bool) string {
		q := url.Values{}
		// A 32 MiB page cache: the indexes of report identities are keyed
		// by hashes, so their pages are touched at random.
		for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "busy_timeout(10000)", "cache_size(-32768)"} {
			q.Add("_pragma", p)
		}
		if readOnly {
			q.Add("_pragma", "query_only(1)")
		}
		q.Set("_txlock", "immediate")
		return "file:" + path + "?" + q.Encode()
	}
	w, err := sql.Open("sqlite", dsn(false))
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn(true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	return &handles{w: w, r: r}, nil
}

// prepare prepares the reads made for every input, once the schema is
// there.
func (h *handles) prepare() error {
	var err error
	if h.inputStmt, err = h.r.Prepare("SELECT source, mark, refused, reason, error, read_at FROM inputs WHERE path = ?"); err != nil {
		return err
	}
	h.knownStmt, err = h.r.Prepare("SELECT 1 FROM report_identities WHERE identity = ?")
	return err
}

// Path is the database file.
func (a *Archive) Path() string { return a.path }

// Close closes the database.
func (a *Archive) Close() error { return a.h().close() }

func (h *handles) close() error {
	for _, st := range []*sql.Stmt{h.inputStmt, h.knownStmt} {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(h.r.Close(), h.w.Close())
}

// EnsureFile writes the database file anew, from the open connections,
// when it was deleted while the archive was open (by hand, by a cleanup
// job): without this, every write would go to the deleted file and be
// lost at the next start, which would then count every report again. It
// reports whether it wrote the file. A file put in its place is not
// overwritten: that is an error.
func (a *Archive) EnsureFile() (bool, error) {
	if a.postgres {
		return false, nil // a server's files are its own
	}
	fi, err := os.Stat(a.path)
	if err == nil {
		if os.SameFile(fi, a.file) {
			return false, nil
		}
		return false, fmt.Errorf("archive %s: the file was replaced while in use; restart to use the new one", a.path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("archive %s: %w", a.path, err)
	}
	old := a.h()
	// The write-ahead log beside the path belongs to the deleted file:
	// empty it into that file first, so that the new one never reads it.
	if _, err := old.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return false, fmt.Errorf("archive %s: checkpoint: %w", a.path, err)
	}
	if _, err := old.w.Exec("VACUUM INTO ?", a.path); err != nil {
		return false, fmt.Errorf("archive %s: write the deleted file anew: %w", a.path, err)
	}
	old.close() // reads under way on it fail, and are tried again
	h, err := openHandles(a.path)
	if err == nil {
		err = h.prepare()
	}
	if err != nil {
		return false, fmt.Errorf("archive %s: reopen: %w", a.path, err)
	}
	if a.file, err = os.Stat(a.path); err != nil {
		return false, fmt.Errorf("archive %s: %w", a.path, err)
	}
	a.db.Store(h)
	return true, nil
}

// migration is one numbered step of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded migrations, in order: NNNN_name.sql, numbered
// from 1 without gaps. For PostgreSQL, migrations/postgres/ holds those
// whose SQL differs.
func (a *Archive) migrations() []migration {
	all := migrations()
	if a.postgres {
		for i, m := range all {
			if data, err := migrationFiles.ReadFile("migrations/postgres/" + m.name); err == nil {
				all[i].sql = string(data)
			}
		}
	}
	return all
}

func migrations() []migration {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		panic(err) // embedded at build time
	}
	var out []migration
	for _, e := range entries {
		if e.IsDir() {
			continue // postgres/
		}
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != len(out)+1 {
			panic("archive: migration " + e.Name() + " out of sequence")
		}
		data, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(data)})
	}
	return out
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations()) }

// migrate brings the schema up to version target, one transaction per
// migration; PRAGMA user_version (PostgreSQL: the schema_version table)
// holds the version applied.
func (a *Archive) migrate(ctx context.Context, target int) error {
	have, err := a.schemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	all := a.migrations()
	if have > len(all) {
		return fmt.Errorf("schema version %d is newer than this build's (%d): use a newer dmarc-exporter", have, len(all))
	}
	for _, m := range all[have:target] {
		tx, err := a.h().w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		setVersion := fmt.Sprintf("PRAGMA user_version = %d", m.version)
		if a.postgres {
			setVersion = fmt.Sprintf("DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d)", m.version)
		}
		if _, err := tx.ExecContext(ctx, setVersion); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// schemaVersion is the version of the schema applied, 0 for a new archive.
func (a *Archive) schemaVersion(ctx context.Context) (int, error) {
	var v int
	if !a.postgres {
		err := a.h().w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
		return v, err
	}
	if _, err := a.h().w.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); err != nil {
		return 0, err
	}
	err := a.h().w.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&v)
	return v, err
}

// Meta returns the value of a meta key, "" when unset.
func (a *Archive) Meta(key string) (string, error) {
	var v string
	err := a.h().r.QueryRow("SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// SetMeta sets a meta key.
func (a *Archive) SetMeta(key, value string) error {
	_, err := a.h().w.Exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)
	return err
}

// Created is when the archive began (the watchdog's grace period for
// expected reporters starts there); it is set to now on first use.
func (a *Archive) Created(now time.Time) (time.Time, error) {
	v, err := a.Meta("created")
	if err != nil {
		return time.Time{}, err
	}
	if v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("meta created: %w", err)
		}
		return time.Unix(sec, 0), nil
	}
	return now, a.SetMeta("created", strconv.FormatInt(now.Unix(), 10))
}

// Tables lists the archive's tables, sorted.
func (a *Archive) Tables() ([]string, error) {
	q := "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	if a.postgres {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
	}
	rows, err := a.h().r.Query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, rows.Err()
}
