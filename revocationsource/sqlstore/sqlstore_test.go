package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

func TestQuoteIdent(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"token_blocklist", `"token_blocklist"`, true},
		{"public.token_blocklist", `"public"."token_blocklist"`, true},
		{"_x1", `"_x1"`, true},
		{"", "", false},
		{"1abc", "", false},
		{`t"; DROP TABLE x; --`, "", false},
		{"a.b.c", "", false},
		{"tab le", "", false},
		{"ta-ble", "", false},
		{string(make([]byte, 64)), "", false},
	}
	for _, tt := range tests {
		got, err := quoteIdent(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("quoteIdent(%q) = %q, %v", tt.in, got, err)
		}
		if !tt.ok && !errors.Is(err, ErrBadIdentifier) {
			t.Errorf("quoteIdent(%q): error %v is not ErrBadIdentifier", tt.in, err)
		}
	}
}

func TestToUnix(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	const jan1 = 1767225600 // 2026-01-01 00:00:00 UTC
	tests := []struct {
		in      any
		zone    *time.Location
		want    int64
		present bool
		ok      bool
	}{
		{nil, nil, 0, false, true},
		{"", nil, 0, false, true},
		{int64(jan1), nil, jan1, true, true},
		{float64(jan1) + 0.2, nil, jan1 + 1, true, true},
		{"1767225600", nil, jan1, true, true},
		{"1767225600.5", nil, jan1 + 1, true, true},
		{"2026-01-01 00:00:00.000000", time.UTC, jan1, true, true},
		{"2026-01-01 00:00:00.5", time.UTC, jan1 + 1, true, true}, // rounded up
		{"2026-01-01T01:00:00+01:00", la, jan1, true, true},       // an offset is exact
		{"2026-01-01 00:00:00Z", la, jan1, true, true},
		{"2026-01-01 00:00:00+00", la, jan1, true, true},
		// Naive: the later of UTC and the zone. Los Angeles wall clock
		// 00:00 is 08:00 UTC: reading it as UTC would expire 8h early.
		{"2026-01-01 00:00:00", la, jan1 + 8*3600, true, true},
		{"2026-01-01 00:00:00", tokyo, jan1, true, true},
		{"2026-01-01 00:00:00", latestZone, jan1 + 12*3600, true, true},
		{time.Unix(jan1, 0), la, jan1, true, true},
		{[]byte("2026-01-01 00:00:00"), time.UTC, jan1, true, true},
		{"tomorrow", nil, 0, true, false},
		{true, nil, 0, true, false},
	}
	for _, tt := range tests {
		got, present, err := toUnix(tt.in, tt.zone)
		if (err == nil) != tt.ok || got != tt.want || present != tt.present {
			t.Errorf("toUnix(%#v, %v) = %d, %v, %v; want %d present=%v ok=%v", tt.in, tt.zone, got, present, err, tt.want, tt.present, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadTime) {
			t.Errorf("toUnix(%#v): %v is not ErrBadTime", tt.in, err)
		}
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"driver", Config{Driver: "oracle"}, ErrBadDriver},
		{"table", Config{Driver: SQLite, DSN: filepath.Join(dir, "a.db"), Table: "x;drop"}, ErrBadIdentifier},
		{"column", Config{Driver: SQLite, DSN: filepath.Join(dir, "b.db"), ExpiresColumn: Named("exp ires")}, ErrBadIdentifier},
		{"qualified column", Config{Driver: SQLite, DSN: filepath.Join(dir, "b.db"), JTIColumn: "t.jti"}, ErrBadIdentifier},
		{"cutoffs", Config{Driver: SQLite, DSN: filepath.Join(dir, "c.db"), CutoffsTable: Named("a.b.c")}, ErrBadIdentifier},
		// Nothing is created unless asked: not even the SQLite file.
		{"missing file", Config{Driver: SQLite, DSN: filepath.Join(dir, "none.db")}, ErrMissing},
	}
	for _, tt := range tests {
		if _, err := Open(context.Background(), tt.cfg); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v want %v", tt.name, err, tt.want)
		}
	}
	if _, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(dir, "none.db")}); err == nil ||
		!strings.Contains(err.Error(), "none.db") {
		t.Errorf("the missing-file error does not name the file: %v", err)
	}
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t_" + hex.EncodeToString(b)
}

