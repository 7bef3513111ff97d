//go:build long

package jwtverify_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

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
			run += " -fuzztime=5000x" // a count: a duration can end in a spurious deadline error (go.dev/issue/75804)
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
