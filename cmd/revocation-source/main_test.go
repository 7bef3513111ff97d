package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestParseConfigErrors: every error names the flag or the variable that
// was set, the value, and the form expected. (Issue 10 §3.)
func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // substrings of the error
	}{
		{"duration without unit", []string{"--sql-poll-interval=5"}, nil, []string{"--sql-poll-interval", `"5"`, "needs a unit, e.g. 5s"}},
		{"duration from env", nil, map[string]string{"REVOCATION_SOURCE_SQL_POLL_INTERVAL": "5"},
			[]string{"REVOCATION_SOURCE_SQL_POLL_INTERVAL", `"5"`, "needs a unit, e.g. 5s"}},
		{"not a duration", []string{"--reconcile-interval=soon"}, nil, []string{"--reconcile-interval", `"soon"`, "500ms, 5s, 1m"}},
		{"log level", []string{"--log-level=verbose"}, nil, []string{"--log-level", `"verbose"`, "debug, info, warn, error"}},
		{"log level from env", nil, map[string]string{"REVOCATION_SOURCE_LOG_LEVEL": "loud"}, []string{"REVOCATION_SOURCE_LOG_LEVEL", `"loud"`, "debug, info, warn, error"}},
		{"store", []string{"--store=mongo"}, nil, []string{"--store", `"mongo"`, "sqlite, postgres, redis, file"}},
		{"postgres without dsn", []string{"--store=postgres"}, nil, []string{"--postgres-dsn", "REVOCATION_SOURCE_POSTGRES_DSN", "postgres://"}},
		{"file without path", []string{"--store", "file"}, nil, []string{"--file-path"}},
		{"listen", []string{"--listen=8080"}, nil, []string{"--listen", `"8080"`, "host:port"}},
		{"listen from env", nil, map[string]string{"REVOCATION_SOURCE_LISTEN": "8080"}, []string{"REVOCATION_SOURCE_LISTEN", `"8080"`}},
		{"max entries from env", nil, map[string]string{"REVOCATION_SOURCE_MAX_ENTRIES": "0"}, []string{"REVOCATION_SOURCE_MAX_ENTRIES", "at least 1"}},
		{"not a number", []string{"--max-entries=lots"}, nil, []string{"--max-entries", `"lots"`, "whole number"}},
		{"empty env duration", nil, map[string]string{"REVOCATION_SOURCE_RECONCILE_INTERVAL": ""}, []string{"REVOCATION_SOURCE_RECONCILE_INTERVAL", "empty"}},
		{"bad identifier", []string{"--sql-table=x;drop"}, nil, []string{"--sql-table", `"x;drop"`, "letters, digits and _"}},
		{"unknown flag", []string{"--sql-poll-intervall=1s"}, nil, []string{"sql-poll-intervall", "did you mean --sql-poll-interval"}},
		{"missing value", []string{"--listen"}, nil, []string{"-listen", "needs a value"}},
		{"stray arg", []string{"extra"}, nil, []string{`"extra"`}},
		{"bool", []string{"--sql-create-tables=maybe"}, nil, []string{"--sql-create-tables", "true or false"}},
		{"grace too long", []string{"--expiry-grace=48h"}, nil, []string{"--expiry-grace", "24h"}},
		{"zero poll", []string{"--file-poll-interval=0"}, nil, []string{"--file-poll-interval", "above 0"}},
		{"wait too long", []string{"--max-wait=10m"}, nil, []string{"--max-wait", "10m", "over 5m"}},
		{"wait without unit", nil, map[string]string{"REVOCATION_SOURCE_MAX_WAIT": "30"}, []string{"REVOCATION_SOURCE_MAX_WAIT", `"30"`, "needs a unit"}},
		{"negative watchers", []string{"--max-watchers=-1"}, nil, []string{"--max-watchers", "0 or more"}},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, envOf(tt.env))
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v is not ErrConfig", tt.name, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tt.name, err, w)
			}
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != "127.0.0.1:8081" || c.sqlCreate || c.sqlPrune != 0 || c.expiryGrace != time.Hour ||
		c.sqlType.Set || c.sqlType.Name != "type" || c.sqlExpires.Set || c.maxWait != 30*time.Second || c.maxWatchers != 10000 {
		t.Fatalf("defaults %+v", c)
	}
	c, err = parseConfig([]string{"--store=redis"}, envOf(map[string]string{"REVOCATION_SOURCE_STORE": "file"}))
	if err != nil || c.store != "redis" {
		t.Fatalf("flag should win over env: %v %q", err, c.store)
	}
	// An empty variable blanks a column name, as the flag does.
	for _, src := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--sql-type-column="}, nil},
		{nil, map[string]string{"REVOCATION_SOURCE_SQL_TYPE_COLUMN": ""}},
	} {
		c, err = parseConfig(src.args, envOf(src.env))
		if err != nil || c.sqlType != sqlstore.Named("") {
			t.Fatalf("%v %v: %+v %v", src.args, src.env, c.sqlType, err)
		}
	}
	c, err = parseConfig([]string{"--sql-expires-column=exp_at", "--jwt-access-token-expires=15m", "--jwt-refresh-token-expires=30d", "--sql-prune-interval=1h"}, envOf(nil))
	if err != nil || c.sqlExpires != sqlstore.Named("exp_at") || c.accessExpires != 15*time.Minute || c.refreshExpires != 30*24*time.Hour || c.sqlPrune != time.Hour {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := parseConfig([]string{"--help"}, envOf(nil)); !errors.Is(err, errHelp) {
		t.Fatalf("--help: %v", err)
	}
	if _, err := parseConfig([]string{"-h"}, envOf(nil)); !errors.Is(err, errHelp) {
		t.Fatalf("-h: %v", err)
	}
}

