package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// ErrNoGoModuledata reports a module whose data holds no Go runtime.moduledata this tool can read:
// not a Go module, or a Go version whose layout differs from the one below.
var ErrNoGoModuledata = errors.New("no Go moduledata found")

// memImage is the initial linear memory that a module's active data segments write, kept sparse:
// bytes no segment covers are zero, as wasm memory starts.
type memImage []wasmstub.DataSegment // sorted by offset, as wasmstub.Inspect returns them

func (m memImage) at(addr uint64) (seg int, ok bool) {
	i := sort.Search(len(m), func(i int) bool { return m[i].Offset+uint64(len(m[i].Bytes)) > addr })
	if i < len(m) && m[i].Offset <= addr {
		return i, true
	}
	return i, false
}

func (m memImage) read(addr uint64, n int) []byte {
	out := make([]byte, n)
	for k := range out {
		if i, ok := m.at(addr + uint64(k)); ok {
			out[k] = m[i].Bytes[addr+uint64(k)-m[i].Offset]
		}
	}
	return out
}

// flat is the image from address 0 to its last initialised byte.
func (m memImage) flat() []byte {
	if len(m) == 0 {
		return nil
	}
	last := m[len(m)-1]
	out := make([]byte, last.Offset+uint64(len(last.Bytes)))
	for _, s := range m {
		copy(out[s.Offset:], s.Bytes)
	}
	return out
}

// indexOnce returns the address of the last occurrence of pat in b and how many there are.
func indexOnce(b, pat []byte) (addr uint64, n int) {
	for i := 0; ; {
		j := bytes.Index(b[i:], pat)
		if j < 0 {
			return addr, n
		}
		addr, n = uint64(i+j), n+1
		i += j + 1
	}
}

func (m memImage) u64(addr uint64) uint64 { return binary.LittleEndian.Uint64(m.read(addr, 8)) }

// The pcHeader of Go 1.20 and later on a 64-bit target with 1-byte instructions (wasm): magic
// 0xfffffff1, two zero pad bytes, minLC 1, ptrSize 8.
var pcHeaderPrefix = []byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}

// region is a named range of the initial memory.
type region struct {
	name       string
	start, end uint64
}

// goRegions finds runtime.firstmoduledata (the linker's table of where each part of the program's
// static data is) through the pcHeader it points to, and returns the regions it names. The layout
// read is Go 1.20 and later's (runtime/symtab.go, cmd/link/internal/ld/symtab.go); every address
// is checked against the image, so another layout yields ErrNoGoModuledata rather than nonsense.
func goRegions(m memImage) ([]region, error) {
	// Search the image as memory holds it, not segment by segment: the linker may end one
	// segment and start the next anywhere (at a run of zeros), even inside these structures.
	flat := m.flat()
	header, found := indexOnce(flat, pcHeaderPrefix)
	if found != 1 {
		return nil, fmt.Errorf("%w: %d pcHeader candidates", ErrNoGoModuledata, found)
	}
	hdr := m.read(header, 8+8*8)
	funcnameOffset := binary.LittleEndian.Uint64(hdr[32:]) // after magic+pads, nfunc, nfiles and an unused word
	// moduledata starts with the pcHeader pointer, then the funcnametab slice.
	var want [16]byte
	binary.LittleEndian.PutUint64(want[:], header)
	binary.LittleEndian.PutUint64(want[8:], header+funcnameOffset)
	md, mdFound := indexOnce(flat, want[:])
	if mdFound != 1 {
		return nil, fmt.Errorf("%w: %d moduledata candidates", ErrNoGoModuledata, mdFound)
	}
	w := func(i int) uint64 { return m.u64(md + 8*uint64(i)) }
	slice := func(i int, elem uint64) (uint64, uint64) { return w(i), w(i) + w(i+1)*elem }
	var rs []region
	add := func(name string, start, end uint64) {
		rs = append(rs, region{name, start, end})
	}
	addSlice := func(name string, word int, elem uint64) {
		start, end := slice(word, elem)
		add(name, start, end)
	}
	addSlice("pclntab: function names", 1, 1)
	addSlice("pclntab: compilation units", 4, 4)
	addSlice("pclntab: file names", 7, 1)
	addSlice("pclntab: pc-value tables", 10, 1)
	addSlice("pclntab: function table (_func)", 13, 1)
	add("pclntab: header", header, w(1))
	// findfunctab: 4+16 bytes per 4096-byte bucket of PCs; on wasm a function's PCs span
	// 1<<16 (function index << 16 | resume point), so it costs 320 bytes per function.
	minpc, maxpc := w(20), w(21)
	if maxpc > minpc {
		nb := (maxpc - minpc + 4095) / 4096
		nsub := (maxpc - minpc + 255) / 256
		add("findfunctab (PC to function lookup)", w(19), w(19)+4*nb+nsub)
	}
	add("type descriptors", w(37), w(38))
	add("noptrdata (initialised data without pointers)", w(24), w(25))
	add("data (initialised data with pointers)", w(26), w(27))
	addSlice("typelinks", 45, 4)
	addSlice("itablinks", 48, 8)
	var hi uint64
	if len(m) > 0 {
		hi = m[len(m)-1].Offset + uint64(len(m[len(m)-1].Bytes))
	}
	for _, r := range rs {
		if r.end < r.start || r.end > hi+1<<20 {
			return nil, fmt.Errorf("%w: %s at [%#x, %#x) outside the data", ErrNoGoModuledata, r.name, r.start, r.end)
		}
	}
	return rs, nil
}

// dataUse is how a region's share of the data section splits: the bytes its segments carry, and
// the segment headers (flags, offset expression, size) attributed to the segments starting in it.
type dataUse struct {
	name     string
	extent   uint64 // the region's size in memory (0 for "other")
	bytes    int
	headers  int
	segments int
}

// attributeData splits every data segment's bytes over the regions (the rest is "other rodata":
// strings, constants, closures' static data) and charges each segment's header to the region its
// first byte lies in.
func attributeData(m memImage, rs []region, headerSize func(wasmstub.DataSegment) int) []dataUse {
	sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	uses := make([]dataUse, len(rs)+1)
	for i, r := range rs {
		uses[i].name, uses[i].extent = r.name, r.end-r.start
	}
	other := len(rs)
	uses[other].name = "other static data (strings, constants, rodata)"
	regionOf := func(addr uint64) int {
		i := sort.Search(len(rs), func(i int) bool { return rs[i].end > addr })
		if i < len(rs) && rs[i].start <= addr {
			return i
		}
		return other
	}
	for _, s := range m {
		first := regionOf(s.Offset)
		uses[first].headers += headerSize(s)
		uses[first].segments++
		for a, end := s.Offset, s.Offset+uint64(len(s.Bytes)); a < end; {
			k := regionOf(a)
			next := end
			if k != other {
				next = min(end, rs[k].end)
			} else if i := sort.Search(len(rs), func(i int) bool { return rs[i].start > a }); i < len(rs) {
				next = min(end, rs[i].start)
			}
			uses[k].bytes += int(next - a)
			a = next
		}
	}
	return uses
}
