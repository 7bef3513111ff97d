// Package sqlstore reads the blocklist table that flask-jwt-extended's
// database example keeps (id, jti, created_at; in later versions also type
// and user_id) in PostgreSQL (pgx) or SQLite (modernc.org/sqlite, pure Go),
// and optionally a subject cutoffs table and a claim entries table of its
// own.
//
// The table is the app's: the store checks its layout through the catalog
// when it opens, and changes nothing in it unless asked (CreateTables, the
// admin API, Prune). An entry's exp comes from an expiry column when the
// table has one, else from the creation time plus the longest life of the
// token's type (flask's JWT_ACCESS_TOKEN_EXPIRES / JWT_REFRESH_TOKEN_EXPIRES),
// else the entry never expires.
//
// Changes are followed by polling for rows with an id above the highest seen
// (cheap with the primary key); deletions are picked up by the syncer's
// periodic full reconciliation.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// Sentinel errors.
var (
	ErrBadIdentifier = errors.New("invalid SQL identifier")
	ErrBadDriver     = errors.New("unknown SQL driver")
	ErrBadTime       = errors.New("unreadable time value")
	// ErrSchema: the table exists but does not fit the configuration. It
	// will not fix itself; see SchemaError for the table and column.
	ErrSchema = errors.New("table layout does not fit the configuration")
	// ErrMissing: the database file or the table does not exist yet (the
	// app may create it on its first start).
	ErrMissing = errors.New("does not exist yet")
)

// Driver names.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// Defaults, from flask-jwt-extended's database example.
const (
	defaultTable        = "token_blocklist"
	defaultCutoffsTable = "jtiguard_subject_cutoffs"
	defaultClaimsTable  = "jtiguard_claim_revocations"
	// AdminType is what the admin API writes in the type column.
	AdminType = "admin"
)

// idLookback re-reads this many ids below the highest seen on every poll:
// PostgreSQL allocates serial ids at insert time, so a transaction that
// commits late can surface a row below ids already seen, and SQLite without
// AUTOINCREMENT (Flask-SQLAlchemy's default) reuses the id of a deleted last
// row. Re-reading is idempotent (the index ignores no-op puts) and the
// reconciliation catches anything older.
const idLookback = 256

// Column names an optional column. The zero value uses the default name when
// the table has that column; Named("") says the table has none; Named(x)
// requires column x.
type Column struct {
	Name string
	Set  bool
}

// Named returns a Column that must exist ("" for none).
func Named(name string) Column { return Column{Name: name, Set: true} }

// Config names the database and the table layout. Identifiers are checked
// against identRE and quoted: configuration must not be a way to inject SQL.
type Config struct {
	Driver string // Postgres or SQLite
	DSN    string // a pgx DSN, or a SQLite file path

	Table         string // default token_blocklist
	IDColumn      string // default id
	JTIColumn     string // default jti
	TypeColumn    Column // default: "type" when the table has it
	CreatedColumn Column // default: "created_at" when the table has it
	ExpiresColumn Column // default: "expires" when the table has it
	IssColumn     string // default "": flask-jwt-extended has no issuer column
	// CutoffsTable is this server's own table of subject cutoffs; by
	// default "jtiguard_subject_cutoffs", used when it exists.
	CutoffsTable Column
	// ClaimsTable is this server's own table of claim entries (a sid
	// logged out, other claims): by default "jtiguard_claim_revocations",
	// used when it exists, created only by CreateTables.
	ClaimsTable Column

	// AccessTokenExpires and RefreshTokenExpires are the app's
	// JWT_ACCESS_TOKEN_EXPIRES and JWT_REFRESH_TOKEN_EXPIRES. Without an
	// expiry value, a row expires at its creation time plus the lifetime of
	// its type (with a type column) or the longer of the two (without, or
	// for another type). Zero: unknown, and such rows never expire.
	AccessTokenExpires  time.Duration
	RefreshTokenExpires time.Duration
	// ExpiryGrace: rows are read until exp + ExpiryGrace (0: the index's
	// default). Give the index the same value.
	ExpiryGrace time.Duration

	// CreateTables creates the SQLite file, the blocklist table and the
	// cutoffs table when they are missing. Off by default: the database is
	// the app's.
	CreateTables bool
	PollInterval time.Duration // default 1s
	MaxEntries   int           // bound on live rows read by Load; default 2,000,000
	Now          func() time.Time
	Logger       *slog.Logger
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// quoteIdent validates a (possibly schema-qualified) identifier and quotes it.
func quoteIdent(name string) (string, error) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return "", fmt.Errorf("%w: %q", ErrBadIdentifier, name)
	}
	for i, p := range parts {
		if !identRE.MatchString(p) {
			return "", fmt.Errorf("%w: %q (letters, digits and _ only, at most 63, optionally schema.table)", ErrBadIdentifier, name)
		}
		parts[i] = `"` + p + `"`
	}
	return strings.Join(parts, "."), nil
}

// CheckIdentifier reports whether name can be a column name, or with
// qualified a table name (schema.table allowed).
func CheckIdentifier(name string, qualified bool) error {
	if !qualified && strings.Contains(name, ".") {
		return fmt.Errorf("%w: a column name cannot have a schema", ErrBadIdentifier)
	}
	_, err := quoteIdent(name)
	return err
}