// TestHelp: --help prints the flag reference to stdout (and main exits 0 for
// errHelp). It used to print "bad configuration: flag: help requested" and
// exit 1. (Issue 10 §3.)
func TestHelp(t *testing.T) {
	var out, logs bytes.Buffer
	err := run(context.Background(), []string{"--help"}, envOf(nil), &out, &logs)
	if !errors.Is(err, errHelp) {
		t.Fatalf("got %v", err)
	}
	var c config
	for _, s := range specs(&c) {
		if !strings.Contains(out.String(), "--"+s.name+"=") || !strings.Contains(out.String(), envName(s.name)) {
			t.Errorf("help lacks --%s", s.name)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("help logged %q", logs.String())
	}
}

// server is the real program on a loopback port.
type server struct {
	base string
	logs *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// launch starts the program and returns once it listens.
func launch(t *testing.T, args []string, env map[string]string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan string, 1)
	s := &server{logs: &syncBuffer{}, done: make(chan error, 1)}
	go func() {
		s.done <- runWith(ctx, append([]string{"--listen=127.0.0.1:0", "--log-format=text"}, args...), envOf(env), io.Discard, s.logs, bound)
	}()
	select {
	case addr := <-bound:
		s.base = "http://" + addr
	case err := <-s.done:
		t.Fatalf("server exited: %v\n%s", err, s.logs)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
	})
	return s
}

func (s *server) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready; logs:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServer runs the program and waits until it is ready.
func startServer(t *testing.T, args []string, env map[string]string) string {
	t.Helper()
	s := launch(t, args, env)
	s.waitReady(t)
	return s.base
}

func do(t *testing.T, method, url, token, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent gunzip
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// pgArgs points the program at a PostgreSQL schema of the test's own.
func pgArgs(t *testing.T, timeZone string) (args []string, dsn string) {
	t.Helper()
	base := testenv.PGDSN(t)
	schema := "cmd_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	if len(schema) > 60 {
		schema = schema[:60]
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE; CREATE SCHEMA "` + schema + `"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
		_ = admin.Close()
	})
	dsn = withOptions(base, "-c search_path="+schema+map[bool]string{true: " -c TimeZone=" + timeZone}[timeZone != ""])
	return []string{"--store=postgres", "--postgres-dsn=" + dsn}, dsn
}

