package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestDemoSteps runs what `make run` runs, on free loopback ports and with a 1s sync
// interval instead of envoy.yaml's 5s, and checks the person would see 200, the
// revocation, then 401 — and that the process stops cleanly afterwards.
func TestDemoSteps(t *testing.T) {
	dir := t.TempDir()
	wasm := localproxytest.WriteModule(t, dir)
	cfg := localproxytest.WriteEnvoyYAML(t, dir,
		"filename: build/jtiguard.wasm", "filename: "+wasm,
		"port_value: 8080", "port_value: "+localproxytest.Port(t, localproxytest.FreeAddr(t)),
		"port_value: 8081", "port_value: "+localproxytest.Port(t, localproxytest.FreeAddr(t)),
		`"interval": "5s"`, `"interval": "1s"`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"-config", cfg, "-listen", localproxytest.FreeAddr(t), "-exit-after-steps"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{
		"curl -i -H \"Authorization: Bearer $TOKEN\"",
		"/v1/admin/revocations",
		"1. GET ", "→ 200 ",
		"2. POST ", "{jti} → 200 ",
		"3. GET ", `→ 401 {"msg":"Token has been revoked"}`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-wasi", "envoy-1.33", "-workers", "4"}, true},
		{[]string{"-wasi", "envoy-1.20"}, false},
		{[]string{"-nope"}, false},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{})
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q) = %v; want ok=%v", tc.args, err, tc.ok)
		}
	}
}
