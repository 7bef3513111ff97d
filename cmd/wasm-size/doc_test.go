//go:build long

package main

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

// docCommands are the shell commands of docs/module-size.md: the lines of its ```sh blocks.
func docCommands(t *testing.T) []string {
	f, err := os.Open("../../docs/module-size.md")
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
		t.Fatal("docs/module-size.md has no ```sh commands")
	}
	return cmds
}

// TestDocCommands runs every command of docs/module-size.md from the repository root, in order
// (benchmarks for one iteration), and checks the one claim the docs make of the build: make
// build's module is smaller than go build's by the compacted findfunctab.
func TestDocCommands(t *testing.T) {
	if os.Getenv("WASM_SIZE_DOC_COMMANDS") != "" {
		t.Skip("already running the docs' commands") // the docs run this package's tests
	}
	if runtime.GOOS == "wasip1" {
		t.Skip("needs a shell")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range docCommands(t) {
		run := c
		if strings.Contains(c, " -bench ") {
			run += " -benchtime=1x"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", run)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "WASM_SIZE_DOC_COMMANDS=1",
			"PATH="+filepath.Join(runtime.GOROOT(), "bin")+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n%s", run, err, out)
		}
	}
	built, err1 := os.Stat(filepath.Join(root, "build", "jtiguard.wasm"))
	raw, err2 := os.Stat(filepath.Join(root, "build", "module-go-build.wasm"))
	if err1 != nil || err2 != nil {
		t.Fatalf("the docs' commands did not build both modules: %v, %v", err1, err2)
	}
	if saved := raw.Size() - built.Size(); saved < 300_000 {
		t.Errorf("make build's module is %d bytes, go build's %d: the compaction the docs describe saved only %d", built.Size(), raw.Size(), saved)
	}
}