// Store is a SQL-backed revocationsource.Store.
type Store struct {
	db    *sql.DB
	cfg   Config
	pg    bool
	r     resolved
	q     queries
	zone  *time.Location // the zone naive timestamps may be in, besides UTC
	grace int64
	maxID atomic.Int64
	// claimsMaxID is the highest id of the claims table seen.
	claimsMaxID atomic.Int64

	unreadable atomic.Int64
	warnMu     sync.Mutex
	warned     map[int64]bool
}

type queries struct {
	load, poll, topID, insert, deleteJTI, pruneScan, pruneRow string
	loadCutoffs, upsertCutoff, deleteCutoff, pruneCut         string
	claims                                                    claimQueries
	loadFilter                                                filter
}

// filter is an optional WHERE on Load that leaves out rows long expired, so
// that the database does not send them; Go checks every row again anyway.
type filter struct {
	sql     string
	instant bool          // the bound is a time.Time (else Unix seconds)
	before  time.Duration // the bound is now - grace - before
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Open connects, optionally creates the tables, and checks the layout
// through the catalog. Errors: ErrBadDriver, ErrBadIdentifier, ErrSchema
// (with a *SchemaError) and ErrMissing are about the configuration or the
// database's content; anything else is about reaching the database.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Table = orDefault(cfg.Table, defaultTable)
	cfg.IDColumn = orDefault(cfg.IDColumn, "id")
	cfg.JTIColumn = orDefault(cfg.JTIColumn, "jti")
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 2_000_000
	}
	if cfg.ExpiryGrace <= 0 {
		cfg.ExpiryGrace = rs.DefaultExpiryGrace
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var driverName string
	switch cfg.Driver {
	case Postgres:
		driverName = "pgx"
	case SQLite:
		driverName = "sqlite"
	default:
		return nil, fmt.Errorf("%w: %q", ErrBadDriver, cfg.Driver)
	}
	names := []string{cfg.Table, cfg.IDColumn, cfg.JTIColumn, cfg.TypeColumn.Name, cfg.CreatedColumn.Name,
		cfg.ExpiresColumn.Name, cfg.IssColumn, cfg.CutoffsTable.Name, cfg.ClaimsTable.Name}
	for i, n := range names {
		if n == "" {
			continue
		}
		if _, err := quoteIdent(n); err != nil {
			return nil, err
		}
		if i > 0 && i < 7 && strings.Contains(n, ".") {
			return nil, fmt.Errorf("%w: column %q cannot be qualified", ErrBadIdentifier, n)
		}
	}
	dsn := cfg.DSN
	if cfg.Driver == SQLite {
		// mode=rw: opening must not create the app's database file. WAL
		// (readers beside a writer) only for a file this server creates:
		// the journal mode is a lasting property of the file.
		// busy_timeout waits for another writer (the app) instead of failing.
		_, statErr := os.Stat(dsn)
		switch {
		case statErr == nil:
			dsn = "file:" + dsn + "?mode=rw&_pragma=busy_timeout(5000)"
		case errors.Is(statErr, os.ErrNotExist) && cfg.CreateTables:
			dsn = "file:" + dsn + "?mode=rwc&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)"
		case errors.Is(statErr, os.ErrNotExist):
			return nil, fmt.Errorf("SQLite file %s %w (the app creates it; or let the source create it)", cfg.DSN, ErrMissing)
		default:
			return nil, fmt.Errorf("SQLite file %s: %w", cfg.DSN, statErr)
		}
	}
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Driver, err)
	}
	if cfg.Driver == SQLite {
		db.SetMaxOpenConns(4)
	} else {
		db.SetMaxOpenConns(8)
	}
	s := &Store{db: db, cfg: cfg, pg: cfg.Driver == Postgres, grace: durSeconds(cfg.ExpiryGrace), warned: map[int64]bool{}}
	if err := s.init(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to %s: %w", s.cfg.Driver, err)
	}
	if err := s.loadZone(ctx); err != nil {
		return err
	}
	t, err := s.describe(ctx, s.cfg.Table)
	if err != nil {
		return err
	}
	if t == nil {
		if !s.cfg.CreateTables {
			return fmt.Errorf("table %s %w (the app creates it, for example with db.create_all(); or let the source create it)", s.cfg.Table, ErrMissing)
		}
		if err := s.createBlocklist(ctx); err != nil {
			return err
		}
		if t, err = s.describe(ctx, s.cfg.Table); err != nil {
			return err
		}
		s.r.createdBlocklist = true
	}
	cutName := s.cfg.CutoffsTable.Name
	if !s.cfg.CutoffsTable.Set {
		cutName = defaultCutoffsTable
	}
	var ct tableInfo
	if cutName != "" {
		if ct, err = s.describe(ctx, cutName); err != nil {
			return err
		}
		if ct == nil && s.cfg.CreateTables {
			if err := s.createCutoffs(ctx, cutName); err != nil {
				return err
			}
			if ct, err = s.describe(ctx, cutName); err != nil {
				return err
			}
		}
	}
	claimsName := s.claimsTableName()
	var clt tableInfo
	if claimsName != "" {
		if clt, err = s.describe(ctx, claimsName); err != nil {
			return err
		}
		if clt == nil && s.cfg.CreateTables {
			if err := s.createClaims(ctx, claimsName); err != nil {
				return err
			}
			if clt, err = s.describe(ctx, claimsName); err != nil {
				return err
			}
		}
	}
	created := s.r.createdBlocklist
	if s.r, err = s.resolve(t, ct); err != nil {
		return err
	}
	if err := s.resolveClaims(clt); err != nil {
		return err
	}
	s.r.createdBlocklist = created
	s.q = s.buildQueries()
	log := s.cfg.Logger
	if s.r.insertBlockedBy != "" {
		log.Warn("admin revocations of a jti are off for this table", "reason", s.r.insertBlockedBy)
	}
	if !s.r.cutoffs {
		log.Info("no subject cutoffs table: admin revocations of a subject are off", "table", cutName)
	}
	if !s.r.claims {
		log.Info("no claim entries table: revocations by claim (sid) are off", "table", orDefault(claimsName, defaultClaimsTable))
	}
	log.Info("blocklist table checked", "table", s.cfg.Table, "layout", s.describeLayout())
	return nil
}

