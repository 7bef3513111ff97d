package differential

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// python is Debian's interpreter: the packages under test are Debian's, not whatever a
// pyenv or virtualenv on PATH provides.
const python = "/usr/bin/python3"

const installHint = "apt-get install -y python3-python-flask-jwt-extended python3-flask python3-jwt " +
	"(or: bash scripts/install-differential.sh)"

// requirePython fails under CI (the suite must run there) and skips loudly elsewhere when
// the interpreter or the packages are missing. It returns the library versions.
func requirePython(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(python, "-c",
		"import flask, werkzeug, jwt, flask_jwt_extended, importlib.metadata as m; "+
			"print('flask-jwt-extended', flask_jwt_extended.__version__, 'Flask', m.version('flask'), "+
			"'werkzeug', m.version('werkzeug'), 'PyJWT', jwt.__version__)").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("the differential suite needs %s with flask-jwt-extended, Flask, werkzeug and PyJWT: %v\n%s\ninstall: %s",
			python, err, out, installHint)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED (would FAIL under CI=true): " + msg)
	}
	return strings.TrimSpace(string(out))
}

// app is the running Python reference app.
type app struct {
	addr string
}

// startApp runs app/diffapp.py on 127.0.0.1:0 and reads the port it prints. The process
// ends when the test ends (its standard input closes, and it is killed).
func startApp(t *testing.T, secret string) *app {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("app", "diffapp.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, secret)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	portc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
				portc <- p
			}
		}
		close(portc)
	}()
	select {
	case p, ok := <-portc:
		if !ok {
			t.Fatalf("diffapp.py exited before listening:\n%s", stderr.String())
		}
		return &app{addr: "127.0.0.1:" + p}
	case <-time.After(30 * time.Second):
		t.Fatalf("diffapp.py printed no port within 30s:\n%s", stderr.String())
	}
	return nil
}

// mint asks the app for a token made by create_access_token / create_refresh_token.
func (a *app) mint(ctx context.Context, typ string, identity any, claims map[string]any) (string, error) {
	body, _ := json.Marshal(map[string]any{"type": typ, "identity": identity, "claims": claims})
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+a.addr+"/h/mint", bytes.NewReader(body))
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ Token string }
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.Token == "" {
		return "", fmt.Errorf("mint: %d %s", resp.StatusCode, b)
	}
	return out.Token, nil
}
