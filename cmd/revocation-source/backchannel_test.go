package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jtiguard/jtiguard/blocklistsync"
	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

const (
	e2eOP     = "https://op.example.com"
	e2eClient = "mesh-client"
)

type logoutTokens struct {
	JWKS   json.RawMessage   `json:"jwks"`
	Tokens map[string]string `json:"tokens"`
}

// mintLogoutTokens runs revocationsource/testdata/logout_tokens.py (PyJWT)
// for tokens issued now.
func mintLogoutTokens(t *testing.T, now int64) logoutTokens {
	t.Helper()
	py := testenv.PythonWithPyJWT(t)
	in, _ := json.Marshal(map[string]any{"now": now, "iss": e2eOP, "aud": e2eClient})
	cmd := exec.Command(py, filepath.Join("..", "..", "revocationsource", "testdata", "logout_tokens.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("logout_tokens.py: %v\n%s", err, stderr.String())
	}
	var lt logoutTokens
	if err := json.Unmarshal(out, &lt); err != nil {
		t.Fatal(err)
	}
	return lt
}

func postLogout(t *testing.T, base, token string) (int, map[string]string) {
	t.Helper()
	resp, body := do(t, "POST", base+rs.BackchannelPath, "", url.Values{"logout_token": {token}}.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	var m map[string]string
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

// TestBackchannelLogoutEndToEnd: the real program, with a store of each
// kind, takes the provider's logout tokens (minted by PyJWT), and the feed
// it then serves holds the session's sid entry and the subject's cutoff,
// under the keys the filter's own parser finds them by. A restart keeps
// them: they are in the store.
func TestBackchannelLogoutEndToEnd(t *testing.T) {
	now := time.Now().Unix()
	lt := mintLogoutTokens(t, now)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, lt.JWKS, 0o600); err != nil {
		t.Fatal(err)
	}
	bc := []string{"--backchannel-issuer=" + e2eOP, "--backchannel-audience=other," + e2eClient,
		"--backchannel-jwks-file=" + jwks, "--backchannel-algorithms=RS256,ES256", "--backchannel-max-session-lifetime=30d"}
	stores := map[string]func(t *testing.T) []string{
		"sqlite": func(t *testing.T) []string {
			return []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}
		},
		"redis": func(t *testing.T) []string {
			addr := testenv.RedisAddr(t)
			b := make([]byte, 6)
			_, _ = rand.Read(b)
			prefix := "e2e:" + hex.EncodeToString(b) + ":"
			t.Cleanup(func() {
				c := redis.NewClient(&redis.Options{Addr: addr})
				defer c.Close()
				keys, _ := c.Keys(context.Background(), prefix+"*").Result()
				if len(keys) > 0 {
					c.Del(context.Background(), keys...)
				}
			})
			return []string{"--store=redis", "--redis-addr=" + addr, "--redis-key-prefix=" + prefix + "jti:",
				"--redis-cutoffs-key=" + prefix + "cutoffs", "--redis-claims-prefix=" + prefix + "claim:"}
		},
	}
	for name, storeArgs := range stores {
		t.Run(name, func(t *testing.T) {
			args := append(storeArgs(t), bc...)
			s := launch(t, args, nil)
			s.waitReady(t)
			if code, body := postLogout(t, s.base, lt.Tokens["sid"]); code != 200 {
				t.Fatalf("logout by sid: %d %v\n%s", code, body, s.logs)
			}
			if code, body := postLogout(t, s.base, lt.Tokens["sub only"]); code != 200 {
				t.Fatalf("logout by sub: %d %v", code, body)
			}
			if code, body := postLogout(t, s.base, lt.Tokens["sid"]); code != 400 || !strings.Contains(body["error_description"], "already received") {
				t.Fatalf("the replay: %d %v", code, body)
			}
			if code, body := postLogout(t, s.base, lt.Tokens["nonce present"]); code != 400 || body["error"] != "invalid_request" {
				t.Fatalf("a token with a nonce: %d %v", code, body)
			}
			checkFeed(t, s.base, now)
			if !strings.Contains(s.logs.String(), "back-channel logout") || strings.Contains(s.logs.String(), lt.Tokens["sid"]) {
				t.Fatalf("the logout is not logged, or its token is:\n%s", s.logs)
			}
		})
	}
}

// checkFeed parses the feed as the filter does and finds the sid entry and
// the cutoff the logouts wrote.
func checkFeed(t *testing.T, base string, now int64) {
	t.Helper()
	resp, body := do(t, "GET", base+rs.FeedPath, "", "", nil)
	h, err := blocklistsync.NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	u, err := blocklistsync.ParseFeed(body, resp.Header.Get("Content-Type"), blocklistsync.FeedLimits{MaxEntries: 100, KeyedByIssuer: true, Hasher: h})
	if err != nil {
		t.Fatalf("the filter refuses the feed: %v\n%s", err, body)
	}
	l := u.Add
	l.Normalize(uint32(now))
	enc, err := l.Encode(blocklistsync.Meta{Version: u.Version, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := blocklistsync.DecodeSnapshot(enc.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	at := uint32(now + 29*24*3600) // the session's entry lasts the longest session lifetime
	if !snap.Revoked(h.ClaimKey(e2eOP, "sid", "08a5019c-17e1-4977-8f42-65a12843ea02"), at) {
		t.Fatalf("the sid entry is not in the feed under ClaimKey:\n%s", body)
	}
	if snap.Revoked(h.TokenKey(e2eOP, "08a5019c-17e1-4977-8f42-65a12843ea02"), 0) || snap.Revoked(h.ClaimKey("", "sid", "08a5019c-17e1-4977-8f42-65a12843ea02"), 0) {
		t.Fatal("the sid entry also revokes a jti, or tokens of another issuer")
	}
	if before, ok := snap.CutoffFor(h.SubjectKey(e2eOP, "user-17"), at); !ok || int64(before) != now-10 {
		t.Fatalf("the subject's cutoff: %d, %v; want the logout token's iat %d\n%s", before, ok, now-10, body)
	}
}

// TestBackchannelSurvivesRestart: what a logout wrote is in the store, so
// a restarted source serves it.
func TestBackchannelSurvivesRestart(t *testing.T) {
	now := time.Now().Unix()
	lt := mintLogoutTokens(t, now)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, lt.JWKS, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables",
		"--backchannel-issuer=" + e2eOP, "--backchannel-audience=" + e2eClient, "--backchannel-jwks-file=" + jwks,
		"--backchannel-max-session-lifetime=30d"}
	first := startServer(t, args, nil)
	for _, name := range []string{"sid", "sub only"} {
		if code, body := postLogout(t, first, lt.Tokens[name]); code != 200 {
			t.Fatalf("%s: %d %v", name, code, body)
		}
	}
	second := startServer(t, args, nil)
	checkFeed(t, second, now)
}

// TestBackchannelNeedsItsTables: a SQL store without the claims table ends
// the program with an error naming it.
func TestBackchannelNeedsItsTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	sqliteExec(t, path, `CREATE TABLE token_blocklist (id INTEGER PRIMARY KEY, jti VARCHAR(36) NOT NULL, created_at DATETIME NOT NULL)`)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"k"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"--listen=127.0.0.1:0", "--sqlite-path=" + path, "--backchannel-issuer=" + e2eOP,
		"--backchannel-audience=c", "--backchannel-jwks-file=" + jwks, "--backchannel-algorithms=ES256",
		"--backchannel-max-session-lifetime=1h"}, envOf(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "claims table") {
		t.Fatalf("run = %v; want an error naming the claims table", err)
	}
	// A JWKS file without a usable key is a configuration error at start.
	err = run(context.Background(), []string{"--listen=127.0.0.1:0", "--sqlite-path=" + path, "--backchannel-issuer=" + e2eOP,
		"--backchannel-audience=c", "--backchannel-jwks-file=" + jwks, "--backchannel-max-session-lifetime=1h"}, envOf(nil), &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--backchannel-jwks-file") || !strings.Contains(err.Error(), "RS256") {
		t.Fatalf("run with an ES256 key and RS256 allowed = %v; want an error naming the file", err)
	}
}