// describeLayout says, for the start-up log, how rows are read.
func (s *Store) describeLayout() string {
	r := s.r
	var b strings.Builder
	fmt.Fprintf(&b, "id=%s jti=%s", r.id.name, r.jti.name)
	for _, c := range []struct {
		label string
		col   *colInfo
	}{{"type", r.typ}, {"created", r.created}, {"expires", r.expires}, {"iss", r.iss}} {
		if c.col != nil {
			fmt.Fprintf(&b, " %s=%s(%s)", c.label, c.col.name, c.col.declared)
		}
	}
	switch {
	case r.expires != nil:
		b.WriteString("; exp from the expiry column")
		if r.created != nil && s.maxLifetime() > 0 {
			b.WriteString(", or created + lifetime when it is NULL")
		}
	case r.created != nil && s.maxLifetime() > 0:
		b.WriteString("; exp = created + the token lifetime")
	default:
		b.WriteString("; rows never expire (no expiry column, no token lifetimes configured)")
	}
	if s.zone != nil {
		fmt.Fprintf(&b, "; timestamps without a zone are read as the later of UTC and %s", s.zone)
	}
	return b.String()
}

// loadZone finds the zone that naive timestamps may be in besides UTC.
func (s *Store) loadZone(ctx context.Context) error {
	if !s.pg {
		s.zone = time.Local
		return nil
	}
	var name string
	if err := s.db.QueryRowContext(ctx, `SELECT current_setting('TimeZone')`).Scan(&name); err != nil {
		return fmt.Errorf("read the session TimeZone: %w", err)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		s.cfg.Logger.Warn("unknown PostgreSQL TimeZone; reading timestamps without a zone as late as any zone could mean",
			"timezone", name, "err", err)
		loc = latestZone
	}
	s.zone = loc
	return nil
}

// qi quotes a validated identifier for the dialect. SQLite reads an unknown
// "double-quoted" name as a string literal (https://sqlite.org/quirks.html
// §8), so a renamed column would silently turn every jti into the text
// "jti"; backquoted names are always identifiers, and an unknown one is an
// error.
func (s *Store) qi(name string) string {
	q, _ := quoteIdent(name) // validated in Open
	if !s.pg {
		q = strings.ReplaceAll(q, `"`, "`")
	}
	return q
}