// testDB is an empty database for one test: a SQLite file, or a PostgreSQL
// schema of its own (the search_path points at it, so the app's default
// table name can be used), optionally with a session TimeZone.
type testDB struct {
	driver string
	dsn    string
	raw    *sql.DB
}

func newDB(t *testing.T, driver, timeZone string) *testDB {
	t.Helper()
	d := &testDB{driver: driver}
	switch driver {
	case SQLite:
		d.dsn = filepath.Join(t.TempDir(), "app.db")
		raw, err := sql.Open("sqlite", "file:"+d.dsn+"?mode=rwc")
		if err != nil {
			t.Fatal(err)
		}
		if err := raw.Ping(); err != nil {
			t.Fatal(err)
		}
		d.raw = raw
	case Postgres:
		base := testenv.PGDSN(t)
		schema := randomName(t)
		admin, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(`DROP SCHEMA "` + schema + `" CASCADE`)
			_ = admin.Close()
		})
		// UTC unless the test is about zones: naive test data is in UTC.
		d.dsn = WithSessionOptions(t, base, schema, orDefault(timeZone, "UTC"))
		if d.raw, err = sql.Open("pgx", d.dsn); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = d.raw.Close() })
	return d
}

// WithSessionOptions adds search_path and TimeZone settings to a
// PostgreSQL URL.
func WithSessionOptions(t *testing.T, dsn, schema, timeZone string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	opts := "-c search_path=" + schema
	if timeZone != "" {
		opts += " -c TimeZone=" + timeZone
	}
	q.Set("options", opts)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + literally
	return u.String()
}

func (d *testDB) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := d.raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// sql rewrites ? placeholders for PostgreSQL.
func (d *testDB) sql(q string) string {
	if d.driver != Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + string(rune('0'+n)))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (d *testDB) open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := d.tryOpen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (d *testDB) tryOpen(cfg Config) (*Store, error) {
	cfg.Driver, cfg.DSN = d.driver, d.dsn
	return Open(context.Background(), cfg)
}

// The tables Flask-SQLAlchemy 3.0 creates from flask-jwt-extended's database
// example, as it compiles them (see testdata/flask_blocklist.py for the real
// thing): v1 is examples/blocklist_database.py, v2 the docs' version with
// type, user_id and created_at's server_default.
var flaskDDL = map[string]map[string][]string{
	Postgres: {
		"v1": {`CREATE TABLE token_blocklist (id SERIAL NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id))`,
			`CREATE INDEX ix_token_blocklist_jti ON token_blocklist (jti)`},
		"v2": {`CREATE TABLE person (id SERIAL NOT NULL, PRIMARY KEY (id))`,
			`CREATE TABLE token_blocklist (id SERIAL NOT NULL, jti VARCHAR(36) NOT NULL, type VARCHAR(16) NOT NULL,
  user_id INTEGER NOT NULL, created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT now() NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES person (id))`},
	},
	SQLite: {
		"v1": {`CREATE TABLE token_blocklist (id INTEGER NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at DATETIME NOT NULL, PRIMARY KEY (id))`,
			`CREATE INDEX ix_token_blocklist_jti ON token_blocklist (jti)`},
		"v2": {`CREATE TABLE person (id INTEGER NOT NULL, PRIMARY KEY (id))`,
			`CREATE TABLE token_blocklist (id INTEGER NOT NULL, jti VARCHAR(36) NOT NULL, type VARCHAR(16) NOT NULL,
  user_id INTEGER NOT NULL, created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
  PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES person (id))`},
	},
}

var drivers = []string{SQLite, Postgres}

func entriesOf(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range st.Entries {
		out[e.JTI] = e.Exp
	}
	return out
}

