package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

const docsPath = "../../docs/revocation-source.md"

// shBlocks returns the fenced ```sh blocks of a Markdown file.
func shBlocks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```sh":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatalf("%s: unterminated code block", path)
	}
	return blocks
}

// commands joins continuation lines and drops blank lines and comments.
func commands(block string) []string {
	var out []string
	var cur string
	for _, line := range strings.Split(block, "\n") {
		if strings.HasSuffix(line, `\`) {
			cur += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line = cur + line
		cur = ""
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return out
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

var serverLine = regexp.MustCompile(`(^|\s)\./revocation-source(\s|$)`)

// cliLine is the binary run as the admin API's client: a command, not a
// server to start.
var cliLine = regexp.MustCompile(`(^|\s)\./revocation-source (revoke|unrevoke|list|status)(\s|$)`)

// TestDocsCommands runs every command of docs/revocation-source.md, in
// order, in one bash, in a temporary directory, against the test services:
// the documented port (8081) becomes a free one, the documented PostgreSQL
// URL a schema of the test's own, the Redis address the test Redis. Each
// ./revocation-source command runs in the background until the next one,
// and must become ready. `go test` commands are the repository's own test
// suite, which CI runs (make test): they are checked with `go test -n`, not
// run from inside it. A failing command fails the test. (Issue 10 §3.)
func TestDocsCommands(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (scripts/test-services.sh installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	redisAddr := testenv.RedisAddr(t)
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	port := freePort(t)

	// What the documented commands expect to find: a flask app's SQLite
	// database, and its table in PostgreSQL.
	if err := os.MkdirAll(filepath.Join(work, "instance"), 0o755); err != nil {
		t.Fatal(err)
	}
	sqliteExec(t, filepath.Join(work, "instance", "app.db"), flaskV1SQLite,
		`INSERT INTO token_blocklist (jti, created_at) VALUES ('from-the-app', CURRENT_TIMESTAMP)`)
	_, pgDSN := pgArgs(t, "")
	db, err := sql.Open("pgx", pgDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE token_blocklist (id SERIAL NOT NULL, jti VARCHAR(36) NOT NULL,
  created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id))`); err != nil {
		t.Fatal(err)
	}

	const docPG = "postgres://app:secret@127.0.0.1:5432/app"
	replace := strings.NewReplacer("127.0.0.1:8081", "127.0.0.1:"+port, docPG, pgDSN, "127.0.0.1:6379", redisAddr)
	var script strings.Builder
	script.WriteString(`set -eo pipefail
set -m  # each background server in its own process group
__pid=
__servers=0
__stop() { if [ -n "$__pid" ]; then kill -- -"$__pid" 2>/dev/null || true; wait "$__pid" 2>/dev/null || true; __pid=; fi; }
trap __stop EXIT
__ready() {
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then __servers=$((__servers+1)); echo "__READY $__servers"; return 0; fi
    kill -0 "$__pid" 2>/dev/null || { echo "__DIED: $1"; cat "$WORK/server.log"; return 1; }
    sleep 0.1
  done
  echo "__NOT_READY: $1"; cat "$WORK/server.log"; return 1
}
`)
	var servers, goTests int
	for _, block := range shBlocks(t, docsPath) {
		for _, cmd := range commands(block) {
			cmd = replace.Replace(cmd)
			script.WriteString("echo " + shellQuote("+ "+cmd) + "\n")
			switch {
			case strings.HasPrefix(cmd, "go build "):
				// From the repository root, as documented; the binary lands here.
				script.WriteString(`(cd "$REPO" && ` + strings.Replace(cmd, "-o revocation-source", `-o "$WORK/revocation-source"`, 1) + "\n)\n")
			case strings.HasPrefix(cmd, "go test "):
				goTests++
				script.WriteString(`(cd "$REPO" && exec >/dev/null 2>&1 && go test -n ` + strings.TrimPrefix(cmd, "go test ") + "\n)\n")
			case strings.Contains(cmd, "scripts/"):
				script.WriteString(`(cd "$REPO" && ` + cmd + "\n)\n")
			case serverLine.MatchString(cmd) && !strings.Contains(cmd, "--help") && !cliLine.MatchString(cmd):
				servers++
				line := strings.TrimSpace(strings.TrimSuffix(cmd, "&"))
				script.WriteString("__stop\n" + line + ` 2>"$WORK/server.log" &` + "\n__pid=$!\n__ready " + shellQuote(line) + "\n")
			default:
				script.WriteString(cmd + "\n")
			}
		}
	}
	script.WriteString(`echo "__DONE $__servers"` + "\n")
	if servers < 6 || goTests < 2 {
		t.Fatalf("found %d server commands and %d go test commands in %s; the parsing is off", servers, goTests, docsPath)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PORT="+port, "WORK="+work, "REPO="+repo,
		"REVOCATION_SOURCE_LISTEN=127.0.0.1:"+port, "REVOCATION_SOURCE_LOG_FORMAT=text")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || !strings.Contains(out.String(), fmt.Sprintf("__DONE %d", servers)) {
		t.Fatalf("the docs' commands failed: %v\n--- script\n%s\n--- output\n%s", err, script.String(), out.String())
	}
	// The file example's entries and the admin example's revocation were
	// served; the CLI listed and failed as documented; the long poll was
	// woken by the revoke and answered 304 when nothing changed.
	for _, want := range []string{`"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10"`, `"version":"c1.`,
		`"cutoffs":[{"sub":"user-17"`, `"watchers":0}`, "revoked jti 0b5d7a1e-2f44-4c1e-8d0a-6a2b9c3e4f51", "KIND  JTI/SUB", "ready     true",
		`"next_cursor": "`, "exit 3", `"added":[{"jti":"watched-revocation"}]`, `304 "c1.`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestDocsListEveryFlag: the flag table in the docs has every flag, with
// the default the program uses.
func TestDocsListEveryFlag(t *testing.T) {
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var c config
	for _, s := range specs(&c) {
		row := regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(s.name) + "` \\|\\s*([^|]*?)\\s*\\|")
		m := row.FindStringSubmatch(doc)
		if m == nil {
			t.Errorf("docs: no row for --%s", s.name)
			continue
		}
		def := strings.TrimSpace(m[1])
		want := s.def
		switch {
		case want == "" && (def == "" || def == "`\"\"`"):
			continue
		case strings.HasPrefix(def, "`"+want+"`"):
			continue
		}
		t.Errorf("docs: --%s default %s, the program's is %q", s.name, def, want)
	}
}