func (s *Store) ph(i int) string {
	if s.pg {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// timeExpr reads a time column so that toUnix can convert it: PostgreSQL
// resolves naive timestamps itself (as the later of UTC and the session's
// zone), SQLite hands over text.
func (s *Store) timeExpr(c *colInfo) string {
	if c == nil {
		return "NULL"
	}
	q := s.qi(c.name)
	if !s.pg {
		return "CAST(" + q + " AS TEXT)"
	}
	switch c.kind {
	case kindTimestamp:
		return fmt.Sprintf("GREATEST(%s AT TIME ZONE 'UTC', %s AT TIME ZONE current_setting('TimeZone'))", q, q)
	case kindTimestampTZ:
		return q
	case kindInt:
		return "CAST(" + q + " AS BIGINT)"
	case kindNum:
		return "CAST(CEIL(" + q + ") AS BIGINT)"
	}
	return "CAST(" + q + " AS TEXT)"
}

func textExpr(q string) string { return "CAST(" + q + " AS TEXT)" }

func (s *Store) buildQueries() queries {
	r := s.r
	t := s.qi(s.cfg.Table)
	id := s.qi(r.id.name)
	jti := s.qi(r.jti.name)
	typ, iss := "NULL", "NULL"
	if r.typ != nil {
		typ = textExpr(s.qi(r.typ.name))
	}
	if r.iss != nil {
		iss = textExpr(s.qi(r.iss.name))
	}
	cols := fmt.Sprintf("CAST(%s AS BIGINT), %s, %s, %s, %s, %s", id, textExpr(jti), typ,
		s.timeExpr(r.created), s.timeExpr(r.expires), iss)
	var q queries
	q.loadFilter = s.loadFilter()
	where := ""
	if q.loadFilter.sql != "" {
		where = " WHERE " + q.loadFilter.sql
	}
	q.load = fmt.Sprintf("SELECT %s FROM %s%s", cols, t, where)
	idArg := s.ph(1)
	if s.pg {
		idArg = "CAST($1 AS BIGINT)" // any integer id type; int4 has its own cross-type operator
	}
	q.poll = fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s ORDER BY %s LIMIT %s", cols, t, id, idArg, id, s.ph(2))
	q.topID = fmt.Sprintf("SELECT MAX(%s) FROM %s", id, t)
	q.pruneScan = fmt.Sprintf("SELECT %s FROM %s", cols, t)
	q.pruneRow = fmt.Sprintf("DELETE FROM %s WHERE %s = %s AND %s = %s", t, id, s.ph(1), textExpr(jti), s.ph(2))

	// Insert: jti, then whatever of type, created, expires, iss the table has.
	insCols, insVals := []string{jti}, []string{s.jtiArg(1)}
	n := 1
	add := func(col, val string) {
		insCols = append(insCols, col)
		insVals = append(insVals, val)
	}
	next := func() int { n++; return n }
	if r.typ != nil {
		add(s.qi(r.typ.name), s.ph(next()))
	}
	if r.created != nil {
		add(s.qi(r.created.name), s.timeArgExpr(r.created, next()))
	}
	if r.expires != nil {
		add(s.qi(r.expires.name), s.timeArgExpr(r.expires, next()))
	}
	if r.iss != nil {
		add(s.qi(r.iss.name), s.ph(next()))
	}
	q.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t, strings.Join(insCols, ", "), strings.Join(insVals, ", "))
	q.deleteJTI = fmt.Sprintf("DELETE FROM %s WHERE %s = %s", t, jti, s.jtiArg(1))
	if r.iss != nil {
		q.deleteJTI += fmt.Sprintf(" AND %s = %s", s.qi(r.iss.name), s.ph(2))
	}

	if r.cutoffs {
		ct := s.qi(r.cutoffsTable)
		iss, sub, rb, exp := s.qi("iss"), s.qi("sub"), s.qi("revoked_before"), s.qi("expires")
		q.loadCutoffs = fmt.Sprintf(`SELECT %s, %s, %s, %s FROM %s`, iss, sub, rb, exp, ct)
		q.upsertCutoff = fmt.Sprintf(`INSERT INTO %s (%s, %s, %s, %s) VALUES (%s, %s, %s, %s)
ON CONFLICT (%s, %s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s`,
			ct, iss, sub, rb, exp, s.ph(1), s.ph(2), s.ph(3), s.ph(4), iss, sub, rb, rb, exp, exp)
		q.deleteCutoff = fmt.Sprintf(`DELETE FROM %s WHERE %s = %s AND %s = %s`, ct, iss, s.ph(1), sub, s.ph(2))
		q.pruneCut = fmt.Sprintf(`DELETE FROM %s WHERE %s IS NOT NULL AND %s > 0 AND %s <= %s`, ct, exp, exp, exp, s.ph(1))
	}
	if r.claims {
		q.claims = s.buildClaimQueries()
	}
	return q
}

// jtiArg is the placeholder for a jti, cast for a uuid column.
func (s *Store) jtiArg(i int) string {
	if s.pg && s.r.jti.kind == kindUUID {
		return "CAST(" + s.ph(i) + " AS uuid)"
	}
	return s.ph(i)
}

// timeArgExpr is the placeholder for a time written by the admin API.
// PostgreSQL converts an instant into a naive column in the session's zone,
// exactly as it does for the app.
func (s *Store) timeArgExpr(c *colInfo, i int) string {
	if s.pg && (c.kind == kindTimestamp || c.kind == kindTimestampTZ) {
		return "CAST(" + s.ph(i) + " AS TIMESTAMPTZ)"
	}
	return s.ph(i)
}

// timeArg is the value for timeArgExpr: time.Time for PostgreSQL timestamps,
// Unix seconds for numbers, and text otherwise (with an offset in
// PostgreSQL text; in SQLite, SQLAlchemy's naive UTC form, which a flask app
// reading the same file can parse).
func (s *Store) timeArg(c *colInfo, t time.Time) any {
	switch {
	case c.kind == kindInt || c.kind == kindNum:
		return t.Unix()
	case s.pg && (c.kind == kindTimestamp || c.kind == kindTimestampTZ):
		return t
	case s.pg:
		return t.UTC().Format("2006-01-02 15:04:05.000000Z07:00")
	}
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}

// maxLifetime is the longer of the configured token lifetimes.
func (s *Store) maxLifetime() time.Duration {
	return max(s.cfg.AccessTokenExpires, s.cfg.RefreshTokenExpires)
}

// lifetime is how long a token of this type can live (0: unknown).
func (s *Store) lifetime(typ sql.NullString) time.Duration {
	if s.r.typ != nil && typ.Valid {
		switch typ.String {
		case "access":
			return s.cfg.AccessTokenExpires
		case "refresh":
			return s.cfg.RefreshTokenExpires
		}
	}
	return s.maxLifetime()
}

// allFinite reports whether every row gets a finite derived expiry.
func (s *Store) allFinite() bool {
	if s.r.typ != nil {
		return s.cfg.AccessTokenExpires > 0 && s.cfg.RefreshTokenExpires > 0
	}
	return s.maxLifetime() > 0
}

func (s *Store) loadFilter() filter {
	if !s.pg {
		return filter{} // in-process: filtering in Go costs nothing more
	}
	usable := func(c *colInfo) bool {
		return c != nil && c.kind != kindText && c.kind != kindUUID && c.kind != kindOther
	}
	r := s.r
	switch {
	case r.expires != nil && r.created == nil || r.expires != nil && !s.allFinite():
		// Rows with a NULL expiry count from created, or never expire:
		// keep them all.
		if !usable(r.expires) {
			return filter{}
		}
		e := s.timeExpr(r.expires)
		return filter{sql: fmt.Sprintf("(%s IS NULL OR %s > $1)", e, e), instant: r.expires.kind == kindTimestamp || r.expires.kind == kindTimestampTZ}
	case r.expires == nil && r.created != nil && s.allFinite():
		if !usable(r.created) {
			return filter{}
		}
		c := s.timeExpr(r.created)
		return filter{sql: fmt.Sprintf("(%s IS NULL OR %s > $1)", c, c), instant: r.created.kind == kindTimestamp || r.created.kind == kindTimestampTZ,
			before: s.maxLifetime()}
	}
	return filter{}
}

// classify looks at the catalog again after a failed read: when the tables
// no longer fit what the queries were built for (a column renamed or
// dropped, the table gone), the failure is not an outage but rows the server
// cannot see, and it is marked rs.ErrUnreadable.
func (s *Store) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	t, derr := s.describe(ctx, s.cfg.Table)
	if derr != nil {
		return err // the database itself is not answering: an outage
	}
	var ct tableInfo
	if s.r.cutoffs {
		if ct, derr = s.describe(ctx, s.r.cutoffsTable); derr != nil {
			return err
		}
	}
	var clt tableInfo
	if s.r.claims {
		if clt, derr = s.describe(ctx, s.r.claimsTable); derr != nil {
			return err
		}
	}
	var problem error
	switch {
	case t == nil:
		problem = &SchemaError{Table: s.cfg.Table, Problem: "no longer exists"}
	case s.r.cutoffs && ct == nil:
		problem = &SchemaError{Table: s.r.cutoffsTable, Problem: "no longer exists"}
	case s.r.claims && clt == nil:
		problem = &SchemaError{Table: s.r.claimsTable, Problem: "no longer exists"}
	case s.r.claims && checkClaimsColumns(s.r.claimsTable, clt) != nil:
		problem = checkClaimsColumns(s.r.claimsTable, clt)
	default:
		r, rerr := s.resolve(t, ct)
		switch {
		case rerr != nil:
			problem = rerr
		case !sameLayout(r, s.r):
			problem = &SchemaError{Table: s.cfg.Table, Problem: "its columns changed since the server started; restart it"}
		}
	}
	if problem == nil {
		return err
	}
	return fmt.Errorf("%w: %w (%w)", rs.ErrUnreadable, problem, err)
}