// TestEndToEnd drives the binary's logic over HTTP against each store.
func TestEndToEnd(t *testing.T) {
	stores := []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string {
			return []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}
		}},
		{"postgres", func(t *testing.T) []string {
			a, _ := pgArgs(t, "")
			return append(a, "--sql-create-tables")
		}},
		{"redis", func(t *testing.T) []string {
			return []string{"--store=redis", "--redis-addr=" + testenv.RedisAddr(t),
				"--redis-key-prefix=e2e:" + time.Now().Format("150405.000000") + ":"}
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			const token = "s3cret-token"
			base := startServer(t, st.args(t), map[string]string{"REVOCATION_SOURCE_ADMIN_TOKEN": token})
			feed := base + rs.FeedPath
			admin := base + rs.AdminPath
			exp := time.Now().Add(time.Hour).Unix()

			resp, body := do(t, "GET", feed, "", "", nil)
			var snap rs.Snapshot
			if resp.StatusCode != 200 || json.Unmarshal(body, &snap) != nil || snap.Kind != "snapshot" {
				t.Fatalf("first snapshot %d %s", resp.StatusCode, body)
			}
			v0, etag0 := snap.Version, resp.Header.Get("ETag")

			auth := []struct {
				token string
				code  int
			}{{"", 401}, {"wrong", 401}, {token, 200}}
			for _, a := range auth {
				resp, body = do(t, "POST", admin, a.token, `{"jti":"tok-1","exp":`+itoa(exp)+`}`, nil)
				if resp.StatusCode != a.code {
					t.Fatalf("token %q: %d %s", a.token, resp.StatusCode, body)
				}
			}
			bad := []string{`{"jti":"a","sub":"b"}`, `{}`, `{"jti":"a","exp":5}`, `{"jti":"a","bogus":1}`, `{"jti":"` + strings.Repeat("x", 300) + `"}`, strings.Repeat("x", rs.MaxAdminBody+1)}
			for _, b := range bad {
				if resp, body = do(t, "POST", admin, token, b, nil); resp.StatusCode != 400 {
					t.Fatalf("bad body %.40q: %d %s", b, resp.StatusCode, body)
				}
			}
			if resp, body = do(t, "POST", admin, token, `{"sub":"user-17"}`, nil); resp.StatusCode != 200 {
				t.Fatalf("cutoff: %d %s", resp.StatusCode, body)
			}

			// Delta from the first version.
			resp, body = do(t, "GET", feed+"?since="+v0, "", "", map[string]string{"If-None-Match": etag0})
			var d rs.Delta
			if resp.StatusCode != 200 || json.Unmarshal(body, &d) != nil || d.Kind != "delta" || d.Base != v0 ||
				len(d.Added) != 1 || d.Added[0].JTI != "tok-1" || d.Added[0].Exp != exp || len(d.CutoffsAdded) != 1 {
				t.Fatalf("delta %d %s", resp.StatusCode, body)
			}
			// Unchanged → 304 for both the delta's and a snapshot's ETag.
			if resp, _ = do(t, "GET", feed+"?since="+d.Version, "", "", map[string]string{"If-None-Match": resp.Header.Get("ETag")}); resp.StatusCode != 304 {
				t.Fatalf("want 304, got %d", resp.StatusCode)
			}
			// Unknown since → snapshot.
			resp, body = do(t, "GET", feed+"?since=c1.unknown", "", "", map[string]string{"Accept-Encoding": "gzip"})
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatal("no gzip")
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(zr)
			snap = rs.Snapshot{}
			if json.Unmarshal(plain, &snap) != nil || snap.Kind != "snapshot" || len(snap.Entries) != 1 || len(snap.Cutoffs) != 1 || snap.Version != d.Version {
				t.Fatalf("gzip snapshot %s", plain)
			}

			// Unrevoke with curl-style query parameters.
			if resp, body = do(t, "DELETE", admin+"?jti=tok-1", token, "", nil); resp.StatusCode != 200 {
				t.Fatalf("delete: %d %s", resp.StatusCode, body)
			}
			if resp, body = do(t, "DELETE", admin, token, `{"sub":"user-17"}`, nil); resp.StatusCode != 200 {
				t.Fatalf("delete cutoff: %d %s", resp.StatusCode, body)
			}
			resp, body = do(t, "GET", feed, "", "", nil)
			snap = rs.Snapshot{}
			if json.Unmarshal(body, &snap) != nil || len(snap.Entries) != 0 || len(snap.Cutoffs) != 0 || snap.Version != v0 {
				t.Fatalf("after deletes %s", body)
			}
			if resp, _ = do(t, "GET", base+"/metrics", "", "", nil); resp.StatusCode != 200 {
				t.Fatal("metrics")
			}
		})
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestAdminDisabledWithoutToken(t *testing.T) {
	base := startServer(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}, nil)
	resp, _ := do(t, "POST", base+rs.AdminPath, "", `{"jti":"a"}`, nil)
	if resp.StatusCode != 404 && resp.StatusCode != 405 {
		t.Fatalf("admin API answered %d without a token configured", resp.StatusCode)
	}
}

