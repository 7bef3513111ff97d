// Command wasm-stub-imports replaces function imports of a WebAssembly module with local stubs that
// return a fixed errno. The jtiguard build runs it after `go build` so that the module answers
// itself the WASI calls older Envoy hosts lack or answer fatally (see wasmstub.EnvoyStubs):
//
//	go run ./cmd/wasm-stub-imports -in build/jtiguard.wasm -out build/jtiguard.wasm -envoy -compact-data
//
// -envoy applies wasmstub.EnvoyStubs (poll_oneoff); -stub may be repeated. -compact-data then
// replaces the runs of tiny data segments Go's linker writes for findfunctab with a start
// function that writes the same bytes (wasmstub.CompactData; docs/module-size.md). The output is
// written to a temporary file beside it and renamed into place, so -out may equal -in and a
// failed run never leaves a truncated module behind.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// stubFlags collects repeated -stub module.name=errno values.
type stubFlags map[string]int32

func (s stubFlags) String() string {
	keys := make([]string, 0, len(s))
	for k, v := range s {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (s stubFlags) Set(v string) error {
	i := strings.LastIndex(v, "=")
	if i < 0 {
		return errors.New("want module.name=errno")
	}
	name, num := v[:i], v[i+1:]
	if !strings.Contains(name, ".") {
		return fmt.Errorf("%q: want module.name", name)
	}
	errno, err := strconv.ParseInt(num, 0, 32)
	if err != nil {
		return fmt.Errorf("errno %q: %w", num, err)
	}
	if _, dup := s[name]; dup {
		return fmt.Errorf("%s given twice", name)
	}
	s[name] = int32(errno)
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wasm-stub-imports:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("wasm-stub-imports", flag.ContinueOnError)
	in := fs.String("in", "", "input module")
	out := fs.String("out", "", "output module (may equal -in)")
	stubs := stubFlags{}
	fs.Var(stubs, "stub", "module.name=errno: replace that function import with a stub returning errno (repeatable)")
	envoy := fs.Bool("envoy", false, "add the stubs jtiguard's module needs on Envoy (wasmstub.EnvoyStubs)")
	compact := fs.Bool("compact-data", false, "then replace runs of tiny data segments with a start function (wasmstub.CompactData)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *envoy {
		for name, errno := range wasmstub.EnvoyStubs {
			if _, dup := stubs[name]; !dup {
				stubs[name] = errno
			}
		}
	}
	if *in == "" || *out == "" || (len(stubs) == 0 && !*compact) || fs.NArg() != 0 {
		return errors.New("usage: wasm-stub-imports -in IN.wasm -out OUT.wasm [-envoy] [-stub module.name=errno ...] [-compact-data]")
	}
	src, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	dst := src
	if len(stubs) > 0 {
		if dst, err = wasmstub.StubImports(src, stubs); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
	}
	var st wasmstub.CompactStats
	if *compact {
		if dst, st, err = wasmstub.CompactData(dst); err != nil {
			return fmt.Errorf("%s: %w", *in, err)
		}
	}
	if err := writeAtomic(*out, dst); err != nil {
		return err
	}
	names := make([]string, 0, len(stubs))
	for k := range stubs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(stdout, "stubbed %s: now returns %d\n", k, stubs[k])
	}
	if *compact {
		fmt.Fprintf(stdout, "compacted data: %d segments -> %d (%d runs written by %s)\n",
			st.SegmentsBefore, st.SegmentsAfter, st.Runs, wasmstub.DataInitFunctionName)
	}
	fmt.Fprintf(stdout, "%s: %d bytes -> %s: %d bytes\n", *in, len(src), *out, len(dst))
	return nil
}

// writeAtomic writes data beside path and renames it over path, so readers (and a build that is
// interrupted) see either the old module or the complete new one.
func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
