package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Python returns an interpreter that can import Flask-SQLAlchemy,
// flask-jwt-extended and psycopg2: Debian's /usr/bin/python3 with
// python3-flask-sqlalchemy, python3-python-flask-jwt-extended and
// python3-psycopg2, which scripts/test-services.sh installs. Missing, the
// test is skipped, or fails under CI=true.
func Python(t testing.TB) string {
	t.Helper()
	pythonOnce.Do(func() {
		for _, py := range []string{"/usr/bin/python3", "python3"} {
			cmd := exec.Command(py, "-c", "import flask_sqlalchemy, flask_jwt_extended, psycopg2")
			if cmd.Run() == nil {
				python = py
				return
			}
		}
	})
	if python != "" {
		return python
	}
	msg := "no python3 with flask_sqlalchemy, flask_jwt_extended and psycopg2: run `eval \"$(bash scripts/test-services.sh)\"` first"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
	return ""
}

var (
	pythonOnce sync.Once
	python     string
)

// FlaskToken is a token the app issued and then revoked through its own
// logout route.
type FlaskToken struct {
	JTI  string `json:"jti"`
	Type string `json:"type"`
	Exp  int64  `json:"exp"`
}

// FlaskRevoke runs flask_blocklist.py: the real flask-jwt-extended app of
// the docs' database example (variant v1, v2, v2-type or
// v2-server-default) creates table in the database at url (an SQLAlchemy
// URL), logs in and revokes its tokens; it returns them.
func FlaskRevoke(t testing.TB, url, variant, table string) []FlaskToken {
	t.Helper()
	py := Python(t)
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "flask_blocklist.py")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, py, script, url, variant, table)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("flask app (%s): %v\n%s", variant, err, stderr.String())
	}
	var out []FlaskToken
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var tok FlaskToken
		if err := json.Unmarshal([]byte(line), &tok); err != nil {
			t.Fatalf("flask app output %q: %v", line, err)
		}
		out = append(out, tok)
	}
	if len(out) == 0 {
		t.Fatalf("flask app revoked nothing\n%s", stderr.String())
	}
	return out
}

// SQLAlchemyURL turns a pgx URL (postgres://…) into the one SQLAlchemy
// takes (postgresql://…, psycopg2); libpq reads the same query parameters.
func SQLAlchemyURL(pgURL string) string {
	if rest, ok := strings.CutPrefix(pgURL, "postgres://"); ok {
		return "postgresql://" + rest
	}
	return pgURL
}
