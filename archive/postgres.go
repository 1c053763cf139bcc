package archive

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL is the archive's second engine (archive.url:
// postgres://...), for archives shared by several exporters. The schema
// and the queries are the SQLite ones: the few places where the two
// dialects differ are the migration 0001 (migrations/postgres/), the
// operator commands (Stats, Check, Vacuum), and what pgDialect rewrites
// in each statement: ? placeholders become $n, and group_concat becomes
// string_agg.

// IsURL tells an archive URL (postgres://, postgresql://) from a
// directory.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// OpenURL opens the PostgreSQL archive at a URL, creating its tables
// and applying the migrations it lacks.
func OpenURL(rawURL string) (*Archive, error) { return openURL(rawURL, true) }

// openURL opens a PostgreSQL archive; without migrate, it refuses one of
// another schema version (as OpenExisting).
func openURL(rawURL string, migrate bool) (*Archive, error) {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", redact(rawURL), err)
	}
	open := func(conns int) *sql.DB {
		db := sql.OpenDB(pgDialect{stdlib.GetConnector(*cfg)})
		db.SetMaxOpenConns(conns)
		return db
	}
	// One writing connection, as with SQLite: Apply's transactions follow
	// one another.
	h := &handles{w: open(1), r: open(4)}
	if err := h.w.Ping(); err != nil {
		h.close()
		return nil, fmt.Errorf("archive %s: %w", redact(rawURL), err)
	}
	a := &Archive{path: redact(rawURL), postgres: true}
	a.db.Store(h)
	if migrate {
		if err := a.migrate(context.Background(), SchemaVersion()); err != nil {
			a.Close()
			return nil, fmt.Errorf("archive %s: %w", a.path, err)
		}
	} else if have, err := a.schemaVersion(context.Background()); err != nil || have != SchemaVersion() {
		a.Close()
		if err == nil {
			err = fmt.Errorf("schema version %d, this build reads %d: start this version's exporter on it once (it upgrades the archive)", have, SchemaVersion())
		}
		return nil, fmt.Errorf("archive %s: %w", a.path, err)
	}
	if err := a.h().prepare(); err != nil {
		a.Close()
		return nil, fmt.Errorf("archive %s: %w", a.path, err)
	}
	return a, nil
}

// redact drops the password of a URL, for messages and logs.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "postgres://(unreadable URL)"
	}
	return u.Redacted()
}

// pgDialect is pgx's database/sql connector with the statements rewritten
// for PostgreSQL.
type pgDialect struct{ driver.Connector }

func (c pgDialect) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

// pgConn is a pgx connection taking the archive's SQLite-flavoured
// statements.
type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, pgSQL(query))
	if err != nil {
		return nil, err
	}
	return pgStmt{st.(*stdlib.Stmt)}, nil
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, pgSQL(query), pgText(args))
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, pgSQL(query), pgText(args))
}

// pgStmt is a prepared statement taking the archive's text as pgConn does.
type pgStmt struct{ *stdlib.Stmt }

func (s pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Stmt.ExecContext(ctx, pgText(args))
}

func (s pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.Stmt.QueryContext(ctx, pgText(args))
}

// pgText makes text PostgreSQL takes: it refuses NUL bytes and bytes not
// in UTF-8, which SQLite keeps, and which anyone can put in a report or
// a file name. Each becomes U+FFFD, the same way in writes and reads.
func pgText(args []driver.NamedValue) []driver.NamedValue {
	for i, a := range args {
		if s, ok := a.Value.(string); ok && (!utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0) {
			args[i].Value = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
		}
	}
	return args
}

var groupConcat = regexp.MustCompile(`group_concat\((DISTINCT )?([^)]+)\)`)

// pgSQL rewrites a statement for PostgreSQL: "?" and "?N" placeholders
// become "$n" (outside quotes), group_concat(x) string_agg(x, ',').
func pgSQL(q string) string {
	q = groupConcat.ReplaceAllString(q, "string_agg($1$2, ',')")
	var b strings.Builder
	n := 0
	quote := byte(0)
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		case ch == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + q[i+1:j])
			} else {
				n++
				b.WriteString("$" + strconv.Itoa(n))
			}
			i = j - 1
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}
