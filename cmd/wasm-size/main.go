// Command wasm-size breaks a Go WebAssembly module's size down: by section, its code by Go package
// (from the "name" section), its data by the regions Go's linker lays out (pclntab, findfunctab,
// type descriptors, ...) and its largest functions. docs/module-size.md is built from its output:
//
//	go run ./cmd/wasm-size build/jtiguard.wasm
//	go run ./cmd/wasm-size -top 40 build/a.wasm build/b.wasm
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wasm-size:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wasm-size", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	top := fs.Int("top", 25, "how many packages and functions to list")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w (usage: wasm-size [-top N] module.wasm...)", err)
	}
	if fs.NArg() == 0 || *top < 0 {
		return fmt.Errorf("usage: wasm-size [-top N] module.wasm...")
	}
	for i, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		a, err := analyze(path, b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		a.write(out, *top)
	}
	return nil
}
