package main

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// TestModuleImportsAndExports reads the built module and fails on any import Envoy does not
// provide, on either WASI surface, and on a missing callback the filter relies on.
func TestModuleImportsAndExports(t *testing.T) {
	ctx := context.Background()
	raw := moduletest.Build(t)
	stubbed, err := wasmstub.StubImports(raw, wasmstub.EnvoyStubs)
	if err != nil {
		t.Fatalf("stubbing: %v", err)
	}
	for _, g := range []harness.WASIGeneration{harness.WASIEnvoy133, harness.WASICurrent} {
		if err := harness.CheckModule(ctx, stubbed, g); err != nil {
			t.Errorf("Envoy (%s) would refuse the module: %v", g, err)
		}
	}
	// net (through golang-jwt and crypto/x509) once made the module import path_filestat_get,
	// which Envoy before mid-2026 lacks. The verifier keeps them out now; so must every change.
	rawCM, err := wazero.NewRuntime(ctx).CompileModule(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range rawCM.ImportedFunctions() {
		if mod, name, _ := def.Import(); name == "path_filestat_get" {
			t.Errorf("the module imports %s.%s again: something links net (crypto/x509?) back in", mod, name)
		}
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
		mod, name, _ := def.Import()
		if _, stubbed := wasmstub.EnvoyStubs[mod+"."+name]; stubbed {
			t.Errorf("stubbed module still imports %s.%s", mod, name)
		}
	}
}
