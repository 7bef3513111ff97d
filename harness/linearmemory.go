package harness

import "github.com/tetratelabs/wazero/experimental"

// A VM's linear memory is reserved whole when the VM is made and grows in place, as in V8
// and the other engines proxy-wasm-cpp-host embeds: they reserve the memory's maximum as
// address space and make pages accessible as memory.grow asks for them, so a grow costs the
// new pages and nothing else.
//
// wazero's default backs a memory with a Go slice: a grow past its capacity allocates a new
// slice and copies the whole memory into it, and the old one becomes garbage of the host's
// heap. Go's runtime in the module grows its heap step by step, so a module growing to
// 50 MiB copied about its size several times over: on this project's machine, single
// requests of the benchmarks stalled 0.1–0.9 s on such grows, and the host's collections
// of the copies spent seconds trying to stop the goroutine running the module's code.
// Neither happens under Envoy (docs/benchmarks.md, "The harness's memory and the ticks").
//
// memoryAllocator reserves with reserveMemory where the platform has it (linux) and falls
// back to growingMemory, wazero's own behaviour, where it does not or the reservation fails.
var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(
	func(capBytes, maxBytes uint64) experimental.LinearMemory {
		if m := reserveMemory(maxBytes); m != nil {
			return m
		}
		return growingAllocator(capBytes, maxBytes)
	})

// growingAllocator makes growingMemory: wazero's own behaviour, as an allocator.
func growingAllocator(capBytes, _ uint64) experimental.LinearMemory {
	return &growingMemory{buf: make([]byte, 0, capBytes)}
}

// growingMemory is a memory backed by a Go slice that grows by append, as wazero's default.
type growingMemory struct{ buf []byte }

func (m *growingMemory) Reallocate(size uint64) []byte {
	if n := uint64(len(m.buf)); size > n {
		m.buf = append(m.buf, make([]byte, size-n)...)
	}
	return m.buf[:size]
}

func (m *growingMemory) Free() { m.buf = nil }
