// Command jtiguard is the proxy-wasm module: build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o build/jtiguard.wasm .
//
// The host calls _initialize (which runs init) and never main.
package main

import (
	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/internal/abi"
)

func main() {}

func init() { abi.SetVMContext(filter.NewVMContext()) }
