package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

func TestGoPackage(t *testing.T) {
	for name, want := range map[string]string{
		"runtime.mallocgc":                                            "runtime",
		"runtime.__mheap_.allocSpan":                                  "runtime",
		"crypto_internal_fips140_nistec_fiat.p521Mul":                 "crypto_internal_fips140_nistec_fiat",
		"github.com_jtiguard_jtiguard_filter.__pluginContext_.OnTick": "github.com_jtiguard_jtiguard_filter",
		"vendor_golang.org_x_crypto_cryptobyte.__String_.ReadASN1":    "vendor_golang.org_x_crypto_cryptobyte",
		"golang.org_x_sys_unix.Syscall":                               "golang.org_x_sys_unix",
		"_rt0_wasm_wasip1":                                            "(no package: _rt0_wasm_wasip1)",
		"":                                                            "(unnamed)",
		"wasmstub.data_init":                                          "wasmstub",
		"type:.eq.struct { a int }":                                   "type:",
		"github.com_tetratelabs_proxy-wasm-go-sdk_proxywasm_types.Foo": "github.com_tetratelabs_proxy-wasm-go-sdk_proxywasm_types",
	} {
		if got := goPackage(name); got != want {
			t.Errorf("goPackage(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestNum(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1 000", 6385275: "6 385 275", -1234: "-1 234"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRealModuleBreakdown reads the real module (as make build makes it, and as go build leaves
// it) and checks that the breakdown accounts for every byte of the code and data sections and
// finds what docs/module-size.md says is there.
func TestRealModuleBreakdown(t *testing.T) {
	shipped := moduletest.Module(t)
	raw := moduletest.Build(t)
	for _, m := range []struct {
		name string
		wasm []byte
	}{{"go build", raw}, {"make build", shipped}} {
		a, err := analyze(m.name, m.wasm)
		if err != nil {
			t.Fatal(err)
		}
		if a.DataError != nil {
			t.Fatalf("%s: %v", m.name, a.DataError)
		}
		l := a.Layout
		// Code: the bodies add up to the code section less its header and count.
		code := 0
		for _, p := range a.Packages {
			code += p.Bytes
		}
		if overhead := l.Section("code") - code; overhead < 2 || overhead > 10 {
			t.Errorf("%s: packages add up to %d of a %d-byte code section", m.name, code, l.Section("code"))
		}
		pkgs := map[string]int{}
		for _, p := range a.Packages {
			pkgs[p.Name] = p.Bytes
		}
		for _, p := range []string{"runtime", "github.com_jtiguard_jtiguard_filter", "github.com_jtiguard_jtiguard_jwtverify", "crypto_internal_fips140_nistec_fiat"} {
			if pkgs[p] == 0 {
				t.Errorf("%s: no code of %s", m.name, p)
			}
		}
		for _, p := range []string{"crypto_x509", "net", "github.com_golang-jwt_jwt_v5", "github.com_golang_jwt_jwt_v5"} {
			if pkgs[p] != 0 {
				t.Errorf("%s: %d bytes of %s, which the filter no longer links", m.name, pkgs[p], p)
			}
		}
		// Data: the regions' bytes and headers add up to the data section less its header and count.
		data, regions := 0, map[string]dataUse{}
		for _, d := range a.Data {
			data += d.bytes + d.headers
			regions[d.name] = d
		}
		if overhead := l.Section("data") - data; overhead < 2 || overhead > 10 {
			t.Errorf("%s: regions add up to %d of a %d-byte data section", m.name, data, l.Section("data"))
		}
		ff := regions["findfunctab (PC to function lookup)"]
		for _, r := range []string{"pclntab: function names", "pclntab: pc-value tables", "type descriptors"} {
			if regions[r].bytes == 0 {
				t.Errorf("%s: region %q empty", m.name, r)
			}
		}
		switch m.name {
		case "go build":
			// Go's linker writes findfunctab as one tiny segment per 4096-PC bucket.
			if ff.segments < 10*len(l.Funcs) || ff.headers < 300_000 {
				t.Errorf("go build: findfunctab in %d segments, %d header bytes; docs/module-size.md expects ~16 per function", ff.segments, ff.headers)
			}
		case "make build":
			if ff.segments > len(l.Funcs) {
				t.Errorf("make build: findfunctab still in %d segments: not compacted", ff.segments)
			}
			named := false
			for _, f := range l.Funcs {
				named = named || f.Name == wasmstub.DataInitFunctionName
			}
			if !named {
				t.Errorf("make build: no %s function", wasmstub.DataInitFunctionName)
			}
		}
	}
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(nil, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("no arguments: %v", err)
	}
	if err := run([]string{"-top", "x", "m.wasm"}, &out); err == nil {
		t.Error("bad -top accepted")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.wasm")
	if err := os.WriteFile(bad, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{bad}, &out); err == nil || !strings.Contains(err.Error(), "bad.wasm") {
		t.Errorf("bad module: %v", err)
	}
	good := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(good, moduletest.Module(t), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run([]string{"-top", "3", good}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sections:", "code by Go package", "runtime", "data by Go region", "findfunctab", "largest functions:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
