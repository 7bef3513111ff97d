//go:build !linux

package harness

import "github.com/tetratelabs/wazero/experimental"

// reserveMemory is linux's only: elsewhere every memory is a growingMemory.
func reserveMemory(uint64) experimental.LinearMemory { return nil }
