package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/localproxy"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestRunErrors: bad flags are usage errors; a bad bootstrap surfaces localproxy's sentinel.
func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"-wasi", "envoy-1.20"}, errUsage},
		{[]string{"-workers", "0"}, errUsage},
		{[]string{"-wasm-log-level", "loud"}, errUsage},
		{[]string{"-nope"}, errUsage},
		{[]string{"-config", "/nonexistent/envoy.yaml"}, localproxy.ErrConfig},
	} {
		if err := run(tc.args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, tc.want) {
			t.Errorf("run(%q) = %v; want %v", tc.args, err, tc.want)
		}
	}
}

// TestValidate: -validate loads the bootstrap and the module and exits with Envoy's message,
// without listening; a bootstrap whose module does not exist fails.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	wasm := localproxytest.WriteModule(t, dir)
	cfg := localproxytest.WriteEnvoyYAML(t, dir, "filename: build/jtiguard.wasm", "filename: "+wasm)
	var out bytes.Buffer
	if err := run([]string{"-config", cfg, "-validate"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if want := "configuration '" + cfg + "' OK"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q lacks %q", out.String(), want)
	}
	bad := localproxytest.WriteEnvoyYAML(t, t.TempDir(), "filename: build/jtiguard.wasm", "filename: /nonexistent.wasm")
	if err := run([]string{"-config", bad, "-validate"}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, localproxy.ErrModule) {
		t.Errorf("missing module: %v, want ErrModule", err)
	}
}
