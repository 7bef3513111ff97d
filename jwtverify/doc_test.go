package jwtverify_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
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

// Every command in docs/verifier.md runs and succeeds, from the repository root: benchmarks
// with one iteration, the fuzzer for a few seconds, and the module-size probes, whose result
// the docs quote, are built and compared.
func TestDocCommands(t *testing.T) {
	if os.Getenv("JWTVERIFY_DOC_COMMANDS") != "" {
		t.Skip("already running the docs' commands") // `go test ./jwtverify` is one of them
	}
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds wasm modules and runs benchmarks (about 2 minutes)")
	}
	if runtime.GOOS == "wasip1" {
		t.Skip("needs a shell")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range docCommands(t) {
		run := c
		switch {
		case strings.Contains(c, " -bench "):
			run += " -benchtime=1x"
		case strings.Contains(c, " -fuzz "):
			run += " -fuzztime=3s"
		}
		t.Run(c, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", run)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "JWTVERIFY_DOC_COMMANDS=1", "PATH="+filepath.Join(runtime.GOROOT(), "bin")+":"+os.Getenv("PATH"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", run, err, out)
			}
		})
	}
	sizes := map[string]int64{}
	for _, probe := range []string{"baseline", "jwtverify", "golangjwt"} {
		fi, err := os.Stat(filepath.Join(root, "build", "sizeprobe-"+probe+".wasm"))
		if err != nil {
			t.Fatalf("the docs' size probe commands did not build %s: %v", probe, err)
		}
		sizes[probe] = fi.Size()
	}
	t.Logf("module sizes: %v", sizes)
	if !(sizes["baseline"] < sizes["jwtverify"] && sizes["jwtverify"] < sizes["golangjwt"]) {
		t.Errorf("module sizes %v: want baseline < jwtverify < golangjwt", sizes)
	}
}
