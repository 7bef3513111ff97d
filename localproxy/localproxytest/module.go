// Package localproxytest gives tests the real jtiguard module (through internal/moduletest)
// and small helpers around it (HS256 tokens, an envoy.yaml for ephemeral ports).
package localproxytest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jtiguard/jtiguard/internal/moduletest"
)

// Module returns the bytes of the real module (see internal/moduletest), or fails tb.
func Module(tb testing.TB) []byte {
	tb.Helper()
	return moduletest.Module(tb)
}

// ModuleInfo says where Module's bytes came from (for logs).
func ModuleInfo(tb testing.TB) string { return moduletest.Info(tb) }

// WriteModule writes the module into dir and returns its path.
func WriteModule(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "jtiguard.wasm")
	if err := os.WriteFile(p, Module(tb), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}