// sameLayout reports whether two resolutions read the same columns the
// same way.
func sameLayout(a, b resolved) bool {
	same := func(x, y *colInfo) bool {
		if x == nil || y == nil {
			return x == y
		}
		return x.name == y.name && x.kind == y.kind
	}
	return a.id.name == b.id.name && a.jti.name == b.jti.name && a.jti.kind == b.jti.kind &&
		same(a.typ, b.typ) && same(a.created, b.created) && same(a.expires, b.expires) && same(a.iss, b.iss) &&
		a.cutoffs == b.cutoffs
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the handle, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// Unreadable is the number of time values that could not be read (their
// rows are kept without an expiry).
func (s *Store) Unreadable() int64 { return s.unreadable.Load() }

// CanRevokeTokens reports whether the admin API can insert rows, and why not.
func (s *Store) CanRevokeTokens() (bool, string) {
	return s.r.insertBlockedBy == "", s.r.insertBlockedBy
}

// HasCutoffs reports whether a subject cutoffs table is in use.
func (s *Store) HasCutoffs() bool { return s.r.cutoffs }

// row is one blocklist row as read.
type row struct {
	id      int64
	jti     sql.NullString
	typ     sql.NullString
	created any
	expires any
	iss     sql.NullString
}

func (s *Store) scan(rows *sql.Rows) (row, error) {
	var r row
	err := rows.Scan(&r.id, &r.jti, &r.typ, &r.created, &r.expires, &r.iss)
	return r, err
}

// expiry computes a row's exp: the expiry column, else created + the type's
// lifetime, else none. A value that cannot be read leaves the row without an
// expiry (revoked until deleted) and is counted and logged once per row.
func (s *Store) expiry(r row) int64 {
	if s.r.expires != nil {
		v, present, err := toUnix(r.expires, s.zone)
		if err != nil {
			s.unreadableValue(r.id, s.r.expires.name, err)
			return 0
		}
		if present {
			return clampExp(v)
		}
	}
	if s.r.created != nil {
		life := s.lifetime(r.typ)
		if life <= 0 {
			return 0
		}
		v, present, err := toUnix(r.created, s.zone)
		if err != nil {
			s.unreadableValue(r.id, s.r.created.name, err)
			return 0
		}
		if present {
			return clampExp(v + durSeconds(life))
		}
	}
	return 0
}

func (s *Store) unreadableValue(id int64, col string, err error) {
	s.unreadable.Add(1)
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if s.warned[id] || len(s.warned) >= 1000 {
		return
	}
	s.warned[id] = true
	s.cfg.Logger.Warn("unreadable time value; the row stays revoked without an expiry",
		"table", s.cfg.Table, "column", col, "row_id", id, "err", err)
}

func (s *Store) entry(r row) (rs.Entry, bool) {
	if !r.jti.Valid {
		return rs.Entry{}, false
	}
	return rs.Entry{JTI: r.jti.String, Iss: r.iss.String, Exp: s.expiry(r)}, true
}

// live reports whether exp + grace is still ahead of now.
func (s *Store) live(exp, now int64) bool { return exp == 0 || exp+s.grace > now }

// Load reads every live row (bounded by MaxEntries; rows past exp + grace
// neither count nor load) and all cutoffs.
func (s *Store) Load(ctx context.Context) (rs.State, error) {
	var st rs.State
	now := s.cfg.Now()
	var args []any
	if f := s.q.loadFilter; f.sql != "" {
		bound := now.Add(-time.Duration(s.grace)*time.Second - f.before)
		if f.instant {
			args = append(args, bound)
		} else {
			args = append(args, bound.Unix())
		}
	}
	rows, err := s.db.QueryContext(ctx, s.q.load, args...)
	if err != nil {
		return st, s.classify(ctx, fmt.Errorf("load blocklist: %w", err))
	}
	defer rows.Close()
	var maxID int64
	unix := now.Unix()
	for rows.Next() {
		r, err := s.scan(rows)
		if err != nil {
			return rs.State{}, fmt.Errorf("load blocklist: %w", err)
		}
		maxID = max(maxID, r.id)
		e, ok := s.entry(r)
		if !ok || !s.live(e.Exp, unix) {
			continue
		}
		if len(st.Entries) == s.cfg.MaxEntries {
			return rs.State{}, fmt.Errorf("%w: more than %d unexpired rows in %s", rs.ErrTooManyEntries, s.cfg.MaxEntries, s.cfg.Table)
		}
		st.Entries = append(st.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return rs.State{}, fmt.Errorf("load blocklist: %w", err)
	}
	if st.Cutoffs, err = s.loadCutoffs(ctx); err != nil {
		return rs.State{}, err
	}
	if st.Entries, err = s.loadClaims(ctx, st.Entries); err != nil {
		return rs.State{}, err
	}
	// Only move forward: a follower may already have seen newer rows. (The
	// filter may have hidden the newest rows; the poll's lookback and the
	// index's no-op puts make re-reading them harmless.)
	for {
		cur := s.maxID.Load()
		if maxID <= cur || s.maxID.CompareAndSwap(cur, maxID) {
			break
		}
	}
	return st, nil
}

func (s *Store) loadCutoffs(ctx context.Context) ([]rs.Cutoff, error) {
	if !s.r.cutoffs {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, s.q.loadCutoffs)
	if err != nil {
		return nil, s.classify(ctx, fmt.Errorf("load cutoffs: %w", err))
	}
	defer rows.Close()
	now := s.cfg.Now().Unix()
	var out []rs.Cutoff
	for rows.Next() {
		var (
			c   rs.Cutoff
			exp sql.NullInt64
		)
		if err := rows.Scan(&c.Iss, &c.Sub, &c.RevokedBefore, &exp); err != nil {
			return nil, fmt.Errorf("load cutoffs: %w", err)
		}
		c.Exp = exp.Int64
		if !s.live(c.Exp, now) {
			continue
		}
		if len(out) == s.cfg.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d cutoffs", rs.ErrTooManyEntries, s.cfg.MaxEntries)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load cutoffs: %w", err)
	}
	return out, nil
}

// pollBatch bounds one poll's read; a backlog drains over several polls.
const pollBatch = 10_000

// Follow polls for new rows and re-reads the (small) cutoffs table.
func (s *Store) Follow(ctx context.Context, sink rs.Sink) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := s.PollOnce(ctx, sink); err != nil {
			return err
		}
	}
}

