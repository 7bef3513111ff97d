//go:build linux

package harness

import (
	"runtime"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// reservedMemory is a linear memory reserved as inaccessible address space (no memory is
// committed for it) and made readable and writable up to the size the module has grown to.
// Its address never changes, and pages the module has not touched cost nothing.
type reservedMemory struct {
	*mapping
	accessible uint64 // bytes of mem made readable and writable, from its start
}

// mapping is the reservation itself, apart from reservedMemory so that a cleanup can unmap it
// when a harness that was never closed is collected (wazero calls Free only on close).
type mapping struct{ mem []byte }

func (m *mapping) unmap() {
	if m.mem != nil {
		_ = syscall.Munmap(m.mem)
		m.mem = nil
	}
}

// reserveMemory reserves maxBytes, or returns nil if it cannot.
func reserveMemory(maxBytes uint64) experimental.LinearMemory {
	if maxBytes == 0 || maxBytes > uint64(^uint(0)>>1) {
		return nil
	}
	mem, err := syscall.Mmap(-1, 0, int(maxBytes), syscall.PROT_NONE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil
	}
	m := &reservedMemory{mapping: &mapping{mem: mem}}
	runtime.AddCleanup(m, (*mapping).unmap, m.mapping)
	return m
}

// Reallocate makes the memory size bytes long. wazero asks only for whole wasm pages
// (64 KiB, a multiple of the OS page), never for less than before; a size past the
// reservation, or pages the OS refuses, fail the grow (memory.grow returns -1).
func (m *reservedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.mem)) {
		return nil
	}
	if size > m.accessible {
		if err := syscall.Mprotect(m.mem[m.accessible:size], syscall.PROT_READ|syscall.PROT_WRITE); err != nil {
			return nil
		}
		m.accessible = size
	}
	return m.mem[:size:size]
}

// Free unmaps the memory; wazero calls it when the module is closed (Harness.Close makes sure
// no call runs then or later).
func (m *reservedMemory) Free() {
	m.unmap()
	m.accessible = 0
}