// TestFeedAndMetricsTokensFromEnv: the feed and /metrics can require bearer
// tokens. (Issue 8 §4.)
func TestFeedAndMetricsTokensFromEnv(t *testing.T) {
	base := startServer(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"},
		map[string]string{"REVOCATION_SOURCE_FEED_TOKEN": "feed-t", "REVOCATION_SOURCE_METRICS_TOKEN": "metrics-t"})
	for _, c := range []struct {
		path, token string
		code        int
	}{{rs.FeedPath, "", 401}, {rs.FeedPath, "feed-t", 200}, {"/metrics", "", 401}, {"/metrics", "feed-t", 401}, {"/metrics", "metrics-t", 200}} {
		if resp, _ := do(t, "GET", base+c.path, c.token, "", nil); resp.StatusCode != c.code {
			t.Errorf("%s with %q: %d, want %d", c.path, c.token, resp.StatusCode, c.code)
		}
	}
}

func sqliteExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rwc&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

const flaskV1SQLite = `CREATE TABLE token_blocklist (id INTEGER NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at DATETIME NOT NULL, PRIMARY KEY (id))`

// TestHealthzWhileWaitingForTheStore: before the app has created its table
// (or its database file), /healthz answers, /readyz and the feed say 503,
// nothing is created, and once the table appears the source is ready and
// says it waited. (Issue 10 §1.)
func TestHealthzWhileWaitingForTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	s := launch(t, []string{"--sqlite-path=" + path}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.logs.String(), "store not there yet") {
		if time.Now().After(deadline) {
			t.Fatalf("no waiting log:\n%s", s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		path string
		code int
	}{{"/healthz", 200}, {"/readyz", 503}, {rs.FeedPath, 503}} {
		if resp, body := do(t, "GET", s.base+c.path, "", "", nil); resp.StatusCode != c.code {
			t.Fatalf("%s while waiting: %d %s", c.path, resp.StatusCode, body)
		}
	}
	sqliteExec(t, path, flaskV1SQLite, `INSERT INTO token_blocklist (jti, created_at) VALUES ('j1', CURRENT_TIMESTAMP)`)
	s.waitReady(t)
	if !strings.Contains(s.logs.String(), "store reachable") || !strings.Contains(s.logs.String(), "waited=") {
		t.Fatalf("no 'store reachable … waited' log:\n%s", s.logs)
	}
	_, body := do(t, "GET", s.base+rs.FeedPath, "", "", nil)
	if !strings.Contains(string(body), `"j1"`) {
		t.Fatalf("feed %s", body)
	}
}

// TestSchemaProblemExits: a column that is named but missing ends the
// program at once with an error naming the table, the column and the flag or
// variable that named it, rather than "not reachable yet" forever.
func TestSchemaProblemExits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	sqliteExec(t, path, flaskV1SQLite)
	for _, c := range []struct {
		args []string
		env  map[string]string
		who  string
	}{
		{[]string{"--sql-expires-column=expires"}, nil, "--sql-expires-column"},
		{nil, map[string]string{"REVOCATION_SOURCE_SQL_EXPIRES_COLUMN": "expires"}, "REVOCATION_SOURCE_SQL_EXPIRES_COLUMN"},
	} {
		done := make(chan error, 1)
		go func() {
			done <- runWith(context.Background(), append([]string{"--listen=127.0.0.1:0", "--sqlite-path=" + path}, c.args...),
				envOf(c.env), io.Discard, io.Discard, nil)
		}()
		select {
		case err := <-done:
			for _, w := range []string{"token_blocklist", "expires", c.who} {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not name %q", err, w)
				}
			}
			if !errors.Is(err, sqlstore.ErrSchema) {
				t.Errorf("%v is not ErrSchema", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a schema problem did not end the program")
		}
	}
}

// TestSQLiteFlaskTableWithDefaults: with nothing but the path, the source
// reads flask's table, and rows the app adds afterwards reach the feed. It
// used to probe a quoted "expires", which SQLite reads as a string literal,
// so /readyz said 200 and every new row failed as "unreadable expiry value".
// (Issue 10 §1.)
func TestSQLiteFlaskTableWithDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	sqliteExec(t, path, flaskV1SQLite)
	s := launch(t, []string{"--sqlite-path=" + path, "--sql-poll-interval=50ms", "--jwt-access-token-expires=1h"}, nil)
	s.waitReady(t)
	sqliteExec(t, path, `INSERT INTO token_blocklist (jti, created_at) VALUES ('after-start', '`+time.Now().UTC().Format("2006-01-02 15:04:05.000000")+`')`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := do(t, "GET", s.base+rs.FeedPath, "", "", nil)
		var snap rs.Snapshot
		if json.Unmarshal(body, &snap) == nil && len(snap.Entries) == 1 && snap.Entries[0].JTI == "after-start" {
			if snap.Entries[0].Exp < time.Now().Add(time.Hour).Unix()-5 {
				t.Fatalf("exp %d", snap.Entries[0].Exp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a row added after start never reached the feed: %s\n%s", body, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(s.logs.String(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", s.logs)
	}
}

// TestPostgresFlaskTableWithIntID: flask's table in PostgreSQL has a SERIAL
// (int4) id; the start-up probe passed 1<<62 for it and the source retried
// "unable to encode … for int4" forever. (Issue 10 §1.)
func TestPostgresFlaskTableWithIntID(t *testing.T) {
	args, dsn := pgArgs(t, "America/Los_Angeles")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE token_blocklist (id SERIAL NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id));
INSERT INTO token_blocklist (jti, created_at) VALUES ('pg-1', now())`); err != nil {
		t.Fatal(err)
	}
	base := startServer(t, append(args, "--jwt-access-token-expires=1h"), nil)
	_, body := do(t, "GET", base+rs.FeedPath, "", "", nil)
	var snap rs.Snapshot
	if json.Unmarshal(body, &snap) != nil || len(snap.Entries) != 1 || snap.Entries[0].JTI != "pg-1" ||
		snap.Entries[0].Exp < time.Now().Add(time.Hour).Unix()-5 {
		t.Fatalf("feed %s", body)
	}
}

// withOptions adds PostgreSQL session settings to a URL.
func withOptions(dsn, opts string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	q := u.Query()
	q.Set("options", opts)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + literally
	return u.String()
}

// TestTableChangedUnderTheServer: when the app's table changes so that new
// rows can no longer be read (here the jti column is renamed), the source
// stops reporting ready, and the feed answers 503 instead of serving the old
// list as fresh; once the table fits again, it is ready again. An outage of
// the database does not do this: nobody can write revocations then.
func TestTableChangedUnderTheServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	sqliteExec(t, path, flaskV1SQLite, `INSERT INTO token_blocklist (jti, created_at) VALUES ('j1', CURRENT_TIMESTAMP)`)
	s := launch(t, []string{"--sqlite-path=" + path, "--sql-poll-interval=50ms"}, nil)
	s.waitReady(t)
	sqliteExec(t, path, `ALTER TABLE token_blocklist RENAME COLUMN jti TO token_jti`)
	waitStatus := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, _ := do(t, "GET", s.base+"/readyz", "", "", nil)
			if resp.StatusCode == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz never answered %d; logs:\n%s", want, s.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus(503)
	if resp, _ := do(t, "GET", s.base+rs.FeedPath, "", "", nil); resp.StatusCode != 503 {
		t.Fatalf("feed answered %d while the table cannot be read", resp.StatusCode)
	}
	if !strings.Contains(s.logs.String(), "token_blocklist") || !strings.Contains(s.logs.String(), "level=ERROR") {
		t.Fatalf("no error naming the table:\n%s", s.logs)
	}
	sqliteExec(t, path, `ALTER TABLE token_blocklist RENAME COLUMN token_jti TO jti`)
	waitStatus(200)
}