// TestFlaskTablesWithDefaults: the tables of every version of the example
// open with nothing but the DSN, whatever the id's integer type, and their
// rows are read — with no expiry column they never expire unless the token
// lifetimes are given. (Issue 10: "unable to encode 1<<62 into int4",
// `column "expires" does not exist`.)
func TestFlaskTablesWithDefaults(t *testing.T) {
	for _, driver := range drivers {
		for _, version := range []string{"v1", "v2"} {
			t.Run(driver+"/"+version, func(t *testing.T) {
				d := newDB(t, driver, "")
				d.exec(t, flaskDDL[driver][version]...)
				s := d.open(t, Config{})
				if s.r.typ != nil != (version == "v2") || s.r.created == nil || s.r.expires != nil {
					t.Fatalf("resolved %+v", s.r)
				}
				now := time.Now().UTC()
				switch version {
				case "v1":
					d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('a', CURRENT_TIMESTAMP)`))
				case "v2":
					d.exec(t, `INSERT INTO person (id) VALUES (1)`,
						d.sql(`INSERT INTO token_blocklist (jti, type, user_id) VALUES ('a', 'access', 1)`),
						d.sql(`INSERT INTO token_blocklist (jti, type, user_id) VALUES ('r', 'refresh', 1)`))
				}
				if got := entriesOf(t, s); got["a"] != 0 {
					t.Fatalf("without lifetimes: %v", got)
				}
				s2 := d.open(t, Config{AccessTokenExpires: time.Hour, RefreshTokenExpires: 30 * 24 * time.Hour})
				got := entriesOf(t, s2)
				// Without a type column, every row gets the longer lifetime.
				life := map[string]time.Duration{"v1": 30 * 24 * time.Hour, "v2": time.Hour}[version]
				if want := now.Add(life).Unix(); got["a"] < want-2 || got["a"] > want+2 {
					t.Fatalf("access row exp %d, want about %d: %v", got["a"], want, got)
				}
				if version == "v2" {
					if want := now.Add(30 * 24 * time.Hour).Unix(); got["r"] < want-2 || got["r"] > want+2 {
						t.Fatalf("refresh row exp %d, want about %d", got["r"], want)
					}
				}
				// A poll, as the follower does, sees a new row.
				idx := rs.NewIndex(nil, 0)
				d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at`+map[string]string{"v1": "", "v2": ", type, user_id"}[version]+
					`) VALUES ('b', CURRENT_TIMESTAMP`+map[string]string{"v1": "", "v2": ", 'access', 1"}[version]+`)`))
				if err := s2.PollOnce(context.Background(), idx); err != nil {
					t.Fatal(err)
				}
				if n, _ := idx.Len(); n < 2 {
					t.Fatalf("poll read %d entries", n)
				}
			})
		}
	}
}

// TestAnyIntegerID: smallint, integer and bigint ids, with ids near the top
// of their range.
func TestAnyIntegerID(t *testing.T) {
	for _, typ := range []string{"SMALLINT", "INTEGER", "BIGINT"} {
		t.Run(typ, func(t *testing.T) {
			d := newDB(t, Postgres, "")
			d.exec(t, `CREATE TABLE token_blocklist (id `+typ+` PRIMARY KEY, jti VARCHAR(36) NOT NULL, created_at TIMESTAMP NOT NULL)`,
				`INSERT INTO token_blocklist VALUES (32000, 'near-the-top', now())`)
			s := d.open(t, Config{})
			if got := entriesOf(t, s); len(got) != 1 {
				t.Fatalf("entries %v", got)
			}
			idx := rs.NewIndex(nil, 0)
			if err := s.PollOnce(context.Background(), idx); err != nil {
				t.Fatal(err)
			}
		})
	}
	d := newDB(t, Postgres, "")
	d.exec(t, `CREATE TABLE token_blocklist (id UUID PRIMARY KEY, jti VARCHAR(36) NOT NULL)`)
	_, err := d.tryOpen(Config{})
	var se *SchemaError
	if !errors.As(err, &se) || se.Column != "id" || !strings.Contains(err.Error(), "token_blocklist") {
		t.Fatalf("uuid id: %v", err)
	}
}

