package main

import (
	"bytes"
	"errors"
	"testing"

	"github.com/jtiguard/jtiguard/localproxy"
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
		if err := run(tc.args, &bytes.Buffer{}); !errors.Is(err, tc.want) {
			t.Errorf("run(%q) = %v; want %v", tc.args, err, tc.want)
		}
	}
}
