// Package moduletest gives tests the real jtiguard module, built the way `make build` builds it.
//
// Tests must prove the code in the work tree, not whatever module was built last, so outside
// CI the module is built afresh (once per test binary) into a temporary directory, stubbed
// with wasmstub.EnvoyStubs and compacted with wasmstub.CompactData. Under CI=true the module that `make build` produced
// (build/jtiguard.wasm) is used, and its absence fails the test: a skipped module test would
// let a broken build land. JTIGUARD_WASM names a file to use instead.
package moduletest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// Sentinel errors, wrapped with detail.
var (
	ErrNoRepo        = errors.New("repository root not found")
	ErrModuleMissing = errors.New("jtiguard module missing")
	ErrModuleBuild   = errors.New("jtiguard module build failed")
)

var (
	once    sync.Once
	modWasm []byte
	modInfo string
	modErr  error
)

// Module returns the bytes of the real module, or fails tb.
func Module(tb testing.TB) []byte {
	tb.Helper()
	once.Do(func() { modWasm, modInfo, modErr = load() })
	if modErr != nil {
		tb.Fatal(modErr)
	}
	return modWasm
}

// Info says where Module's bytes came from (for logs).
func Info(tb testing.TB) string {
	Module(tb)
	return modInfo
}

// Build runs `go build` for wasip1 on the repository, with optional build tags, and returns
// the module as the Go toolchain leaves it, before any stub step.
func Build(tb testing.TB, tags ...string) []byte {
	tb.Helper()
	b, err := build(tags...)
	if err != nil {
		tb.Fatal(err)
	}
	return b
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

// BuildPackage builds the command in dir (relative to the repository root) for wasip1 as
// `make build` builds the module: c-shared, stubbed with wasmstub.EnvoyStubs, compacted. For
// the other modules the tests measure beside it (e2e/floormodule).
func BuildPackage(tb testing.TB, dir string) []byte {
	tb.Helper()
	raw, err := buildDir(dir)
	if err == nil {
		raw, err = wasmstub.StubImports(raw, wasmstub.EnvoyStubs)
	}
	if err == nil {
		raw, _, err = wasmstub.CompactData(raw)
	}
	if err != nil {
		tb.Fatalf("%v: %s: %v", ErrModuleBuild, dir, err)
	}
	return raw
}

func build(tags ...string) ([]byte, error) { return buildDir(".", tags...) }

func buildDir(pkg string, tags ...string) ([]byte, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "jtiguard-module-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModuleBuild, err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "jtiguard.wasm")
	args := []string{"build", "-buildmode=c-shared", "-trimpath", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	target := "."
	if pkg = filepath.ToSlash(filepath.Clean(pkg)); pkg != "." {
		target = "./" + pkg
	}
	cmd := exec.Command("go", append(args, target)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: go build: %w\n%s", ErrModuleBuild, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModuleBuild, err)
	}
	return b, nil
}

func load() ([]byte, string, error) {
	if p := os.Getenv("JTIGUARD_WASM"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%w: JTIGUARD_WASM: %w", ErrModuleMissing, err)
		}
		return b, p + " (JTIGUARD_WASM)", nil
	}
	if os.Getenv("CI") == "true" {
		root, err := RepoRoot()
		if err != nil {
			return nil, "", err
		}
		p := filepath.Join(root, "build", "jtiguard.wasm")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s is missing and CI=true (run `make build` first): %w", ErrModuleMissing, p, err)
		}
		return b, p + " (CI: make build)", nil
	}
	raw, err := build()
	if err != nil {
		return nil, "", err
	}
	b, err := wasmstub.StubImports(raw, wasmstub.EnvoyStubs)
	if err != nil {
		return nil, "", fmt.Errorf("%w: stub: %w", ErrModuleBuild, err)
	}
	if b, _, err = wasmstub.CompactData(b); err != nil {
		return nil, "", fmt.Errorf("%w: compact data: %w", ErrModuleBuild, err)
	}
	return b, "built from the work tree, stubbed and compacted like `make build`", nil
}
