package harness

import (
	"context"

	"github.com/tetratelabs/wazero/api"
)

// read copies size bytes at ptr out of guest memory. A zero size is an
// empty value whatever the pointer, as in proxy-wasm-cpp-host's getMemory.
func read(mod api.Module, ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return []byte{}, true
	}
	b, ok := mod.Memory().Read(ptr, size)
	if !ok {
		return nil, false
	}
	return append([]byte{}, b...), true
}

func readString(mod api.Module, ptr, size uint32) (string, bool) {
	b, ok := read(mod, ptr, size)
	return string(b), ok
}

func writeU32(mod api.Module, ptr, v uint32) bool { return mod.Memory().WriteUint32Le(ptr, v) }

func writeU64(mod api.Module, ptr uint32, v uint64) bool { return mod.Memory().WriteUint64Le(ptr, v) }

// copyOut is WasmBase::copyToPointerSize: the value is copied into memory
// obtained from the guest allocator, then its address and size are written
// to ptrPtr and sizePtr. An empty value is (0, 0) without an allocation.
//
//	guest:  ptrPtr ──► [u32 addr]   sizePtr ──► [u32 len]
//	                      │
//	                      └──► addr: len bytes allocated by proxy_on_memory_allocate
func (v *VM) copyOut(ctx context.Context, mod api.Module, data []byte, ptrPtr, sizePtr uint32) Status {
	var addr uint32
	if len(data) > 0 {
		addr = v.alloc(ctx, uint32(len(data)))
		if addr == 0 || !mod.Memory().Write(addr, data) {
			return StatusInvalidMemoryAccess
		}
	}
	if !writeU32(mod, ptrPtr, addr) || !writeU32(mod, sizePtr, uint32(len(data))) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

// copyOutPairs is cpp-host's exportPairs: the map is marshalled straight into the memory the
// guest allocator returns, with no copy in between. An empty map is (0, 0).
func (v *VM) copyOutPairs(ctx context.Context, mod api.Module, p Pairs, ptrPtr, sizePtr uint32) Status {
	var addr, size uint32
	if len(p) > 0 {
		size = uint32(pairsSize(p))
		addr = v.alloc(ctx, size)
		buf, ok := mod.Memory().Read(addr, size) // a view of guest memory
		if addr == 0 || !ok {
			return StatusInvalidMemoryAccess
		}
		marshalPairs(buf, p)
	}
	if !writeU32(mod, ptrPtr, addr) || !writeU32(mod, sizePtr, size) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}
