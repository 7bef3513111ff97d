// Package localproxytest gives tests the real jtiguard module and small helpers around it
// (HS256 tokens, an envoy.yaml for ephemeral ports).
//
// Tests must prove the code in the work tree, not whatever module was built last, so outside
// CI the module is built afresh (once per test binary) into a temporary directory, followed by
// the same import-stubbing step as `make build` when cmd/wasm-stub-imports exists: without it
// the module imports path_filestat_get, which Envoy 1.33 lacks. Under CI=true the module that
// `make build` produced (build/jtiguard.wasm) is used, and its absence fails the test: a
// skipped end-to-end test would let a broken build land.
package localproxytest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Sentinel errors, wrapped with detail.
var (
	// ErrNoRepo: no go.mod above the working directory.
	ErrNoRepo = errors.New("repository root not found")
	// ErrModuleMissing: CI=true and the built module is absent.
	ErrModuleMissing = errors.New("jtiguard module missing")
	// ErrModuleBuild: building or stubbing the module failed.
	ErrModuleBuild = errors.New("jtiguard module build failed")
)

// StubArgs are the -stub arguments of `make build` (Makefile WASM_STUBS): imports the module
// links but never calls, which Envoy's host lacks before proxy-wasm-cpp-host 94091cd.
var StubArgs = []string{"-stub", "wasi_snapshot_preview1.path_filestat_get=52"}

var (
	once    sync.Once
	modWasm []byte
	modInfo string
	modErr  error
)

// Module returns the bytes of the real module, or fails tb. See the package doc for where
// they come from; JTIGUARD_WASM names a file to use instead.
func Module(tb testing.TB) []byte {
	tb.Helper()
	once.Do(func() { modWasm, modInfo, modErr = load() })
	if modErr != nil {
		tb.Fatal(modErr)
	}
	return modWasm
}

// ModuleInfo says where Module's bytes came from (for logs).
func ModuleInfo(tb testing.TB) string {
	Module(tb)
	return modInfo
}

// WriteModule writes the module into dir and returns its path.
func WriteModule(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "jtiguard.wasm")
	if err := os.WriteFile(p, Module(tb), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

// RepoRoot returns the directory of the module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoRepo, err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNoRepo
		}
		dir = parent
	}
}

func load() ([]byte, string, error) {
	if p := os.Getenv("JTIGUARD_WASM"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%w: JTIGUARD_WASM: %w", ErrModuleMissing, err)
		}
		return b, p + " (JTIGUARD_WASM)", nil
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, "", err
	}
	if os.Getenv("CI") == "true" {
		p := filepath.Join(root, "build", "jtiguard.wasm")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s is missing and CI=true (run `make build` first): %w", ErrModuleMissing, p, err)
		}
		return b, p + " (CI)", nil
	}
	dir, err := os.MkdirTemp("", "jtiguard-module-")
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrModuleBuild, err)
	}
	defer os.RemoveAll(dir)
	raw := filepath.Join(dir, "raw.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", raw, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("%w: go build: %w\n%s", ErrModuleBuild, err, out)
	}
	final, info := raw, "built from the work tree, no stub step (cmd/wasm-stub-imports absent)"
	if _, err := os.Stat(filepath.Join(root, "cmd", "wasm-stub-imports", "main.go")); err == nil {
		final = filepath.Join(dir, "jtiguard.wasm")
		args := append([]string{"run", "./cmd/wasm-stub-imports", "-in", raw, "-out", final}, StubArgs...)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("%w: wasm-stub-imports: %w\n%s", ErrModuleBuild, err, out)
		}
		info = "built from the work tree and stubbed like `make build`"
	}
	b, err := os.ReadFile(final)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrModuleBuild, err)
	}
	return b, info, nil
}
