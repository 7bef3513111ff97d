package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// buildModule builds the plugin as `make build` does: go build for wasip1, then the stub
// step. A build failure fails the test, in CI and locally alike.
func buildModule(t *testing.T) (raw, stubbed []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "jtiguard.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the module: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stubbed, err = wasmstub.StubImports(raw, map[string]int32{"wasi_snapshot_preview1.path_filestat_get": 52})
	if err != nil {
		t.Fatalf("stubbing: %v", err)
	}
	return raw, stubbed
}

// TestModuleImportsAndExports reads the built module and fails on any import Envoy does not
// provide, on either WASI surface, and on a missing callback the filter relies on.
func TestModuleImportsAndExports(t *testing.T) {
	ctx := context.Background()
	raw, stubbed := buildModule(t)
	for _, g := range []harness.WASIGeneration{harness.WASIEnvoy133, harness.WASICurrent} {
		if err := harness.CheckModule(ctx, stubbed, g); err != nil {
			t.Errorf("Envoy (%s) would refuse the module: %v", g, err)
		}
	}
	// The check can fail: the module as go build leaves it is refused by Envoy 1.33.
	err := harness.CheckModule(ctx, raw, harness.WASIEnvoy133)
	if !errors.Is(err, harness.ErrImportNotProvided) || !strings.Contains(err.Error(), "path_filestat_get") {
		t.Errorf("unstubbed module on envoy-1.33: %v; want path_filestat_get refused", err)
	}

	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, stubbed)
	if err != nil {
		t.Fatal(err)
	}
	exports := cm.ExportedFunctions()
	for _, name := range []string{
		"_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "proxy_on_context_create",
		"proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick", "proxy_on_http_call_response",
		"proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers",
		"proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers",
		"proxy_on_done", "proxy_on_log", "proxy_on_delete",
	} {
		if _, ok := exports[name]; !ok {
			t.Errorf("module does not export %s", name)
		}
	}
	for _, def := range cm.ImportedFunctions() {
		if mod, name, _ := def.Import(); mod == "wasi_snapshot_preview1" && name == "path_filestat_get" {
			t.Error("stubbed module still imports path_filestat_get")
		}
	}
}
