package credentials

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// python is Debian's interpreter, where apt puts flask-jwt-extended and werkzeug (a pyenv
// python earlier on PATH would not see them).
const python = "/usr/bin/python3"

// reference runs a Python reference script that answers one JSON line per JSON line. Without
// Python or the Debian packages the test fails in CI and is skipped, loudly, elsewhere.
type reference struct {
	t   *testing.T
	in  *json.Encoder
	out *bufio.Scanner
}

func startReference(t *testing.T, script string, modules ...string) *reference {
	t.Helper()
	check := exec.Command(python, "-c", "import "+strings.Join(modules, ", "))
	if out, err := check.CombinedOutput(); err != nil {
		msg := "reference implementation unavailable (apt-get install python3-python-flask-jwt-extended python3-jwt): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED, not run: " + msg)
	}
	cmd := exec.Command(python, script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	return &reference{t: t, in: json.NewEncoder(stdin), out: sc}
}

// ask sends one request and decodes the answer into out.
func (r *reference) ask(req, out any) {
	r.t.Helper()
	if err := r.in.Encode(req); err != nil {
		r.t.Fatal(err)
	}
	if !r.out.Scan() {
		r.t.Fatalf("reference exited: %v", r.out.Err())
	}
	if err := json.Unmarshal(r.out.Bytes(), out); err != nil {
		r.t.Fatalf("reference answer %q: %v", r.out.Text(), err)
	}
}

// latin1 carries arbitrary bytes through JSON as the code points U+0000..U+00FF, which is how
// WSGI hands header bytes to an application.
func latin1(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}