// TestSchemaErrorsNameTableAndColumn: SQLite reads a quoted unknown column
// name as a string literal, so a probe query passes and every row then
// fails. The catalog is read instead, and a column that is named but absent
// is an error naming the table and the column. (Issue 10.)
func TestSchemaErrorsNameTableAndColumn(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			tests := []struct {
				cfg    Config
				column string
			}{
				{Config{ExpiresColumn: Named("expires")}, "expires"},
				{Config{TypeColumn: Named("type")}, "type"},
				{Config{JTIColumn: "token_id"}, "token_id"},
				{Config{IDColumn: "pk"}, "pk"},
				{Config{CreatedColumn: Named("revoked_at")}, "revoked_at"},
				{Config{CutoffsTable: Named("my_cutoffs")}, ""},
				{Config{CreatedColumn: Named(""), AccessTokenExpires: time.Hour}, ""},
			}
			for _, tt := range tests {
				_, err := d.tryOpen(tt.cfg)
				var se *SchemaError
				if !errors.As(err, &se) || !errors.Is(err, ErrSchema) || se.Column != tt.column {
					t.Errorf("%+v: got %v", tt.cfg, err)
					continue
				}
				if !strings.Contains(err.Error(), se.Table) || (tt.column != "" && !strings.Contains(err.Error(), tt.column)) {
					t.Errorf("error %q does not name the table and column", err)
				}
			}
			if _, err := d.tryOpen(Config{Table: "no_such_table"}); !errors.Is(err, ErrMissing) {
				t.Errorf("missing table: %v", err)
			}
		})
	}
}

// tables lists what the database holds, to check that nothing was created.
func (d *testDB) tables(t *testing.T) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if d.driver == Postgres {
		q = `SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1`
	}
	rows, err := d.raw.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// TestNothingChangedByDefault: opening, loading and polling change nothing
// in the app's database (today's source created tables and an index).
func TestNothingChangedByDefault(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			before := d.tables(t)
			s := d.open(t, Config{})
			_ = entriesOf(t, s)
			if err := s.PollOnce(context.Background(), rs.NewIndex(nil, 0)); err != nil {
				t.Fatal(err)
			}
			if after := d.tables(t); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Fatalf("tables before %v, after %v", before, after)
			}
			if s.HasCutoffs() {
				t.Fatal("cutoffs on without a cutoffs table")
			}
			if err := s.RevokeSubject(context.Background(), rs.Cutoff{Sub: "u"}); !errors.Is(err, rs.ErrReadOnly) {
				t.Fatalf("subject revocation without a cutoffs table: %v", err)
			}
		})
	}
}

