package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

type cliResult struct {
	code           int
	stdout, stderr string
}

func cli(env map[string]string, args ...string) cliResult {
	var out, errw bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := runCLI(ctx, args[0], args[1:], envOf(env), &out, &errw)
	return cliResult{code, out.String(), errw.String()}
}

func (r cliResult) want(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Fatalf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

// TestCLI: each subcommand against the real program, and the exit status
// for each way it can end: 0 done, 1 refused, 2 usage, 3 unreachable.
// (Issue 12 §4.)
func TestCLI(t *testing.T) {
	const token = "cli-admin-token"
	base := startServer(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables", "--sql-iss-column=iss"},
		map[string]string{"REVOCATION_SOURCE_ADMIN_TOKEN": token})
	env := map[string]string{"REVOCATION_SOURCE_URL": base, "REVOCATION_SOURCE_ADMIN_TOKEN": token}

	cli(env, "revoke", "--jti=6f1e2b0c", "--exp=1h").want(t, 0, []string{"revoked jti 6f1e2b0c, until ", "list version c1."}, nil)
	cli(env, "revoke", "--jti=tab\tand\nnewline").want(t, 0, nil, nil)
	cli(env, "revoke", "--jti=a-"+strings.Repeat("x", 10), "--iss=https://auth.example.com", "--exp=2099-01-01T00:00:00Z").want(t, 0, []string{"of https://auth.example.com"}, nil)
	cli(env, "revoke", "--sub=user-17", "--revoked-before=now", "--exp=30d").want(t, 0, []string{"revoked sub user-17, tokens issued before"}, nil)
	cli(env, "revoke", "--sub=user-18", "--iss=https://auth.example.com", "--revoked-before=1767139200").want(t, 0, []string{"2025-12-31T00:00:00Z"}, nil)

	r := cli(env, "list")
	r.want(t, 0, []string{"KIND", "6f1e2b0c", "sub  ", "user-17", "2099-01-01T00:00:00Z", `"tab\tand\nnewline"`}, nil)
	if n := strings.Count(r.stdout, "\n"); n != 6 {
		t.Fatalf("list printed %d lines, want a header and 5 items:\n%s", n, r.stdout)
	}
	if r.stderr != "" {
		t.Fatalf("list of everything said %q", r.stderr)
	}

	// Paging: a limit leaves the cursor on stderr, and the cursor goes on.
	r = cli(env, "list", "--limit=2")
	r.want(t, 0, nil, []string{"more: continue with --cursor="})
	cursor := regexp.MustCompile(`--cursor=(\S+)`).FindStringSubmatch(r.stderr)[1]
	r2 := cli(env, "list", "--limit=0", "--cursor="+cursor)
	r2.want(t, 0, []string{"user-18"}, nil)
	if strings.Contains(r2.stdout, "a-xxxx") || !strings.Contains(r.stdout, "a-xxxx") || strings.Count(r2.stdout, "\n") != 4 {
		t.Fatalf("pages overlap or miss:\n%s\n%s", r.stdout, r2.stdout)
	}

	// Filters and --json.
	var page rs.AdminList
	r = cli(env, "list", "--json", "--only=cutoffs")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Cutoffs) != 2 || len(page.Entries) != 0 || page.NextCursor != "" {
		t.Fatalf("--only=cutoffs --json: %+v", r)
	}
	r = cli(env, "list", "--json", "--iss=")
	if json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Entries) != 2 || len(page.Cutoffs) != 1 {
		t.Fatalf("--iss= (no issuer): %s", r.stdout)
	}
	r = cli(env, "list", "--json", "--jti-prefix=6f1e")
	if json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Entries) != 1 || page.Entries[0].Exp < time.Now().Add(time.Hour).Unix() {
		t.Fatalf("--jti-prefix: %s", r.stdout)
	}
	r = cli(env, "list", "--json", "--limit=1")
	if json.Unmarshal([]byte(r.stdout), &page) != nil || page.NextCursor == "" {
		t.Fatalf("--json --limit=1 has no next_cursor: %s", r.stdout)
	}

	var st rs.AdminStatus
	cli(env, "status").want(t, 0, []string{"version", "c1.", "ready     true", "entries   3", "cutoffs   2"}, nil)
	r = cli(env, "status", "--json")
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.Entries != 3 || !st.Ready {
		t.Fatalf("status --json: %s", r.stdout)
	}

	cli(env, "unrevoke", "--jti=6f1e2b0c").want(t, 0, []string{"unrevoked jti 6f1e2b0c"}, nil)
	cli(env, "unrevoke", "--sub=user-18", "--iss=https://auth.example.com", "--json").want(t, 0, []string{`"version": "c1.`}, nil)
	r = cli(env, "status", "--json")
	if json.Unmarshal([]byte(r.stdout), &st) != nil || st.Entries != 2 || st.Cutoffs != 1 {
		t.Fatalf("after unrevoke: %s", r.stdout)
	}

	// 1: the source said no, with its reason.
	cli(env, "revoke", "--jti=old", "--exp=5").want(t, 1, nil, []string{"revocation-source revoke:", base, "answered 400", "exp 5"})
	wrong := map[string]string{"REVOCATION_SOURCE_URL": base, "REVOCATION_SOURCE_ADMIN_TOKEN": "wrong"}
	cli(wrong, "status").want(t, 1, nil, []string{"answered 401", "REVOCATION_SOURCE_ADMIN_TOKEN"})

	// 2: usage, before anything is sent.
	for _, c := range []struct {
		env  map[string]string
		args []string
		says string
	}{
		{map[string]string{"REVOCATION_SOURCE_URL": base}, []string{"status"}, "no admin token"},
		{env, []string{"revoke", "--jti=a", "--sub=b"}, "exactly one of --jti and --sub"},
		{env, []string{"revoke"}, "exactly one of --jti and --sub"},
		{env, []string{"revoke", "--jti=a", "--exp=soon"}, `--exp="soon"`},
		{env, []string{"revoke", "--jti=a", "--revoked-before=now"}, "--sub only"},
		{env, []string{"revoke", "--sub=a", "--revoked-before=1h"}, `--revoked-before="1h"`},
		{env, []string{"list", "--limit=-1"}, "--limit"},
		{env, []string{"list", "--only=jtis"}, "--only"},
		{env, []string{"list", "extra"}, `"extra"`},
		{env, []string{"list", "--bogus"}, "unknown flag --bogus"},
		{env, []string{"status", "--url=127.0.0.1:8081"}, "--url"},
		{map[string]string{"REVOCATION_SOURCE_URL": "ftp://x", "REVOCATION_SOURCE_ADMIN_TOKEN": token}, []string{"status"}, "REVOCATION_SOURCE_URL"},
		{map[string]string{"REVOCATION_SOURCE_URL": base}, []string{"status", "--admin-token-file=/nonexistent/token"}, "--admin-token-file=/nonexistent/token"},
		{map[string]string{"REVOCATION_SOURCE_ADMIN_TOKEN_FILE": "/nonexistent/token"}, []string{"status"}, "REVOCATION_SOURCE_ADMIN_TOKEN_FILE=/nonexistent/token"},
	} {
		cli(c.env, c.args...).want(t, 2, nil, []string{"revocation-source " + c.args[0] + ":", c.says})
	}

	// The token from a file, named by the flag or the variable.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(map[string]string{"REVOCATION_SOURCE_URL": base}, "status", "--admin-token-file="+file).want(t, 0, nil, nil)
	cli(map[string]string{"REVOCATION_SOURCE_URL": base, "REVOCATION_SOURCE_ADMIN_TOKEN_FILE": file}, "status").want(t, 0, nil, nil)

	// 3: nobody there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	cli(env, "status", "--url="+gone).want(t, 3, nil, []string{"cannot reach the source at " + gone, "(from --url)"})
	cli(map[string]string{"REVOCATION_SOURCE_URL": gone, "REVOCATION_SOURCE_ADMIN_TOKEN": token}, "list").want(t, 3, nil, []string{"REVOCATION_SOURCE_URL"})

	cli(nil, "revoke", "--help").want(t, 0, []string{"--jti=", "--exp=", "Exit status"}, nil)
}

// TestCLIStatusNotReady: status exits 1 while the source waits for its
// store, and says so.
func TestCLIStatusNotReady(t *testing.T) {
	s := launch(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "not-yet.db")}, map[string]string{"REVOCATION_SOURCE_ADMIN_TOKEN": "t"})
	env := map[string]string{"REVOCATION_SOURCE_URL": s.base, "REVOCATION_SOURCE_ADMIN_TOKEN": "t"}
	cli(env, "status").want(t, 1, []string{"ready     false"}, []string{"not ready"})
}

// TestCLIAdminOff: a source without an admin token answers 404, and the
// error says why that may be.
func TestCLIAdminOff(t *testing.T) {
	base := startServer(t, []string{"--sqlite-path=" + filepath.Join(t.TempDir(), "r.db"), "--sql-create-tables"}, nil)
	cli(map[string]string{"REVOCATION_SOURCE_URL": base, "REVOCATION_SOURCE_ADMIN_TOKEN": "t"}, "list").
		want(t, 1, nil, []string{"answered 404", "admin API is off"})
}
