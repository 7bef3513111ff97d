package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

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
	tests := []struct {
		in   any
		want int64
		ok   bool
	}{
		{nil, 0, true},
		{int64(1767225600), 1767225600, true},
		{"1767225600", 1767225600, true},
		{"2026-01-01 00:00:00.000000", 1767225600, true},
		{"2026-01-01 00:00:00.5", 1767225601, true}, // rounded up
		{"2026-01-01T01:00:00+01:00", 1767225600, true},
		{time.Unix(1767225600, 0), 1767225600, true},
		{[]byte("2026-01-01 00:00:00"), 1767225600, true},
		{"tomorrow", 0, false},
		{true, 0, false},
	}
	for _, tt := range tests {
		got, err := toUnix(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("toUnix(%#v) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
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
		{"column", Config{Driver: SQLite, DSN: filepath.Join(dir, "b.db"), ExpiresColumn: "exp ires"}, ErrBadIdentifier},
		{"cutoffs", Config{Driver: SQLite, DSN: filepath.Join(dir, "c.db"), CutoffsTable: "a.b.c"}, ErrBadIdentifier},
	}
	for _, tt := range tests {
		if _, err := Open(context.Background(), tt.cfg); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v want %v", tt.name, err, tt.want)
		}
	}
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t_" + hex.EncodeToString(b)
}

type backend struct {
	name string
	open func(t *testing.T, cfg Config) *Store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T, cfg Config) *Store {
			cfg.Driver, cfg.DSN = SQLite, filepath.Join(t.TempDir(), "revocations.db")
			return mustOpen(t, cfg)
		}},
		{"postgres", func(t *testing.T, cfg Config) *Store {
			cfg.Driver, cfg.DSN = Postgres, testenv.PGDSN(t)
			cfg.Table = randomName(t)
			cfg.CutoffsTable = cfg.Table + "_cutoffs"
			s := mustOpen(t, cfg)
			t.Cleanup(func() {
				_, _ = s.db.Exec(`DROP TABLE IF EXISTS "` + cfg.Table + `", "` + cfg.CutoffsTable + `"`)
			})
			return s
		}},
	}
}

func mustOpen(t *testing.T, cfg Config) *Store {
	t.Helper()
	cfg.CreateTables = true
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func flaskLayout(iss bool) Config {
	c := Config{TypeColumn: "type", CreatedColumn: "created_at", ExpiresColumn: "expires"}
	if iss {
		c.IssColumn = "iss"
	}
	return c
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Unix()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t, flaskLayout(true))
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
	s := backends()[0].open(t, flaskLayout(false))
	err := s.RevokeToken(context.Background(), rs.Entry{JTI: "a", Iss: "x"})
	if !errors.Is(err, rs.ErrIssuerUnsupported) {
		t.Fatalf("got %v", err)
	}
}

// TestFollowSeesFlaskInserts writes rows the way a flask app does (plain
// INSERTs with naive UTC timestamps) and checks that one poll brings them
// into the index, and that a reconciliation brings in deletions.
func TestFollowSeesFlaskInserts(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t, flaskLayout(false))
			idx := rs.NewIndex(nil, 0)
			sy := &rs.Syncer{Store: s, Index: idx}
			if err := s.RevokeToken(ctx, rs.Entry{JTI: "before"}); err != nil {
				t.Fatal(err)
			}
			if err := sy.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			tbl, _ := quoteIdent(s.cfg.Table)
			ph := "?, ?, ?, ?"
			if s.driver == Postgres {
				ph = "$1, $2, $3, $4"
			}
			expires := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
			var expArg any = expires
			if s.driver == SQLite {
				expArg = expires.Format("2006-01-02 15:04:05.000000")
			}
			_, err := s.db.ExecContext(ctx, `INSERT INTO `+tbl+` (jti, type, created_at, expires) VALUES (`+ph+`)`,
				"flask-jti", "access", s.timeArg(time.Now().UTC()), expArg)
			if err != nil {
				t.Fatal(err)
			}
			base := idx.Version()
			if err := s.PollOnce(ctx, idx); err != nil {
				t.Fatal(err)
			}
			_, d, ok := idx.Delta(base)
			if !ok || len(d.Added) != 1 || d.Added[0].JTI != "flask-jti" || d.Added[0].Exp != expires.Unix() {
				t.Fatalf("delta after poll: ok=%v %+v", ok, d)
			}
			if _, err := s.db.ExecContext(ctx, `DELETE FROM `+tbl); err != nil {
				t.Fatal(err)
			}
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
	cfg := Config{Driver: SQLite, DSN: path, CreateTables: true, ExpiresColumn: "expires", TypeColumn: "type", CreatedColumn: "created_at"}
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

func TestLoadIsBounded(t *testing.T) {
	ctx := context.Background()
	s := backends()[0].open(t, Config{MaxEntries: 2})
	for _, j := range []string{"a", "b", "c"} {
		if err := s.RevokeToken(ctx, rs.Entry{JTI: j}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Load(ctx); !errors.Is(err, rs.ErrTooManyEntries) {
		t.Fatalf("got %v", err)
	}
}