// TestCreatedTablesTakeTheAppsInserts: when the source creates the table
// first (only when asked), the app's own INSERTs of every version of the
// example still work. (Issue 10: the app's logout failed on NOT NULL columns
// it does not know.)
func TestCreatedTablesTakeTheAppsInserts(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			if driver == SQLite {
				d.dsn = filepath.Join(t.TempDir(), "new.db") // the source creates the file too
			}
			s := d.open(t, Config{CreateTables: true})
			raw, err := sql.Open(map[string]string{SQLite: "sqlite", Postgres: "pgx"}[driver], map[string]string{SQLite: "file:" + d.dsn, Postgres: d.dsn}[driver])
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			app := &testDB{driver: driver, raw: raw}
			app.exec(t,
				app.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('v1', CURRENT_TIMESTAMP)`),
				app.sql(`INSERT INTO token_blocklist (jti, type, created_at) VALUES ('v2', 'access', CURRENT_TIMESTAMP)`),
				app.sql(`INSERT INTO token_blocklist (jti, type) VALUES ('v2-default', 'refresh')`))
			if err := s.RevokeToken(context.Background(), rs.Entry{JTI: "admin", Exp: time.Now().Add(time.Hour).Unix()}); err != nil {
				t.Fatal(err)
			}
			if got := entriesOf(t, s); len(got) != 4 {
				t.Fatalf("entries %v", got)
			}
			if !s.HasCutoffs() {
				t.Fatal("no cutoffs table after CreateTables")
			}
		})
	}
}

// TestAdminInsertBlockedByUnknownColumn: flask's v2 table has user_id NOT
// NULL without a database default; the admin API says so instead of failing
// on every insert.
func TestAdminInsertBlockedByUnknownColumn(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v2"]...)
			s := d.open(t, Config{})
			err := s.RevokeToken(context.Background(), rs.Entry{JTI: "x"})
			if !errors.Is(err, rs.ErrReadOnly) || !strings.Contains(err.Error(), "user_id") {
				t.Fatalf("got %v", err)
			}
			if ok, why := s.CanRevokeTokens(); ok || why == "" {
				t.Fatal("CanRevokeTokens says yes")
			}
		})
	}
}

// TestNaiveTimestampsInTheSessionZone: PostgreSQL stores the app's aware
// datetime.now(timezone.utc), and func.now(), as the wall clock of the
// session's TimeZone. West of UTC, reading that as UTC would end the
// revocation hours early. (The Python test does the same with the real
// Flask-SQLAlchemy.)
func TestNaiveTimestampsInTheSessionZone(t *testing.T) {
	for _, zone := range []string{"America/Los_Angeles", "Asia/Tokyo", "UTC"} {
		t.Run(zone, func(t *testing.T) {
			d := newDB(t, Postgres, zone)
			d.exec(t, flaskDDL[Postgres]["v1"]...)
			before := time.Now()
			// As psycopg2 sends an aware datetime: a timestamptz literal.
			if _, err := d.raw.Exec(`INSERT INTO token_blocklist (jti, created_at) VALUES ('aware', CAST($1 AS TIMESTAMPTZ)), ('now', now())`,
				before.UTC().Format(time.RFC3339Nano)); err != nil {
				t.Fatal(err)
			}
			s := d.open(t, Config{AccessTokenExpires: time.Hour})
			got := entriesOf(t, s)
			want := before.Add(time.Hour).Unix()
			loc, _ := time.LoadLocation(zone)
			_, off := before.In(loc).Zone()
			slack := int64(5)
			if off > 0 {
				slack += int64(off) // east of UTC the UTC reading is the later one
			}
			for _, j := range []string{"aware", "now"} {
				if got[j] < want || got[j] > want+slack {
					t.Errorf("%s: exp %d, want %d..%d", j, got[j], want, want+slack)
				}
			}
			// The admin API writes instants the same way, and reads them back.
			exp := before.Add(2 * time.Hour).Unix()
			d.exec(t, `ALTER TABLE token_blocklist ADD COLUMN expires TIMESTAMP NULL`)
			s2 := d.open(t, Config{AccessTokenExpires: time.Hour})
			if err := s2.RevokeToken(context.Background(), rs.Entry{JTI: "admin", Exp: exp}); err != nil {
				t.Fatal(err)
			}
			if got := entriesOf(t, s2)["admin"]; got < exp || got > exp+slack {
				t.Errorf("admin: exp %d, want %d..%d", got, exp, exp+slack)
			}
		})
	}
}

// TestSQLiteNaiveTimestampsInTheLocalZone: SQLAlchemy writes UTC wall
// clocks to SQLite; an app writing naive local time is covered by reading
// naive values as the later of UTC and the source's zone.
func TestSQLiteNaiveTimestampsInTheLocalZone(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	d := newDB(t, SQLite, "")
	d.exec(t, flaskDDL[SQLite]["v1"]...)
	now := time.Now()
	d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('utc', '`+now.UTC().Format("2006-01-02 15:04:05.000000")+`'),
		('local', '`+now.In(la).Format("2006-01-02 15:04:05.000000")+`')`)
	s := d.open(t, Config{AccessTokenExpires: time.Hour})
	s.zone = la // the app's host zone, as TZ would set time.Local
	got := entriesOf(t, s)
	want := now.Add(time.Hour).Unix()
	for _, j := range []string{"utc", "local"} {
		if got[j] < want || got[j] > want+8*3600+5 {
			t.Errorf("%s: exp %d, want at least %d", j, got[j], want)
		}
	}
}

// TestLifetimesPerType: with a type column each type gets its own lifetime;
// a type without a configured lifetime never expires; without a type column
// the longer lifetime applies.
func TestLifetimesPerType(t *testing.T) {
	d := newDB(t, SQLite, "")
	d.exec(t, `CREATE TABLE token_blocklist (id INTEGER PRIMARY KEY, jti TEXT NOT NULL, type TEXT, created_at INTEGER NOT NULL)`,
		`INSERT INTO token_blocklist (jti, type, created_at) VALUES ('a', 'access', 1000000000), ('r', 'refresh', 1000000000),
		 ('x', 'admin', 1000000000), ('n', NULL, 1000000000)`)
	clock := func() time.Time { return time.Unix(1000000000, 0) }
	tests := []struct {
		name string
		cfg  Config
		want map[string]int64
	}{
		{"both", Config{AccessTokenExpires: time.Hour, RefreshTokenExpires: 2 * time.Hour},
			map[string]int64{"a": 1000003600, "r": 1000007200, "x": 1000007200, "n": 1000007200}},
		{"access only", Config{AccessTokenExpires: time.Hour},
			map[string]int64{"a": 1000003600, "r": 0, "x": 1000003600, "n": 1000003600}},
		{"none", Config{}, map[string]int64{"a": 0, "r": 0, "x": 0, "n": 0}},
		{"no type column", Config{TypeColumn: Named(""), AccessTokenExpires: time.Hour, RefreshTokenExpires: 2 * time.Hour},
			map[string]int64{"a": 1000007200, "r": 1000007200, "x": 1000007200, "n": 1000007200}},
	}
	for _, tt := range tests {
		tt.cfg.Now = clock
		got := entriesOf(t, d.open(t, tt.cfg))
		for j, w := range tt.want {
			if got[j] != w {
				t.Errorf("%s: %s exp %d, want %d", tt.name, j, got[j], w)
			}
		}
	}
}

