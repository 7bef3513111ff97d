package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// kind is how the store reads and writes a column, from its declared type.
type kind int

const (
	kindOther       kind = iota
	kindInt              // an integer: ids, or Unix seconds
	kindNum              // numeric, real, double: Unix seconds, rounded up
	kindText             // text of any length
	kindUUID             // PostgreSQL uuid (flask-jwt-extended suggests it for jti)
	kindTimestamp        // a timestamp without a time zone: ambiguous, see naive
	kindTimestampTZ      // an instant
)

func (k kind) timeLike() bool {
	return k == kindInt || k == kindNum || k == kindText || k == kindTimestamp || k == kindTimestampTZ
}

// colInfo is one column as the database describes it.
type colInfo struct {
	name       string
	declared   string // as the database spells the type
	kind       kind
	notNull    bool
	hasDefault bool // a default, an identity, a generated value or a rowid alias
	maxLen     int  // character varying(n); 0 when unbounded
}

// tableInfo is a table's columns, in order; nil when the table is missing.
type tableInfo []colInfo

func (t tableInfo) col(name string) (colInfo, bool) {
	for _, c := range t {
		if c.name == name {
			return c, true
		}
	}
	return colInfo{}, false
}

func (t tableInfo) names() string {
	var n []string
	for _, c := range t {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}

var lenRE = regexp.MustCompile(`^(character varying|varchar|character|char)\((\d+)\)`)

// pgKind maps format_type's spelling.
func pgKind(typ string) (kind, int) {
	maxLen := 0
	if m := lenRE.FindStringSubmatch(typ); m != nil {
		maxLen, _ = strconv.Atoi(m[2])
	}
	base := typ
	if i := strings.IndexByte(base, '('); i >= 0 {
		// "timestamp(6) without time zone" → "timestamp without time zone"
		rest := ""
		if j := strings.IndexByte(base, ')'); j > i {
			rest = base[j+1:]
		}
		base = base[:i] + rest
	}
	switch strings.TrimSpace(base) {
	case "smallint", "integer", "bigint":
		return kindInt, 0
	case "numeric", "real", "double precision":
		return kindNum, 0
	case "text", "character varying", "character", "citext", "name":
		return kindText, maxLen
	case "uuid":
		return kindUUID, 0
	case "timestamp without time zone":
		return kindTimestamp, 0
	case "timestamp with time zone":
		return kindTimestampTZ, 0
	}
	return kindOther, 0
}

// sqliteKind applies SQLite's affinity rules (https://sqlite.org/datatype3.html
// §3.1). Any value can sit in any column, so reads go through text anyway;
// the kind decides how the admin API writes and whether a column can be an
// id.
func sqliteKind(typ string) (kind, int) {
	u := strings.ToUpper(typ)
	maxLen := 0
	if m := lenRE.FindStringSubmatch(strings.ToLower(typ)); m != nil {
		maxLen, _ = strconv.Atoi(m[2])
	}
	switch {
	case strings.Contains(u, "INT"):
		return kindInt, 0
	case strings.Contains(u, "CHAR"), strings.Contains(u, "CLOB"), strings.Contains(u, "TEXT"):
		return kindText, maxLen
	case strings.Contains(u, "REAL"), strings.Contains(u, "FLOA"), strings.Contains(u, "DOUB"):
		return kindNum, 0
	case strings.Contains(u, "TIMESTAMP"), strings.Contains(u, "DATETIME"), strings.Contains(u, "DATE"):
		// NUMERIC affinity, but SQLAlchemy stores text there.
		return kindTimestamp, 0
	}
	return kindOther, 0
}

// splitName splits "schema.table".
func splitName(name string) (schema, table string) {
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

// describe reads a table's columns from the database's catalog. A name the
// catalog does not know gives a nil tableInfo, not an error.
func (s *Store) describe(ctx context.Context, name string) (tableInfo, error) {
	if s.pg {
		return describePG(ctx, s.db, name)
	}
	return describeSQLite(ctx, s.db, name)
}

func describePG(ctx context.Context, db *sql.DB, name string) (tableInfo, error) {
	quoted, err := quoteIdent(name)
	if err != nil {
		return nil, err
	}
	// to_regclass resolves the name through search_path exactly as the
	// queries will, and answers NULL for a missing table.
	rows, err := db.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`, quoted)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	defer rows.Close()
	var t tableInfo
	for rows.Next() {
		var c colInfo
		if err := rows.Scan(&c.name, &c.declared, &c.notNull, &c.hasDefault); err != nil {
			return nil, fmt.Errorf("read the columns of %s: %w", name, err)
		}
		c.kind, c.maxLen = pgKind(c.declared)
		t = append(t, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	return t, nil
}

func describeSQLite(ctx context.Context, db *sql.DB, name string) (tableInfo, error) {
	schema, table := splitName(name)
	if schema == "" {
		schema = "main"
	}
	rows, err := db.QueryContext(ctx, `SELECT name, type, "notnull", dflt_value IS NOT NULL, pk FROM pragma_table_info(?, ?)`, table, schema)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	defer rows.Close()
	var (
		t   tableInfo
		pks []int
	)
	for rows.Next() {
		var (
			c  colInfo
			pk int
		)
		if err := rows.Scan(&c.name, &c.declared, &c.notNull, &c.hasDefault, &pk); err != nil {
			return nil, fmt.Errorf("read the columns of %s: %w", name, err)
		}
		c.kind, c.maxLen = sqliteKind(c.declared)
		pks = append(pks, pk)
		t = append(t, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	// A lone INTEGER PRIMARY KEY is the rowid: SQLite assigns it.
	if countNonZero(pks) == 1 {
		for i, pk := range pks {
			if pk == 1 && strings.EqualFold(strings.TrimSpace(t[i].declared), "INTEGER") {
				t[i].hasDefault = true
			}
		}
	}
	return t, nil
}

func countNonZero(v []int) int {
	n := 0
	for _, x := range v {
		if x != 0 {
			n++
		}
	}
	return n
}

// SchemaError names the table and column that do not fit. It wraps
// ErrSchema.
type SchemaError struct {
	Table, Column string
	Problem       string
	// Setting is the Config field that names the column, for callers that
	// map it to their own flag names.
	Setting string
}

func (e *SchemaError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("table %s: %s", e.Table, e.Problem)
	}
	return fmt.Sprintf("table %s, column %s: %s", e.Table, e.Column, e.Problem)
}

func (e *SchemaError) Unwrap() error { return ErrSchema }

// resolved is the table layout the store works with.
type resolved struct {
	id, jti               colInfo
	typ, created, expires *colInfo // nil: the table has none (or it is not used)
	iss                   *colInfo
	insertBlockedBy       string // why the admin API cannot insert rows ("": it can)
	cutoffs               bool
	cutoffsTable          string
	claims                bool   // the claims table is in use
	claimsTable           string // its name
	createdBlocklist      bool
}

// resolve checks the configured columns against the table as it is.
func (s *Store) resolve(t tableInfo, ct tableInfo) (resolved, error) {
	cfg := s.cfg
	var r resolved
	bad := func(col, setting, problem string, args ...any) error {
		return &SchemaError{Table: cfg.Table, Column: col, Setting: setting, Problem: fmt.Sprintf(problem, args...)}
	}
	need := func(name, setting string) (colInfo, error) {
		c, ok := t.col(name)
		if !ok {
			return c, bad(name, setting, "no such column (the table has %s)", t.names())
		}
		return c, nil
	}
	var err error
	if r.id, err = need(cfg.IDColumn, "IDColumn"); err != nil {
		return r, err
	}
	if r.id.kind != kindInt {
		return r, bad(r.id.name, "IDColumn", "type %s; the id must be an increasing integer (new rows are found by id)", r.id.declared)
	}
	if r.jti, err = need(cfg.JTIColumn, "JTIColumn"); err != nil {
		return r, err
	}
	if s.pg && r.jti.kind != kindText && r.jti.kind != kindUUID {
		return r, bad(r.jti.name, "JTIColumn", "type %s; want text, character varying or uuid", r.jti.declared)
	}
	optional := func(c Column, def, setting string, ok func(colInfo) bool, want string) (*colInfo, error) {
		name := c.Name
		if !c.Set {
			name = def
		}
		if name == "" {
			return nil, nil
		}
		col, found := t.col(name)
		if !found {
			if c.Set {
				return nil, bad(name, setting, "no such column (the table has %s); name the right one, or set it to \"\" if the table has none", t.names())
			}
			return nil, nil
		}
		if !ok(col) {
			return nil, bad(name, setting, "type %s; want %s", col.declared, want)
		}
		return &col, nil
	}
	textual := func(c colInfo) bool { return !s.pg || c.kind == kindText }
	timeLike := func(c colInfo) bool { return !s.pg || c.kind.timeLike() }
	const timeWant = "a timestamp, an integer or number of Unix seconds, or text"
	if r.typ, err = optional(cfg.TypeColumn, "type", "TypeColumn", textual, "text or character varying"); err != nil {
		return r, err
	}
	if r.created, err = optional(cfg.CreatedColumn, "created_at", "CreatedColumn", timeLike, timeWant); err != nil {
		return r, err
	}
	if r.expires, err = optional(cfg.ExpiresColumn, "expires", "ExpiresColumn", timeLike, timeWant); err != nil {
		return r, err
	}
	if cfg.IssColumn != "" {
		if r.iss, err = optional(Named(cfg.IssColumn), "", "IssColumn", textual, "text or character varying"); err != nil {
			return r, err
		}
	}
	if (cfg.AccessTokenExpires > 0 || cfg.RefreshTokenExpires > 0) && r.created == nil && r.expires == nil {
		return r, bad("", "CreatedColumn", "the token lifetimes need a creation time column to count from, and the table has neither %q nor an expiry column (it has %s)",
			orDefault(cfg.CreatedColumn.Name, "created_at"), t.names())
	}

	// The admin API inserts jti, type, created, expires and iss; any other
	// column that must be filled and has no default makes that impossible
	// (flask-jwt-extended's user_id, for one).
	filled := map[string]bool{r.id.name: r.id.hasDefault, r.jti.name: true}
	for _, c := range []*colInfo{r.typ, r.created, r.expires, r.iss} {
		if c != nil {
			filled[c.name] = true
		}
	}
	for _, c := range t {
		if c.notNull && !c.hasDefault && !filled[c.name] {
			r.insertBlockedBy = fmt.Sprintf("column %s of table %s must be filled and has no default, and the revocation source cannot know its value", c.name, cfg.Table)
			break
		}
	}

	// The cutoffs table is this server's own; it is used when it exists.
	r.cutoffsTable = cfg.CutoffsTable.Name
	if !cfg.CutoffsTable.Set {
		r.cutoffsTable = defaultCutoffsTable
	}
	if r.cutoffsTable != "" {
		if ct == nil {
			if cfg.CutoffsTable.Set {
				return r, &SchemaError{Table: r.cutoffsTable, Setting: "CutoffsTable",
					Problem: "does not exist; create it (see the docs, or let the source create it), or set the name to \"\" to run without subject cutoffs"}
			}
		} else {
			for _, name := range []string{"iss", "sub", "revoked_before", "expires"} {
				if _, ok := ct.col(name); !ok {
					return r, &SchemaError{Table: r.cutoffsTable, Column: name, Setting: "CutoffsTable",
						Problem: fmt.Sprintf("no such column (the table has %s); is it a subject cutoffs table?", ct.names())}
				}
			}
			r.cutoffs = true
		}
	}
	return r, nil
}
