package jwtverify_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// The size probes of docs/verifier.md ("Module size"), built by the docs' commands into build/.

var probes = []string{"baseline", "jwtverify", "golangjwt"}

func probePath(name string) string { return filepath.Join("..", "build", "sizeprobe-"+name+".wasm") }

// wasmLayout is a module's code by Go package (from the name section) and its data size.
type wasmLayout struct {
	code, data int
	byPackage  map[string]int
}

func uvarint(b []byte, i *int) int {
	v, n := binary.Uvarint(b[*i:])
	if n <= 0 {
		panic("bad LEB128")
	}
	*i += n
	return int(v)
}

// readWasmLayout walks the sections of a wasm binary: imports (to number functions), code
// (each body's size) and the "name" custom section (each function's Go name).
func readWasmLayout(b []byte) (l wasmLayout, err error) {
	defer func() {
		if recover() != nil {
			err = errors.New("malformed wasm")
		}
	}()
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return l, errors.New("not wasm")
	}
	var imported int
	var bodies []int
	names := map[int]string{}
	for i := 8; i < len(b); {
		id := b[i]
		i++
		size := uvarint(b, &i)
		end := i + size
		j := i
		switch id {
		case 2: // imports: count the functions
			for n := uvarint(b, &j); n > 0; n-- {
				j += uvarint(b, &j)
				j += uvarint(b, &j)
				kind := b[j]
				j++
				switch kind {
				case 0:
					uvarint(b, &j)
					imported++
				case 1:
					j++
					fallthrough
				case 2:
					flags := b[j]
					j++
					uvarint(b, &j)
					if flags&1 == 1 {
						uvarint(b, &j)
					}
				case 3:
					j += 2
				}
			}
		case 10: // code
			for n := uvarint(b, &j); n > 0; n-- {
				size := uvarint(b, &j)
				bodies = append(bodies, size)
				j += size
			}
		case 11:
			l.data += size
		case 0: // custom: "name", subsection 1 = function names
			n := uvarint(b, &j)
			if string(b[j:j+n]) != "name" {
				break
			}
			j += n
			for j < end {
				sub := b[j]
				j++
				ssize := uvarint(b, &j)
				next := j + ssize
				if sub == 1 {
					for count := uvarint(b, &j); count > 0; count-- {
						idx := uvarint(b, &j)
						n := uvarint(b, &j)
						names[idx] = string(b[j : j+n])
						j += n
					}
				}
				j = next
			}
		}
		i = end
	}
	l.byPackage = map[string]int{}
	for k, size := range bodies {
		l.byPackage[goPackage(names[imported+k])] += size
		l.code += size
	}
	return l, nil
}

// goPackage is the package of a Go function's wasm name ("crypto_x509.ParseCertificate",
// "github.com_jtiguard_jtiguard_jwtverify.New"): Go writes "/" and "-" as "_" there.
func goPackage(name string) string {
	rest := name
	prefix := ""
	for _, domain := range []string{"github.com_", "golang.org_", "vendor_golang.org_"} {
		if strings.HasPrefix(name, domain) {
			prefix, rest = domain, name[len(domain):]
		}
	}
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest = rest[:i]
	}
	return prefix + rest
}

// TestProbeBreakdown reports each probe's code by package and checks what the docs say of
// them: the jwtverify probe links no crypto/x509, net or golang-jwt code; the golang-jwt
// probe does.
func TestProbeBreakdown(t *testing.T) {
	for _, name := range probes {
		b, err := os.ReadFile(probePath(name))
		if err != nil {
			t.Skipf("SKIPPED: %v (the commands of docs/verifier.md, \"Module size\", build it)", err)
		}
		l, err := readWasmLayout(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		type kv struct {
			pkg  string
			size int
		}
		var list []kv
		for p, s := range l.byPackage {
			list = append(list, kv{p, s})
		}
		slices.SortFunc(list, func(a, b kv) int { return b.size - a.size })
		var top []string
		for _, e := range list[:min(len(list), 20)] {
			top = append(top, fmt.Sprintf("%s %d", e.pkg, e.size))
		}
		t.Logf("%s: %d bytes, code %d, data %d; largest: %s", name, len(b), l.code, l.data, strings.Join(top, ", "))
		heavy := l.byPackage["crypto_x509"] + l.byPackage["github.com_golang_jwt_jwt_v5"] + l.byPackage["net"]
		switch name {
		case "jwtverify":
			if heavy != 0 || l.byPackage["github.com_jtiguard_jtiguard_jwtverify"] == 0 {
				t.Errorf("jwtverify probe: %d bytes of crypto/x509, net or golang-jwt code; jwtverify %d", heavy, l.byPackage["github.com_jtiguard_jtiguard_jwtverify"])
			}
		case "golangjwt":
			if l.byPackage["crypto_x509"] == 0 || l.byPackage["github.com_golang_jwt_jwt_v5"] == 0 {
				t.Errorf("golang-jwt probe without crypto/x509 or golang-jwt code: the breakdown is wrong")
			}
		}
	}
}

// BenchmarkProbeCompile: how long wazero's compiler takes for each probe, the largest part of
// a VM's start.
func BenchmarkProbeCompile(b *testing.B) {
	if runtime.GOOS == "wasip1" {
		b.Skip("compiles wasm natively")
	}
	for _, name := range probes {
		bin, err := os.ReadFile(probePath(name))
		if err != nil {
			b.Skipf("SKIPPED: %v (the commands of docs/verifier.md, \"Module size\", build it)", err)
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
				if _, err := r.CompileModule(ctx, bin); err != nil {
					b.Fatal(err)
				}
				_ = r.Close(ctx)
			}
		})
	}
}
