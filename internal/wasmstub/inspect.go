package wasmstub

import (
	"fmt"
	"sort"
)

// Layout is what a module's bytes are spent on: its sections, each defined function's body with
// the name the "name" section gives it, and the active data segments. It is what the size analysis
// (cmd/wasm-size) groups by Go package; it lives here so that it decodes with the same checked
// reader as the rewriter instead of a second, laxer one.
type Layout struct {
	Size        int
	Sections    []SectionSize
	FuncImports int    // function imports, which come first in the function index space
	Funcs       []Func // defined functions, in index order
	Data        []DataSegment
}

// SectionSize is one section; Size counts its id and size field too, so the sizes add up to the
// module's size less the 8-byte header.
type SectionSize struct {
	ID   byte
	Name string // "code", "data", ... or a custom section's own name
	Size int
}

// Func is a defined function. Size is its code-section entry: the size field, locals and body.
type Func struct {
	Index uint32
	Name  string // from the "name" section; empty if it has none
	Size  int
}

// DataSegment is one data segment. Offset is the memory address of an active segment whose offset
// is a constant (what toolchains emit); Passive marks one without. Bytes aliases the module.
type DataSegment struct {
	Offset    uint64
	Passive   bool
	Bytes     []byte
	EntrySize int // the whole entry in the data section: flags, offset expression, size and bytes
}

var sectionNames = map[byte]string{
	secType: "type", secImport: "import", secFunction: "function", secTable: "table",
	secMemory: "memory", secGlobal: "global", secExport: "export", secStart: "start",
	secElement: "element", secCode: "code", secData: "data", secDataCount: "datacount", secTag: "tag",
}

// Inspect decodes the layout of a core WebAssembly module. It reads the sections the layout needs
// (imports, functions, code, data and the name section) and checks only what reading them needs;
// it does not validate the module, and returns ErrBadModule for what it cannot decode.
func Inspect(module []byte) (*Layout, error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" || string(module[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: not a core WebAssembly module (version 1)", ErrBadModule)
	}
	secs, err := splitSections(module)
	if err != nil {
		return nil, err
	}
	l := &Layout{Size: len(module)}
	names := map[uint32]string{}
	var declared uint32
	haveFunction := false
	for _, s := range secs {
		r := &reader{b: module, off: s.content, end: s.end}
		ss := SectionSize{ID: s.id, Name: sectionNames[s.id], Size: s.end - s.start}
		switch s.id {
		case secCustom:
			if ss.Name, err = r.name(); err != nil {
				return nil, err
			}
			if ss.Name == "name" {
				if err := functionNames(r, names); err != nil {
					return nil, err
				}
			}
		case secImport:
			imports, _, err := parseImports(r)
			if err != nil {
				return nil, err
			}
			for _, im := range imports {
				if im.kind == 0 {
					l.FuncImports++
				}
			}
		case secFunction:
			haveFunction = true
			if declared, err = r.count(); err != nil {
				return nil, err
			}
		case secCode:
			n, err := r.count()
			if err != nil {
				return nil, err
			}
			if !haveFunction || n != declared {
				return nil, r.errf("code section has %d bodies for %d declared functions", n, declared)
			}
			l.Funcs = make([]Func, 0, n)
			for i := uint32(0); i < n; i++ {
				start := r.off
				size, err := r.u32()
				if err != nil {
					return nil, err
				}
				if err := r.skip(uint64(size)); err != nil {
					return nil, err
				}
				l.Funcs = append(l.Funcs, Func{Index: uint32(l.FuncImports) + i, Size: r.off - start})
			}
		case secData:
			if l.Data, err = dataSegments(r); err != nil {
				return nil, err
			}
		}
		l.Sections = append(l.Sections, ss)
	}
	for i := range l.Funcs {
		l.Funcs[i].Name = names[l.Funcs[i].Index]
	}
	return l, nil
}

// Section returns the total size of the sections named name ("code", "data", "name", ...).
func (l *Layout) Section(name string) int {
	n := 0
	for _, s := range l.Sections {
		if s.Name == name {
			n += s.Size
		}
	}
	return n
}

// functionNames reads the function-names subsection of a "name" section into names.
func functionNames(r *reader, names map[uint32]string) error {
	for !r.done() {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		sub := &reader{b: r.b, off: r.off, end: r.off + int(min(uint64(size), uint64(r.end-r.off)))}
		if err := r.skip(uint64(size)); err != nil {
			return err
		}
		if id != nameFunctions {
			continue
		}
		n, err := sub.count()
		if err != nil {
			return err
		}
		for i := uint32(0); i < n; i++ {
			idx, err := sub.u32()
			if err != nil {
				return err
			}
			if names[idx], err = sub.name(); err != nil {
				return err
			}
		}
	}
	return nil
}

// dataSegments reads the data section, sorted by offset.
func dataSegments(r *reader) ([]DataSegment, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	out := make([]DataSegment, 0, n)
	for i := uint32(0); i < n; i++ {
		seg, err := dataSegment(r)
		if err != nil {
			return nil, err
		}
		out = append(out, seg)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out, nil
}

// dataSegment reads one data segment. An active segment's offset must be an i32.const or
// i64.const, as every toolchain writes it; any other expression is an error.
func dataSegment(r *reader) (DataSegment, error) {
	var seg DataSegment
	entry := r.off
	flags, err := r.u32()
	if err != nil {
		return seg, err
	}
	switch flags {
	case 1:
		seg.Passive = true
	case 0, 2:
		if flags == 2 {
			if _, err := r.u32(); err != nil { // memory index
				return seg, err
			}
		}
		if seg.Offset, err = constOffset(r); err != nil {
			return seg, err
		}
	default:
		return seg, r.errf("unknown data segment encoding %d", flags)
	}
	size, err := r.u32()
	if err != nil {
		return seg, err
	}
	start := r.off
	if err := r.skip(uint64(size)); err != nil {
		return seg, err
	}
	seg.Bytes = r.b[start:r.off]
	seg.EntrySize = r.off - entry
	return seg, nil
}

// constOffset reads an offset expression of the form (i32.const n) or (i64.const n) end.
func constOffset(r *reader) (uint64, error) {
	op, err := r.byte()
	if err != nil {
		return 0, err
	}
	var v int64
	switch op {
	case 0x41:
		v, err = r.sleb(32)
		v = int64(uint32(v))
	case 0x42:
		v, err = r.sleb(64)
	default:
		r.off--
		return 0, r.errf("data segment offset is not a constant (opcode 0x%02x)", op)
	}
	if err != nil {
		return 0, err
	}
	end, err := r.byte()
	if err != nil {
		return 0, err
	}
	if end != 0x0B {
		r.off--
		return 0, r.errf("data segment offset expression longer than one constant")
	}
	return uint64(v), nil
}