// PollOnce reads rows added since the last read and the cutoffs table.
func (s *Store) PollOnce(ctx context.Context, sink rs.Sink) error {
	// SQLite without AUTOINCREMENT (Flask-SQLAlchemy's default) gives a new row max(id)+1:
	// once its last rows are deleted (the source's prune, the app's cleanup), new rows take
	// ids below the highest seen. When the table's highest id falls below it, the poll reads
	// from the start once (more rows than the lookback may have come in meanwhile), or the
	// next logouts would wait for the full reconciliation. A PostgreSQL sequence never
	// reuses an id.
	if !s.pg {
		var top sql.NullInt64
		if err := s.db.QueryRowContext(ctx, s.q.topID).Scan(&top); err != nil {
			return s.classify(ctx, fmt.Errorf("poll blocklist: %w", err))
		}
		if cur := s.maxID.Load(); top.Int64 < cur {
			s.maxID.CompareAndSwap(cur, 0)
		}
	}
	for {
		from := s.maxID.Load()
		rows, err := s.db.QueryContext(ctx, s.q.poll, max(0, from-idLookback), pollBatch)
		if err != nil {
			return s.classify(ctx, fmt.Errorf("poll blocklist: %w", err))
		}
		var (
			changes []rs.Change
			maxID   = from
			n       int
		)
		for rows.Next() {
			r, err := s.scan(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("poll blocklist: %w", err)
			}
			n++
			maxID = max(maxID, r.id)
			if e, ok := s.entry(r); ok {
				changes = append(changes, rs.Change{Op: rs.OpPutEntry, Entry: e, Merge: true})
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("poll blocklist: %w", err)
		}
		if len(changes) > 0 {
			sink.Apply(changes)
		}
		s.maxID.CompareAndSwap(from, maxID)
		if n < pollBatch || maxID == from {
			break
		}
	}
	if err := s.pollClaims(ctx, sink); err != nil {
		return err
	}
	if !s.r.cutoffs {
		return nil
	}
	since := sink.Seq()
	cs, err := s.loadCutoffs(ctx)
	if err != nil {
		return err
	}
	if err := sink.ReconcileCutoffs(cs, since); err != nil && !errors.Is(err, rs.ErrStaleReconcile) {
		return err
	}
	return nil
}

// Prune deletes rows (and cutoffs) whose exp + grace has passed. Only when
// asked: the table is the app's.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	now := s.cfg.Now().Unix()
	rows, err := s.db.QueryContext(ctx, s.q.pruneScan)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	type victim struct {
		id  int64
		jti string
	}
	var victims []victim
	for rows.Next() {
		r, err := s.scan(rows)
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("prune: %w", err)
		}
		if exp := s.expiry(r); r.jti.Valid && !s.live(exp, now) {
			victims = append(victims, victim{r.id, r.jti.String})
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	var n int64
	for len(victims) > 0 {
		batch := victims[:min(500, len(victims))]
		victims = victims[len(batch):]
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return n, fmt.Errorf("prune: %w", err)
		}
		var done int64
		for _, v := range batch {
			// id and jti: SQLite may have given a deleted row's id to a
			// new one since the scan.
			res, err := tx.ExecContext(ctx, s.q.pruneRow, v.id, v.jti)
			if err != nil {
				_ = tx.Rollback()
				return n, fmt.Errorf("prune: %w", err)
			}
			k, _ := res.RowsAffected()
			done += k
		}
		if err := tx.Commit(); err != nil {
			return n, fmt.Errorf("prune: %w", err)
		}
		n += done
	}
	if s.r.cutoffs {
		res, err := s.db.ExecContext(ctx, s.q.pruneCut, now-s.grace)
		if err != nil {
			return n, fmt.Errorf("prune cutoffs: %w", err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	if s.r.claims {
		res, err := s.db.ExecContext(ctx, s.q.claims.prune, now-s.grace)
		if err != nil {
			return n, fmt.Errorf("prune claim entries: %w", err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}

// EffectiveEntry is the entry as a read of the row RevokeToken writes will
// return it (see rs.EffectiveEntrier).
func (s *Store) EffectiveEntry(e rs.Entry) rs.Entry {
	if e.Exp != 0 && s.r.expires != nil {
		return e
	}
	e.Exp = 0
	if life := s.lifetime(sql.NullString{String: AdminType, Valid: true}); s.r.created != nil && life > 0 {
		e.Exp = clampExp(s.cfg.Now().Unix() + durSeconds(life))
	}
	return e
}

// RevokeToken inserts a row, as flask-jwt-extended does on logout. Several
// rows for one jti may exist; the longest expiry wins.
func (s *Store) RevokeToken(ctx context.Context, e rs.Entry) error {
	if e.Claim != "" {
		return fmt.Errorf("%w: a claim entry is not a jti (RevokeClaim)", rs.ErrInvalid)
	}
	if s.r.insertBlockedBy != "" {
		return fmt.Errorf("%w: %s", rs.ErrReadOnly, s.r.insertBlockedBy)
	}
	if e.Iss != "" && s.r.iss == nil {
		return rs.ErrIssuerUnsupported
	}
	if m := s.r.jti.maxLen; m > 0 && len([]rune(e.JTI)) > m {
		return fmt.Errorf("%w: column %s holds at most %d characters", rs.ErrInvalid, s.r.jti.name, m)
	}
	if s.pg && s.r.jti.kind == kindUUID && !uuidRE.MatchString(e.JTI) {
		return fmt.Errorf("%w: column %s is a uuid, and %q is not one", rs.ErrInvalid, s.r.jti.name, e.JTI)
	}
	now := s.cfg.Now()
	// Without a place for exp, the row lasts created + lifetime: refuse an
	// exp beyond that rather than let the revocation end early.
	if e.Exp != 0 && s.r.expires == nil {
		if eff := s.EffectiveEntry(e); eff.Exp != 0 && eff.Exp < e.Exp {
			return fmt.Errorf("%w: exp %d is later than now plus the longest token lifetime (%s), and table %s has no expiry column to hold it",
				rs.ErrInvalid, e.Exp, s.maxLifetime(), s.cfg.Table)
		}
	}
	args := []any{e.JTI}
	if s.r.typ != nil {
		args = append(args, AdminType)
	}
	if s.r.created != nil {
		args = append(args, s.timeArg(s.r.created, now))
	}
	if s.r.expires != nil {
		if e.Exp == 0 {
			args = append(args, nil)
		} else {
			args = append(args, s.timeArg(s.r.expires, time.Unix(e.Exp, 0)))
		}
	}
	if s.r.iss != nil {
		args = append(args, e.Iss)
	}
	if _, err := s.db.ExecContext(ctx, s.q.insert, args...); err != nil {
		return fmt.Errorf("insert into %s: %w", s.cfg.Table, err)
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// UnrevokeToken deletes every row of the jti (and issuer, when scoped).
func (s *Store) UnrevokeToken(ctx context.Context, k rs.EntryKey) error {
	args := []any{k.JTI}
	if s.r.iss != nil {
		args = append(args, k.Iss)
	} else if k.Iss != "" {
		return rs.ErrIssuerUnsupported
	}
	if s.pg && s.r.jti.kind == kindUUID && !uuidRE.MatchString(k.JTI) {
		return nil // no such row can exist
	}
	if _, err := s.db.ExecContext(ctx, s.q.deleteJTI, args...); err != nil {
		return fmt.Errorf("delete from %s: %w", s.cfg.Table, err)
	}
	return nil
}

func (s *Store) noCutoffs() error {
	return fmt.Errorf("%w: no subject cutoffs table (create %s, or let the source create it)", rs.ErrReadOnly,
		orDefault(s.r.cutoffsTable, defaultCutoffsTable))
}

// RevokeSubject upserts a cutoff.
func (s *Store) RevokeSubject(ctx context.Context, c rs.Cutoff) error {
	if !s.r.cutoffs {
		return s.noCutoffs()
	}
	var exp any
	if c.Exp != 0 {
		exp = c.Exp
	}
	if _, err := s.db.ExecContext(ctx, s.q.upsertCutoff, c.Iss, c.Sub, c.RevokedBefore, exp); err != nil {
		return fmt.Errorf("upsert cutoff: %w", err)
	}
	return nil
}

// UnrevokeSubject deletes a cutoff.
func (s *Store) UnrevokeSubject(ctx context.Context, k rs.CutoffKey) error {
	if !s.r.cutoffs {
		return s.noCutoffs()
	}
	if _, err := s.db.ExecContext(ctx, s.q.deleteCutoff, k.Iss, k.Sub); err != nil {
		return fmt.Errorf("delete cutoff: %w", err)
	}
	return nil
}

// createBlocklist creates the blocklist table (CreateTables only): the
// columns of flask-jwt-extended's example plus an expiry column, every one
// but jti optional or defaulted, so the app's own INSERT works whichever of
// them it fills.
func (s *Store) createBlocklist(ctx context.Context) error {
	cfg := s.cfg
	name := func(c Column, def string) string {
		if c.Set {
			return c.Name
		}
		return def
	}
	idType, ts := "INTEGER PRIMARY KEY AUTOINCREMENT", "TIMESTAMP" // AUTOINCREMENT: ids never reused
	if s.pg {
		idType, ts = "BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ"
	}
	defs := []string{s.qi(cfg.IDColumn) + " " + idType, s.qi(cfg.JTIColumn) + " VARCHAR(256) NOT NULL"}
	if n := name(cfg.TypeColumn, "type"); n != "" {
		defs = append(defs, s.qi(n)+" VARCHAR(16) NULL")
	}
	if n := name(cfg.CreatedColumn, "created_at"); n != "" {
		defs = append(defs, s.qi(n)+" "+ts+" NOT NULL DEFAULT CURRENT_TIMESTAMP")
	}
	if n := name(cfg.ExpiresColumn, "expires"); n != "" {
		defs = append(defs, s.qi(n)+" "+ts+" NULL")
	}
	if cfg.IssColumn != "" {
		defs = append(defs, s.qi(cfg.IssColumn)+" VARCHAR(512) NOT NULL DEFAULT ''")
	}
	stmts := []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", s.qi(cfg.Table), strings.Join(defs, ", "))}
	if idx, err := quoteIdent(strings.ReplaceAll(cfg.Table, ".", "_") + "_jti_idx"); err == nil {
		on := s.qi(cfg.Table)
		if schema, _ := splitName(cfg.Table); schema != "" && !s.pg {
			idx = s.qi(schema) + "." + idx // SQLite puts the schema on the index name
			on = s.qi(strings.SplitN(cfg.Table, ".", 2)[1])
		}
		stmts = append(stmts, fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", idx, on, s.qi(cfg.JTIColumn)))
	}
	for _, stmt := range stmts {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create table %s: %w", cfg.Table, err)
		}
	}
	s.cfg.Logger.Info("created the blocklist table", "table", cfg.Table)
	return nil
}

func (s *Store) createCutoffs(ctx context.Context, name string) error {
	stmt := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s ("iss" VARCHAR(512) NOT NULL DEFAULT '', "sub" VARCHAR(256) NOT NULL,
"revoked_before" BIGINT NOT NULL, "expires" BIGINT NULL, PRIMARY KEY ("iss", "sub"))`, s.qi(name))
	if _, err := s.db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	s.cfg.Logger.Info("created the subject cutoffs table", "table", name)
	return nil
}
