package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// A module importing a.x and a.y, both () -> i32, with no functions of its own.
var twoImports = []byte("\x00asm\x01\x00\x00\x00" +
	"\x01\x05\x01\x60\x00\x01\x7f" + // type section: () -> i32
	"\x02\x0d\x02\x01a\x01x\x00\x00\x01a\x01y\x00\x00") // import section: a.x, a.y

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		args    func(in string) []string
		wantErr string
		wantOut string
	}{
		{"in place", func(in string) []string { return []string{"-in", in, "-out", in, "-stub", "a.x=52"} }, "", "stubbed a.x: now returns 52\n"},
		{"two stubs, hex errno", func(in string) []string {
			return []string{"-in", in, "-out", in, "-stub", "a.y=0x10", "-stub", "a.x=-1"}
		}, "", "stubbed a.x: now returns -1\nstubbed a.y: now returns 16\n"},
		{"stub, then compact", func(in string) []string {
			return []string{"-in", in, "-out", in, "-stub", "a.x=52", "-compact-data"}
		}, "", "stubbed a.x: now returns 52\ncompacted data: 0 segments -> 0 (0 runs"},
		{"compact only", func(in string) []string { return []string{"-in", in, "-out", in, "-compact-data"} }, "", "compacted data: 0 segments -> 0 (0 runs"},
		{"absent import", func(in string) []string { return []string{"-in", in, "-out", in, "-stub", "a.z=52"} }, "no such function import", ""},
		{"no stub", func(in string) []string { return []string{"-in", in, "-out", in} }, "usage", ""},
		{"bad stub", func(in string) []string { return []string{"-in", in, "-out", in, "-stub", "a.x"} }, "module.name=errno", ""},
		{"errno out of range", func(in string) []string { return []string{"-in", in, "-out", in, "-stub", "a.x=4294967296"} }, "errno", ""},
		{"duplicate stub", func(in string) []string { return []string{"-in", in, "-out", in, "-stub", "a.x=1", "-stub", "a.x=2"} }, "twice", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "m.wasm")
			if err := os.WriteFile(in, twoImports, 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := run(tc.args(in), &out)
			got, rerr := os.ReadFile(in)
			if rerr != nil {
				t.Fatal(rerr)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the module (temp file left behind?)", len(entries))
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if !bytes.Equal(got, twoImports) {
					t.Error("module changed although the run failed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(out.String(), tc.wantOut) {
				t.Errorf("output %q, want prefix %q", out.String(), tc.wantOut)
			}
			// Every stub is gone from the imports: stubbing any of them again finds nothing.
			for _, arg := range tc.args(in) {
				if name, _, ok := strings.Cut(arg, "="); ok {
					if _, err := wasmstub.StubImports(got, map[string]int32{name: 0}); !errors.Is(err, wasmstub.ErrNotFound) {
						t.Errorf("%s still imported: %v", name, err)
					}
				}
			}
		})
	}
}
