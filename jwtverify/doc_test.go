package jwtverify_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The module must not link golang-jwt, crypto/x509 (which brings net) or net/url through
// this package.
func TestNoHeavyDependencies(t *testing.T) {
	if runtime.GOOS == "wasip1" {
		t.Skip("needs the go command")
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps gave %q", out)
	}
	for _, d := range deps {
		switch d {
		case "net", "net/url", "crypto/x509", "github.com/golang-jwt/jwt/v5":
			t.Errorf("jwtverify on wasip1 depends on %s", d)
		}
	}
}

// docCommands are the shell commands in docs/verifier.md (the lines of its ```sh blocks).
func docCommands(t *testing.T) []string {
	f, err := os.Open("../docs/verifier.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```sh":
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#"):
			cmds = append(cmds, line)
		}
	}
	if len(cmds) == 0 {
		t.Fatal("docs/verifier.md has no ```sh commands")
	}
	return cmds
}
