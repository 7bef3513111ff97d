// Package sqlstore reads and writes a flask-jwt-extended style blocklist
// table (id, jti, type, created_at, plus an expiry column) in PostgreSQL
// (pgx) or SQLite (modernc.org/sqlite, pure Go), and a table of subject
// cutoffs of its own.
//
// Changes are followed by polling for rows with an id above the highest seen
// (cheap with the primary key), and deletions are picked up by the syncer's
// periodic full reconciliation.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
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
	ErrBadExpiry     = errors.New("unreadable expiry value")
)

// Driver names.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// idLookback re-reads this many ids below the highest seen on every poll:
// PostgreSQL allocates serial ids at insert time, so a transaction that
// commits late can surface a row below ids already seen. Re-reading is
// idempotent (the index ignores no-op puts) and the reconciliation catches
// anything older.
const idLookback = 256

// Config names the database and the table layout. Identifiers are checked
// against identRE and quoted: configuration must not be a way to inject SQL.
type Config struct {
	Driver string // Postgres or SQLite
	DSN    string // a pgx DSN, or a SQLite file path

	Table         string // default token_blocklist
	IDColumn      string // default id
	JTIColumn     string // default jti
	TypeColumn    string // default type; "" when the table has none
	CreatedColumn string // default created_at; "" when the table has none
	ExpiresColumn string // default expires; "" when the table has none
	IssColumn     string // default "": flask-jwt-extended has no issuer column
	CutoffsTable  string // default jtiguard_subject_cutoffs

	CreateTables bool          // create missing tables and indexes
	PollInterval time.Duration // default 1s
	MaxEntries   int           // bound on rows read by Load; default 2,000,000
	Now          func() time.Time
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

// Store is a SQL-backed revocationsource.Store.
type Store struct {
	db     *sql.DB
	cfg    Config
	q      queries
	maxID  atomic.Int64
	driver string
}

type queries struct {
	load, poll, maxID, insert, deleteJTI                 string
	loadCutoffs, upsertCutoff, deleteCutoff, createTable string
	createIndex, createCutoffs                           string
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Open connects, optionally creates the tables, and checks the layout with a
// query that reads nothing.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Table = orDefault(cfg.Table, "token_blocklist")
	cfg.IDColumn = orDefault(cfg.IDColumn, "id")
	cfg.JTIColumn = orDefault(cfg.JTIColumn, "jti")
	cfg.CutoffsTable = orDefault(cfg.CutoffsTable, "jtiguard_subject_cutoffs")
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 2_000_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
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
	q, err := buildQueries(cfg)
	if err != nil {
		return nil, err
	}
	dsn := cfg.DSN
	if cfg.Driver == SQLite {
		// WAL lets the feed read while the admin API writes; busy_timeout
		// waits for another writer (a flask app) instead of failing.
		dsn = "file:" + dsn + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)"
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
	s := &Store{db: db, cfg: cfg, q: q, driver: cfg.Driver}
	if err := s.init(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if s.cfg.CreateTables {
		for _, stmt := range []string{s.q.createTable, s.q.createIndex, s.q.createCutoffs} {
			if _, err := s.db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create tables: %w", err)
			}
		}
	}
	// Fails early, with the database's own words, on a wrong table or
	// column name.
	rows, err := s.db.QueryContext(ctx, s.q.poll, int64(1)<<62, 1)
	if err != nil {
		return fmt.Errorf("check blocklist table: %w", err)
	}
	_ = rows.Close()
	rows, err = s.db.QueryContext(ctx, s.q.loadCutoffs, 1)
	if err != nil {
		return fmt.Errorf("check cutoffs table: %w", err)
	}
	return rows.Close()
}

func buildQueries(cfg Config) (queries, error) {
	var firstErr error
	qi := func(name string) string {
		out, err := quoteIdent(name)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return out
	}
	pg := cfg.Driver == Postgres
	ph := func(i int) string {
		if pg {
			return "$" + strconv.Itoa(i)
		}
		return "?"
	}
	t, id, jti := qi(cfg.Table), qi(cfg.IDColumn), qi(cfg.JTIColumn)
	ct := qi(cfg.CutoffsTable)
	exp, iss, typ, created := "NULL", "''", "", ""
	if cfg.ExpiresColumn != "" {
		exp = qi(cfg.ExpiresColumn)
	}
	if cfg.IssColumn != "" {
		iss = qi(cfg.IssColumn)
	}
	if cfg.TypeColumn != "" {
		typ = qi(cfg.TypeColumn)
	}
	if cfg.CreatedColumn != "" {
		created = qi(cfg.CreatedColumn)
	}
	if firstErr != nil {
		return queries{}, firstErr
	}
	var q queries
	cols := fmt.Sprintf("%s, %s, %s, %s", id, jti, exp, iss)
	q.load = fmt.Sprintf("SELECT %s FROM %s LIMIT %s", cols, t, ph(1))
	q.poll = fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s ORDER BY %s LIMIT %s", cols, t, id, ph(1), id, ph(2))
	q.maxID = fmt.Sprintf("SELECT COALESCE(MAX(%s), 0) FROM %s", id, t)

	insCols, insVals := []string{jti}, []string{ph(1)}
	n := 1
	add := func(col string) string {
		n++
		insCols = append(insCols, col)
		insVals = append(insVals, ph(n))
		return col
	}
	if typ != "" {
		add(typ)
	}
	if created != "" {
		add(created)
	}
	if cfg.ExpiresColumn != "" {
		add(exp)
	}
	if cfg.IssColumn != "" {
		add(iss)
	}
	q.insert = fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t, strings.Join(insCols, ", "), strings.Join(insVals, ", "))
	q.deleteJTI = fmt.Sprintf("DELETE FROM %s WHERE %s = %s", t, jti, ph(1))
	if cfg.IssColumn != "" {
		q.deleteJTI += fmt.Sprintf(" AND %s = %s", iss, ph(2))
	}

	q.loadCutoffs = fmt.Sprintf(`SELECT "iss", "sub", "revoked_before", "expires" FROM %s LIMIT %s`, ct, ph(1))
	q.upsertCutoff = fmt.Sprintf(`INSERT INTO %s ("iss", "sub", "revoked_before", "expires") VALUES (%s, %s, %s, %s)
ON CONFLICT ("iss", "sub") DO UPDATE SET "revoked_before" = excluded."revoked_before", "expires" = excluded."expires"`,
		ct, ph(1), ph(2), ph(3), ph(4))
	q.deleteCutoff = fmt.Sprintf(`DELETE FROM %s WHERE "iss" = %s AND "sub" = %s`, ct, ph(1), ph(2))

	idType := "INTEGER PRIMARY KEY AUTOINCREMENT" // AUTOINCREMENT: ids are never reused, which id polling relies on
	if pg {
		idType = "BIGSERIAL PRIMARY KEY"
	}
	defs := []string{id + " " + idType, jti + " VARCHAR(256) NOT NULL"}
	if typ != "" {
		defs = append(defs, typ+" VARCHAR(16) NOT NULL")
	}
	if created != "" {
		defs = append(defs, created+" TIMESTAMP NOT NULL")
	}
	if cfg.ExpiresColumn != "" {
		defs = append(defs, exp+" TIMESTAMP NULL")
	}
	if cfg.IssColumn != "" {
		defs = append(defs, iss+" VARCHAR(512) NOT NULL DEFAULT ''")
	}
	q.createTable = fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", t, strings.Join(defs, ", "))
	idxName, _ := quoteIdent(strings.ReplaceAll(cfg.Table, ".", "_") + "_jti_idx")
	if len(idxName) > 65 || idxName == "" {
		idxName = `"jtiguard_blocklist_jti_idx"`
	}
	q.createIndex = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", idxName, t, jti)
	q.createCutoffs = fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s ("iss" VARCHAR(512) NOT NULL DEFAULT '', "sub" VARCHAR(256) NOT NULL,
"revoked_before" BIGINT NOT NULL, "expires" BIGINT NULL, PRIMARY KEY ("iss", "sub"))`, ct)
	return q, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// DB exposes the handle, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

func (s *Store) scanEntries(rows *sql.Rows, fn func(id int64, e rs.Entry)) error {
	defer rows.Close()
	for rows.Next() {
		var (
			id  int64
			jti string
			exp any
			iss string
		)
		if err := rows.Scan(&id, &jti, &exp, &iss); err != nil {
			return err
		}
		unix, err := toUnix(exp)
		if err != nil {
			return fmt.Errorf("row %d: %w", id, err)
		}
		fn(id, rs.Entry{JTI: jti, Iss: iss, Exp: unix})
	}
	return rows.Err()
}

// Load reads every row (bounded by MaxEntries) and all cutoffs.
func (s *Store) Load(ctx context.Context) (rs.State, error) {
	var st rs.State
	rows, err := s.db.QueryContext(ctx, s.q.load, s.cfg.MaxEntries+1)
	if err != nil {
		return st, fmt.Errorf("load blocklist: %w", err)
	}
	var maxID int64
	err = s.scanEntries(rows, func(id int64, e rs.Entry) {
		maxID = max(maxID, id)
		st.Entries = append(st.Entries, e)
	})
	if err != nil {
		return st, fmt.Errorf("load blocklist: %w", err)
	}
	if len(st.Entries) > s.cfg.MaxEntries {
		return rs.State{}, fmt.Errorf("%w: more than %d rows", rs.ErrTooManyEntries, s.cfg.MaxEntries)
	}
	if st.Cutoffs, err = s.loadCutoffs(ctx); err != nil {
		return rs.State{}, err
	}
	// Only move forward: a follower may already have seen newer rows.
	for {
		cur := s.maxID.Load()
		if maxID <= cur || s.maxID.CompareAndSwap(cur, maxID) {
			break
		}
	}
	return st, nil
}

func (s *Store) loadCutoffs(ctx context.Context) ([]rs.Cutoff, error) {
	rows, err := s.db.QueryContext(ctx, s.q.loadCutoffs, s.cfg.MaxEntries+1)
	if err != nil {
		return nil, fmt.Errorf("load cutoffs: %w", err)
	}
	defer rows.Close()
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
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load cutoffs: %w", err)
	}
	if len(out) > s.cfg.MaxEntries {
		return nil, fmt.Errorf("%w: more than %d cutoffs", rs.ErrTooManyEntries, s.cfg.MaxEntries)
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
	for {
		from := s.maxID.Load()
		rows, err := s.db.QueryContext(ctx, s.q.poll, max(0, from-idLookback), pollBatch)
		if err != nil {
			return fmt.Errorf("poll blocklist: %w", err)
		}
		var (
			changes []rs.Change
			maxID   = from
			n       int
		)
		err = s.scanEntries(rows, func(id int64, e rs.Entry) {
			n++
			maxID = max(maxID, id)
			changes = append(changes, rs.Change{Op: rs.OpPutEntry, Entry: e, Merge: true})
		})
		if err != nil {
			return fmt.Errorf("poll blocklist: %w", err)
		}
		if len(changes) > 0 {
			sink.Apply(changes)
		}
		s.maxID.CompareAndSwap(from, maxID)
		if n < pollBatch {
			break
		}
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

// RevokeToken inserts a row, as flask-jwt-extended does on logout. Several
// rows for one jti may exist; the longest expiry wins.
func (s *Store) RevokeToken(ctx context.Context, e rs.Entry) error {
	if e.Iss != "" && s.cfg.IssColumn == "" {
		return rs.ErrIssuerUnsupported
	}
	args := []any{e.JTI}
	if s.cfg.TypeColumn != "" {
		args = append(args, "admin")
	}
	now := s.cfg.Now().UTC()
	if s.cfg.CreatedColumn != "" {
		args = append(args, s.timeArg(now))
	}
	// Without an expiry column the row revokes until it is deleted: safe.
	if s.cfg.ExpiresColumn != "" {
		if e.Exp == 0 {
			args = append(args, nil)
		} else {
			args = append(args, s.timeArg(time.Unix(e.Exp, 0).UTC()))
		}
	}
	if s.cfg.IssColumn != "" {
		args = append(args, e.Iss)
	}
	if _, err := s.db.ExecContext(ctx, s.q.insert, args...); err != nil {
		return fmt.Errorf("insert revocation: %w", err)
	}
	return nil
}

// timeArg formats times as SQLAlchemy does for SQLite (a flask app reading
// the same file must parse them), and passes time.Time to PostgreSQL.
func (s *Store) timeArg(t time.Time) any {
	if s.driver == SQLite {
		return t.Format("2006-01-02 15:04:05.000000")
	}
	return t
}

// UnrevokeToken deletes every row of the jti (and issuer, when scoped).
func (s *Store) UnrevokeToken(ctx context.Context, k rs.EntryKey) error {
	args := []any{k.JTI}
	if s.cfg.IssColumn != "" {
		args = append(args, k.Iss)
	} else if k.Iss != "" {
		return rs.ErrIssuerUnsupported
	}
	if _, err := s.db.ExecContext(ctx, s.q.deleteJTI, args...); err != nil {
		return fmt.Errorf("delete revocation: %w", err)
	}
	return nil
}

// RevokeSubject upserts a cutoff.
func (s *Store) RevokeSubject(ctx context.Context, c rs.Cutoff) error {
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
	if _, err := s.db.ExecContext(ctx, s.q.deleteCutoff, k.Iss, k.Sub); err != nil {
		return fmt.Errorf("delete cutoff: %w", err)
	}
	return nil
}

var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

// toUnix reads an expiry column whatever its type: NULL, Unix seconds, a
// timestamp, or SQLite's text timestamps (naive ones are UTC, as flask apps
// write datetime.now(timezone.utc) or utcnow()).
func toUnix(v any) (int64, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case float64:
		return int64(x), nil
	case time.Time:
		return ceilUnix(x), nil
	case []byte:
		return toUnix(string(x))
	case string:
		x = strings.TrimSpace(x)
		if x == "" {
			return 0, nil
		}
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n, nil
		}
		for _, l := range timeLayouts {
			if t, err := time.ParseInLocation(l, x, time.UTC); err == nil {
				return ceilUnix(t), nil
			}
		}
		return 0, fmt.Errorf("%w: %q", ErrBadExpiry, x)
	}
	return 0, fmt.Errorf("%w: type %T", ErrBadExpiry, v)
}

// ceilUnix rounds up so a revocation never ends before the token does.
func ceilUnix(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}
