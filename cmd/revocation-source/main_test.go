package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   bool
	}{
		{"defaults", nil, nil, true},
		{"env sets", nil, map[string]string{"REVOCATION_SOURCE_STORE": "file", "REVOCATION_SOURCE_FILE_PATH": "/x"}, true},
		{"bad store", []string{"--store=mongo"}, nil, false},
		{"bad env duration", nil, map[string]string{"REVOCATION_SOURCE_RECONCILE_INTERVAL": "soon"}, false},
		{"postgres without dsn", []string{"--store=postgres"}, nil, false},
		{"file without path", []string{"--store", "file"}, nil, false},
		{"bad listen", []string{"--listen=8080"}, nil, false},
		{"bad level", []string{"--log-level=loud"}, nil, false},
		{"unknown flag", []string{"--nope"}, nil, false},
		{"stray arg", []string{"extra"}, nil, false},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, envOf(tt.env))
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	c, err := parseConfig([]string{"--store=redis"}, envOf(map[string]string{"REVOCATION_SOURCE_STORE": "file"}))
	if err != nil || c.store != "redis" {
		t.Fatalf("flag should win over env: %v %q", err, c.store)
	}
}

// startServer runs the real program on a loopback port.
func startServer(t *testing.T, args []string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, append([]string{"--listen=127.0.0.1:0", "--log-format=text"}, args...), envOf(env), io.Discard, bound)
	}()
	var addr string
	select {
	case addr = <-bound:
	case err := <-done:
		t.Fatalf("server exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// TestEndToEnd drives the binary's logic over HTTP against each store.
func TestEndToEnd(t *testing.T) {
	stores := []struct {
		name string
		args func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string {
			return []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db")}
		}},
		{"postgres", func(t *testing.T) []string {
			return []string{"--store=postgres", "--postgres-dsn=" + testenv.PGDSN(t),
				"--sql-table=e2e_" + strings.ReplaceAll(t.Name(), "/", "_"), "--sql-cutoffs-table=e2e_cutoffs_" + strings.ReplaceAll(t.Name(), "/", "_")}
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
	base := startServer(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db")}, nil)
	resp, _ := do(t, "POST", base+rs.AdminPath, "", `{"jti":"a"}`, nil)
	if resp.StatusCode != 404 && resp.StatusCode != 405 {
		t.Fatalf("admin API answered %d without a token configured", resp.StatusCode)
	}
}