// TestExpiredRowsDoNotCount: rows past exp + grace neither count against
// MaxEntries nor keep Load (and so readiness) from succeeding. (Issue 8.)
func TestExpiredRowsDoNotCount(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			old := time.Now().Add(-48 * time.Hour).UTC().Format("2006-01-02 15:04:05")
			for _, j := range []string{"old1", "old2", "old3"} {
				d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('`+j+`', '`+old+`')`)
			}
			d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('live', CURRENT_TIMESTAMP)`))
			s := d.open(t, Config{AccessTokenExpires: time.Hour, MaxEntries: 1})
			if got := entriesOf(t, s); len(got) != 1 || got["live"] == 0 {
				t.Fatalf("entries %v", got)
			}
			d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('live2', CURRENT_TIMESTAMP)`))
			if _, err := s.Load(context.Background()); !errors.Is(err, rs.ErrTooManyEntries) {
				t.Fatalf("two live rows over MaxEntries=1: %v", err)
			}
		})
	}
}

// TestPrune deletes only rows past exp + grace, and only when called.
func TestPrune(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			now := time.Now().UTC()
			ts := func(d time.Duration) string { return now.Add(d).Format("2006-01-02 15:04:05") }
			d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('gone', '`+ts(-3*time.Hour)+`'),
				('in-grace', '`+ts(-90*time.Minute)+`'), ('live', '`+ts(0)+`')`)
			s := d.open(t, Config{AccessTokenExpires: time.Hour, ExpiryGrace: time.Hour, CreateTables: true})
			n, err := s.Prune(context.Background())
			if err != nil || n != 1 {
				t.Fatalf("pruned %d, %v", n, err)
			}
			var left int
			if err := d.raw.QueryRow(`SELECT COUNT(*) FROM token_blocklist`).Scan(&left); err != nil || left != 2 {
				t.Fatalf("%d rows left, %v", left, err)
			}
			if got := entriesOf(t, s); len(got) != 2 || got["in-grace"] == 0 {
				t.Fatalf("entries %v", got)
			}
		})
	}
}

