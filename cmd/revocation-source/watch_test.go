package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

// longPoll asks the feed for a change from version v, holding up to wait.
func longPoll(ctx context.Context, base, v, wait string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+rs.FeedPath+"?since="+v+"&wait="+wait, nil)
	req.Header.Set("If-None-Match", `"`+v+`"`)
	req.Header.Set("Accept-Encoding", "identity") // as the filter: no gzip
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// waitWatchers waits until the server's /metrics says n long polls are held.
func waitWatchers(t *testing.T, base string, n int) {
	t.Helper()
	want := "\nrevocation_source_watchers " + itoa(int64(n)) + "\n"
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := do(t, "GET", base+"/metrics", "", "", nil)
		if strings.Contains(string(body), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never %d watchers held; /metrics:\n%s", n, grepLines(string(body), "revocation_source_watch"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLongPollWakesOnEveryStore: a long poll held by the real program is
// answered with the delta when the list changes in its store, the way each
// store sees changes: a row the app inserts (SQLite, PostgreSQL: the id
// poll), a key the app sets (Redis: keyspace notifications), the file
// replaced (its mtime check), and the admin API. The wait is 25 s and the
// changes' own latencies are 100 ms: an answer means the change woke it.
// (Issue 11 §2.)
func TestLongPollWakesOnEveryStore(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, store := range []string{"sqlite", "postgres", "redis", "file", "admin"} {
		t.Run(store, func(t *testing.T) {
			var args []string
			var change func()
			base := ""
			switch store {
			case "sqlite":
				path := filepath.Join(t.TempDir(), "app.db")
				sqliteExec(t, path, flaskV1SQLite)
				args = []string{"--sqlite-path=" + path, "--sql-poll-interval=100ms"}
				change = func() {
					sqliteExec(t, path, `INSERT INTO token_blocklist (jti, created_at) VALUES ('woke-it', CURRENT_TIMESTAMP)`)
				}
			case "postgres":
				a, dsn := pgArgs(t, "")
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.Exec(`CREATE TABLE token_blocklist (id SERIAL NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id))`); err != nil {
					t.Fatal(err)
				}
				args = append(a, "--sql-poll-interval=100ms")
				change = func() {
					if _, err := db.Exec(`INSERT INTO token_blocklist (jti, created_at) VALUES ('woke-it', now())`); err != nil {
						t.Fatal(err)
					}
				}
			case "redis":
				addr := testenv.RedisAddr(t)
				prefix := "watch:" + time.Now().Format("150405.000000") + ":"
				client := redis.NewClient(&redis.Options{Addr: addr})
				defer client.Close()
				args = []string{"--store=redis", "--redis-addr=" + addr, "--redis-key-prefix=" + prefix}
				change = func() {
					if err := client.Set(context.Background(), prefix+"woke-it", "", time.Hour).Err(); err != nil {
						t.Fatal(err)
					}
				}
			case "file":
				path := filepath.Join(t.TempDir(), "revoked.txt")
				if err := os.WriteFile(path, []byte("# nothing revoked\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				args = []string{"--store=file", "--file-path=" + path, "--file-poll-interval=100ms"}
				change = func() {
					if err := os.WriteFile(path, []byte("woke-it "+itoa(exp)+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			case "admin":
				args = []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}
				change = func() {
					if resp, body := do(t, "POST", base+rs.AdminPath, "admin-t", `{"jti":"woke-it"}`, nil); resp.StatusCode != 200 {
						t.Fatalf("revoke: %d %s", resp.StatusCode, body)
					}
				}
			}
			base = startServer(t, args, map[string]string{"REVOCATION_SOURCE_ADMIN_TOKEN": "admin-t"})
			_, body := do(t, "GET", base+rs.FeedPath, "", "", nil)
			var snap rs.Snapshot
			if err := json.Unmarshal(body, &snap); err != nil {
				t.Fatalf("snapshot %s: %v", body, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			type answer struct {
				resp *http.Response
				body []byte
				took time.Duration
				err  error
			}
			got := make(chan answer, 1)
			start := time.Now()
			go func() {
				resp, b, err := longPoll(ctx, base, snap.Version, "25s")
				got <- answer{resp, b, time.Since(start), err}
			}()
			waitWatchers(t, base, 1)
			change()
			a := <-got
			if a.err != nil {
				t.Fatal(a.err)
			}
			var d rs.Delta
			if a.resp.StatusCode != 200 || json.Unmarshal(a.body, &d) != nil || d.Kind != "delta" || d.Base != snap.Version ||
				len(d.Added) != 1 || d.Added[0].JTI != "woke-it" {
				t.Fatalf("after %v: %d %s", a.took, a.resp.StatusCode, a.body)
			}
			if a.took >= 25*time.Second*15/16 {
				t.Fatalf("answered after %v: the change did not wake the request, its wait ended", a.took)
			}
			t.Logf("%s: answered %v after the long poll started", store, a.took)
		})
	}
}

// TestLongPollShutdown: SIGTERM (here: the context) answers a held long
// poll 304 at once, and the program exits cleanly, long before the wait.
func TestLongPollShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan string, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- runWith(ctx, []string{"--listen=127.0.0.1:0", "--log-format=text", "--max-wait=5m",
			"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}, envOf(nil), io.Discard, logs, bound)
	}()
	base := "http://" + <-bound
	(&server{base: base, logs: logs}).waitReady(t)
	_, body := do(t, "GET", base+rs.FeedPath, "", "", nil)
	var snap rs.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 3)
	for range 3 {
		go func() {
			resp, _, err := longPoll(context.Background(), base, snap.Version, "4m")
			got <- answer{resp, err}
		}()
	}
	waitWatchers(t, base, 3)
	start := time.Now()
	cancel()
	for range 3 {
		select {
		case a := <-got:
			if a.err != nil || a.resp.StatusCode != 304 || a.resp.Header.Get("ETag") != `"`+snap.Version+`"` {
				t.Fatalf("held long poll at shutdown: %v %v", a.resp, a.err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a held long poll was not answered at shutdown")
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the program did not stop")
	}
	t.Logf("stopped %v after the signal", time.Since(start))
}

// TestLongPollOff: --max-wait=0 and --max-watchers=0 each turn long polls
// off: a request with wait is answered at once, as a normal poll.
func TestLongPollOff(t *testing.T) {
	for _, flag := range []string{"--max-wait=0", "--max-watchers=0"} {
		base := startServer(t, []string{flag, "--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}, nil)
		_, body := do(t, "GET", base+rs.FeedPath, "", "", nil)
		var snap rs.Snapshot
		if err := json.Unmarshal(body, &snap); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, _, err := longPoll(ctx, base, snap.Version, "25s")
		cancel()
		if err != nil || resp.StatusCode != 304 {
			t.Fatalf("%s: a long poll got %v %v; want 304 at once", flag, resp, err)
		}
	}
}