// TestUnreadableTimeKeepsTheRow: a value that is not a time leaves the row
// revoked without an expiry, counted, rather than failing every read.
func TestUnreadableTimeKeepsTheRow(t *testing.T) {
	d := newDB(t, SQLite, "")
	d.exec(t, flaskDDL[SQLite]["v1"]...)
	d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('bad', 'yesterday-ish')`)
	s := d.open(t, Config{AccessTokenExpires: time.Hour})
	if got := entriesOf(t, s); len(got) != 1 || got["bad"] != 0 {
		t.Fatalf("entries %v", got)
	}
	if s.Unreadable() != 1 {
		t.Fatalf("unreadable %d", s.Unreadable())
	}
}

// TestAdminExpBeyondLifetime: without an expiry column an admin revocation
// lasts created + the longest lifetime; an exp past that is refused rather
// than silently shortened.
func TestAdminExpBeyondLifetime(t *testing.T) {
	d := newDB(t, SQLite, "")
	d.exec(t, flaskDDL[SQLite]["v1"]...)
	s := d.open(t, Config{AccessTokenExpires: time.Hour})
	ctx := context.Background()
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "far", Exp: time.Now().Add(3 * time.Hour).Unix()}); !errors.Is(err, rs.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	exp := time.Now().Add(30 * time.Minute).Unix()
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "near", Exp: exp}); err != nil {
		t.Fatal(err)
	}
	eff := s.EffectiveEntry(rs.Entry{JTI: "near", Exp: exp})
	if got := entriesOf(t, s)["near"]; got < exp || got < eff.Exp-2 || got > eff.Exp+2 {
		t.Fatalf("near: exp %d, effective %d, asked %d", got, eff.Exp, exp)
	}
}

// TestUUIDJTI: flask-jwt-extended suggests a uuid column for jti.
func TestUUIDJTI(t *testing.T) {
	d := newDB(t, Postgres, "")
	d.exec(t, `CREATE TABLE token_blocklist (id SERIAL PRIMARY KEY, jti UUID NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT now())`,
		`INSERT INTO token_blocklist (jti) VALUES ('6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10')`)
	s := d.open(t, Config{})
	ctx := context.Background()
	if got := entriesOf(t, s); len(got) != 1 {
		t.Fatalf("entries %v", got)
	}
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "not-a-uuid"}); !errors.Is(err, rs.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
	if err := s.UnrevokeToken(ctx, rs.EntryKey{JTI: "6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10"}); err != nil {
		t.Fatal(err)
	}
	if got := entriesOf(t, s); len(got) != 0 {
		t.Fatalf("after unrevoke %v", got)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Unix()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			if driver == SQLite {
				d.dsn = filepath.Join(t.TempDir(), "new.db")
			}
			s := d.open(t, Config{CreateTables: true, IssColumn: "iss"})
			if err := s.RevokeToken(ctx, rs.Entry{JTI: "a", Exp: exp}); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeToken(ctx, rs.Entry{JTI: "b", Iss: "https://iss"}); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeSubject(ctx, rs.Cutoff{Sub: "u1", RevokedBefore: 100, Exp: exp}); err != nil {
				t.Fatal(err)
			}
			// Upsert replaces.
			if err := s.RevokeSubject(ctx, rs.Cutoff{Sub: "u1", RevokedBefore: 200}); err != nil {
				t.Fatal(err)
			}
			st, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Entries) != 2 || len(st.Cutoffs) != 1 || st.Cutoffs[0].RevokedBefore != 200 || st.Cutoffs[0].Exp != 0 {
				t.Fatalf("loaded %+v", st)
			}
			for _, e := range st.Entries {
				if (e.JTI == "a" && (e.Exp != exp || e.Iss != "")) || (e.JTI == "b" && (e.Exp != 0 || e.Iss != "https://iss")) {
					t.Fatalf("entry %+v", e)
				}
			}
			if err := s.UnrevokeToken(ctx, rs.EntryKey{JTI: "a"}); err != nil {
				t.Fatal(err)
			}
			if err := s.UnrevokeSubject(ctx, rs.CutoffKey{Sub: "u1"}); err != nil {
				t.Fatal(err)
			}
			if st, _ = s.Load(ctx); len(st.Entries) != 1 || st.Entries[0].JTI != "b" || len(st.Cutoffs) != 0 {
				t.Fatalf("after unrevoke %+v", st)
			}
		})
	}
}

func TestIssuerUnsupportedWithoutColumn(t *testing.T) {
	d := newDB(t, SQLite, "")
	d.exec(t, flaskDDL[SQLite]["v1"]...)
	s := d.open(t, Config{})
	err := s.RevokeToken(context.Background(), rs.Entry{JTI: "a", Iss: "x"})
	if !errors.Is(err, rs.ErrIssuerUnsupported) {
		t.Fatalf("got %v", err)
	}
}

// TestFollowSeesInsertsAndReconcileSeesDeletes: a poll brings new rows into
// the index, and a reconciliation brings in deletions.
func TestFollowSeesInsertsAndReconcileSeesDeletes(t *testing.T) {
	ctx := context.Background()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			d.exec(t, `ALTER TABLE token_blocklist ADD COLUMN expires TIMESTAMP NULL`)
			s := d.open(t, Config{})
			idx := rs.NewIndex(nil, 0)
			sy := &rs.Syncer{Store: s, Index: idx}
			d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('before', CURRENT_TIMESTAMP)`))
			if err := sy.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			expires := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
			if _, err := d.raw.ExecContext(ctx, d.sql(`INSERT INTO token_blocklist (jti, created_at, expires) VALUES (?, CURRENT_TIMESTAMP, ?)`),
				"flask-jti", expires.Format("2006-01-02 15:04:05")); err != nil {
				t.Fatal(err)
			}
			base := idx.Version()
			if err := s.PollOnce(ctx, idx); err != nil {
				t.Fatal(err)
			}
			_, delta, ok := idx.Delta(base)
			if !ok || len(delta.Added) != 1 || delta.Added[0].JTI != "flask-jti" || delta.Added[0].Exp != expires.Unix() {
				t.Fatalf("delta after poll: ok=%v %+v (want exp %d)", ok, delta, expires.Unix())
			}
			d.exec(t, `DELETE FROM token_blocklist`)
			if err := sy.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if n, _ := idx.Len(); n != 0 {
				t.Fatalf("after external delete and reconcile: %d entries", n)
			}
		})
	}
}

func TestSQLiteRestartKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	cfg := Config{Driver: SQLite, DSN: path, CreateTables: true}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "kept"}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s, err = Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil || len(st.Entries) != 1 || st.Entries[0].JTI != "kept" {
		t.Fatalf("after reopen: %+v %v", st, err)
	}
}

// TestRealFlaskApp: the real Flask-SQLAlchemy and flask-jwt-extended
// (Debian's packages) create the table of each version of the docs' example
// and revoke tokens through the app's own logout route, in SQLite and in
// PostgreSQL with a session zone west of UTC; the store reads every
// revocation, with the defaults, and never lets one end before its token
// does. (Issue 10 §1.)
func TestRealFlaskApp(t *testing.T) {
	for _, driver := range drivers {
		for _, variant := range []string{"v1", "v2", "v2-type", "v2-server-default"} {
			t.Run(driver+"/"+variant, func(t *testing.T) {
				t.Parallel()
				d := newDB(t, driver, "America/Los_Angeles")
				url := "sqlite:///" + d.dsn
				if driver == Postgres {
					url = testenv.SQLAlchemyURL(d.dsn)
				}
				toks := testenv.FlaskRevoke(t, url, variant, "token_blocklist")
				for _, cfg := range []Config{{}, {AccessTokenExpires: time.Hour, RefreshTokenExpires: 30 * 24 * time.Hour}} {
					got := entriesOf(t, d.open(t, cfg))
					if len(got) != len(toks) {
						t.Fatalf("%+v: read %v, the app revoked %+v", cfg, got, toks)
					}
					for _, tok := range toks {
						exp, ok := got[tok.JTI]
						switch {
						case !ok:
							t.Errorf("%+v: %s token %s not read", cfg, tok.Type, tok.JTI)
						case cfg.AccessTokenExpires == 0 && exp != 0:
							t.Errorf("without lifetimes %s expires at %d", tok.JTI, exp)
						case cfg.AccessTokenExpires != 0 && (exp < tok.Exp || exp > tok.Exp+5):
							// Without a type column (v1) every row gets the longer
							// lifetime; v1 only revokes access tokens.
							if variant == "v1" && exp >= tok.Exp {
								break
							}
							t.Errorf("%s token exp %d, read as %d", tok.Type, tok.Exp, exp)
						}
					}
				}
			})
		}
	}
}

// TestRenamedColumnIsAnErrorNotALiteral: SQLite reads an unknown
// "double-quoted" name as a string literal, so after the app renamed its jti
// column every row would have read as the jti "jti". Identifiers are
// backquoted for SQLite, and the failure is marked rs.ErrUnreadable.
func TestRenamedColumnIsAnErrorNotALiteral(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			d.exec(t, d.sql(`INSERT INTO token_blocklist (jti, created_at) VALUES ('real', CURRENT_TIMESTAMP)`))
			s := d.open(t, Config{})
			d.exec(t, `ALTER TABLE token_blocklist RENAME COLUMN jti TO token_jti`)
			idx := rs.NewIndex(nil, 0)
			if err := s.PollOnce(context.Background(), idx); !errors.Is(err, rs.ErrUnreadable) || !errors.Is(err, ErrSchema) {
				t.Fatalf("poll: %v", err)
			}
			if _, err := s.Load(context.Background()); !errors.Is(err, rs.ErrUnreadable) {
				t.Fatalf("load: %v", err)
			}
			if n, _ := idx.Len(); n != 0 {
				t.Fatalf("read %d entries from a table without the jti column", n)
			}
		})
	}
}
