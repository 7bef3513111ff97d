// Package wasmstub rewrites a WebAssembly module so that chosen function imports become functions
// defined inside the module that just return an error number.
//
// It exists because a module built by the standard Go toolchain for wasip1 imports every WASI
// function any linked package could reach, even one that never runs: golang-jwt pulls in
// crypto/x509 and with it net, whose init builds a closure that could stat /etc/protocols, so the
// module imports wasi_snapshot_preview1.path_filestat_get. Envoy's wasm host before mid-2026 does not
// provide that function and refuses to load any module that imports it. Replacing the import with a
// local stub returning ENOSYS makes the module loadable there while keeping the unreachable code
// path well-defined should it ever run.
//
// Removing an import renumbers every function after it, so the rewriter decodes the whole module and
// rewrites every function index it contains: call, return_call and ref.func immediates in code bodies
// and initializer expressions, element segments, exports, the start function and the "name" custom
// section. Go's own function pointers are table slots, not function indices, so once the element
// segment's entries are renumbered Go's PC tables stay valid without change.
//
// Bytes are changed only where an index moves, and a moved index keeps its LEB128 width when it
// fits, so a rewrite touches as little of the module as possible and stubbing nothing returns the
// module byte for byte.
package wasmstub

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

var (
	// ErrBadModule reports input that is not a well-formed WebAssembly binary module (or uses an
	// encoding this package does not know, which it will not guess at).
	ErrBadModule = errors.New("wasmstub: malformed module")
	// ErrNotFound reports a requested stub that names no function import of the module. It is an
	// error rather than a no-op so that a renamed import cannot silently stop being stubbed.
	ErrNotFound = errors.New("wasmstub: no such function import")
	// ErrUnsupportedType reports a named import that cannot become an errno-returning stub: not a
	// function, or a function whose type does not return exactly one i32.
	ErrUnsupportedType = errors.New("wasmstub: import cannot be stubbed")
)

const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank is the order non-custom sections must appear in; the tag section of the
// exception-handling proposal sits between memory and global, datacount before code.
var sectionRank = map[byte]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6, secGlobal: 7,
	secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13,
}

type section struct {
	id        byte
	start     int // the id byte
	sizeStart int // the size LEB
	content   int
	end       int
}

// patch replaces module[start:end] with data; start == end inserts.
type patch struct {
	start, end int
	data       []byte
}

type funcType struct {
	isFunc  bool // false for GC struct and array types
	results int
	oneI32  bool
}

type importEntry struct {
	module, name string
	kind         byte
	typeIdx      uint32
	start, end   int
}

// rewriter holds the renumbering and collects the patches that apply it.
type rewriter struct {
	mod      []byte
	patches  []patch
	newIndex []uint32 // old function index -> new function index; removed imports map to their stub
}

func (m *rewriter) replace(start, end int, data []byte) {
	m.patches = append(m.patches, patch{start, end, data})
}

// deltaSince is how much the patches recorded since patch number i change the length, which is
// what the enclosing size field must be adjusted by.
func (m *rewriter) deltaSince(i int) int64 {
	var d int64
	for _, p := range m.patches[i:] {
		d += int64(len(p.data)) - int64(p.end-p.start)
	}
	return d
}

// StubImports returns module with each named function import ("module.name") replaced by a
// function defined in the module, of the same type, whose body returns the given i32 errno.
//
// The stubs are appended after the module's own functions, in the order of the imports they
// replace, and take over those imports' entries in the name section. Every stub name must match a
// function import (ErrNotFound) whose type returns exactly one i32 (ErrUnsupportedType); malformed
// input yields ErrBadModule. The input slice is not modified.
func StubImports(module []byte, stubs map[string]int32) ([]byte, error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: no wasm magic number", ErrBadModule)
	}
	if string(module[4:8]) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("%w: binary format version %x is not 1 (a component is not a core module)", ErrBadModule, module[4:8])
	}
	secs, err := splitSections(module)
	if err != nil {
		return nil, err
	}

	// First pass: what the renumbering needs to know.
	var (
		types                  []funcType
		imports                []importEntry
		importCountEnd         int
		numFuncImports         uint32
		numDefined             uint32
		haveFunction, haveCode bool
	)
	for i := range secs {
		s := &secs[i]
		r := &reader{b: module, off: s.content, end: s.end}
		switch s.id {
		case secType:
			if types, err = parseTypes(r); err != nil {
				return nil, err
			}
		case secImport:
			if imports, importCountEnd, err = parseImports(r); err != nil {
				return nil, err
			}
			for _, im := range imports {
				if im.kind == 0 {
					numFuncImports++
				}
			}
		case secFunction:
			haveFunction = true
			n, err := r.count()
			if err != nil {
				return nil, err
			}
			numDefined = n
			for i := uint32(0); i < n; i++ {
				t, err := r.u32()
				if err != nil {
					return nil, err
				}
				if uint64(t) >= uint64(len(types)) {
					return nil, r.errf("function type index %d out of range", t)
				}
			}
			if !r.done() {
				return nil, r.errf("function section has trailing bytes")
			}
		case secCode:
			haveCode = true
		}
	}

	// Which imports become stubs, in import order.
	type removal struct {
		entry   importEntry
		funcIdx uint32
		errno   int32
	}
	var removed []removal
	found := make(map[string]bool, len(stubs))
	fi := uint32(0)
	for _, im := range imports {
		key := im.module + "." + im.name
		errno, want := stubs[key]
		if im.kind != 0 {
			if want {
				return nil, fmt.Errorf("%w: %s is a %s import, not a function", ErrUnsupportedType, key, kindName(im.kind))
			}
			continue
		}
		idx := fi
		fi++
		if !want {
			continue
		}
		if uint64(im.typeIdx) >= uint64(len(types)) || !types[im.typeIdx].isFunc {
			return nil, fmt.Errorf("%w: import %s has type index %d, which is not a function type", ErrBadModule, key, im.typeIdx)
		}
		if t := types[im.typeIdx]; !t.oneI32 {
			return nil, fmt.Errorf("%w: %s returns %d results, not a single i32 errno", ErrUnsupportedType, key, t.results)
		}
		found[key] = true
		removed = append(removed, removal{entry: im, funcIdx: idx, errno: errno})
	}
	var missing []string
	for key := range stubs {
		if !found[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", "))
	}

	total := uint64(numFuncImports) + uint64(numDefined)
	if total > uint64(len(module)) { // each function costs at least one byte somewhere
		return nil, fmt.Errorf("%w: %d functions in %d bytes", ErrBadModule, total, len(module))
	}
	m := &rewriter{mod: module, newIndex: make([]uint32, total)}
	nRemoved := uint32(len(removed))
	stubBase := uint32(total) - nRemoved
	{
		k, shift := 0, uint32(0)
		for j := uint32(0); j < uint32(total); j++ {
			switch {
			case j >= numFuncImports:
				m.newIndex[j] = j - nRemoved
			case k < len(removed) && removed[k].funcIdx == j:
				m.newIndex[j] = stubBase + uint32(k)
				k++
				shift++
			default:
				m.newIndex[j] = j - shift
			}
		}
	}

	// The stubs' function-section entries and code bodies.
	var stubTypes, stubBodies []byte
	for _, rm := range removed {
		stubTypes = appendULEB(stubTypes, uint64(rm.entry.typeIdx), 0)
		body := appendSLEB([]byte{0x00, 0x41}, int64(rm.errno)) // no locals; i32.const errno
		body = append(body, 0x0B)
		stubBodies = appendULEB(stubBodies, uint64(len(body)), 0)
		stubBodies = append(stubBodies, body...)
	}

	// Second pass: record the patches.
	for i := range secs {
		s := &secs[i]
		first := len(m.patches)
		r := &reader{b: module, off: s.content, end: s.end}
		var err error
		switch s.id {
		case secImport:
			if nRemoved > 0 {
				m.replace(s.content, importCountEnd,
					appendULEB(nil, uint64(len(imports))-uint64(nRemoved), importCountEnd-s.content))
				for _, rm := range removed {
					m.replace(rm.entry.start, rm.entry.end, nil)
				}
			}
			r.off = r.end
		case secFunction:
			if nRemoved > 0 {
				cr := &reader{b: module, off: s.content, end: s.end}
				if _, err := cr.u32(); err != nil {
					return nil, err
				}
				m.replace(s.content, cr.off, appendULEB(nil, uint64(numDefined)+uint64(nRemoved), cr.off-s.content))
				m.replace(s.end, s.end, stubTypes)
			}
			r.off = r.end
		case secTable:
			err = m.tables(r)
		case secMemory:
			err = memories(r)
		case secTag:
			err = tags(r, len(types))
		case secGlobal:
			err = m.globals(r)
		case secExport:
			err = m.exports(r)
		case secStart:
			err = m.funcIdx(r)
		case secElement:
			err = m.elements(r)
		case secDataCount:
			_, err = r.u32()
		case secCode:
			err = m.code(r, numDefined, nRemoved, stubBodies)
		case secData:
			err = m.data(r)
		case secCustom:
			var name string
			if name, err = r.name(); err == nil {
				if name == "name" {
					err = m.nameSection(r)
				} else {
					r.off = r.end
				}
			}
		case secType:
			r.off = r.end
		}
		if err != nil {
			return nil, err
		}
		if !r.done() {
			return nil, r.errf("section %d has %d bytes after its contents", s.id, r.end-r.off)
		}
		if d := m.deltaSince(first); d != 0 {
			w := s.content - s.sizeStart
			m.replace(s.sizeStart, s.content, appendULEB(nil, uint64(int64(s.end-s.content)+d), w))
		}
	}
	if nRemoved > 0 && !haveFunction {
		content := appendULEB(nil, uint64(nRemoved), 0)
		content = append(content, stubTypes...)
		at := insertionPoint(secs, secFunction)
		m.replace(at, at, encodeSection(secFunction, content))
	}
	if !haveCode && numDefined != 0 {
		return nil, fmt.Errorf("%w: %d functions declared but no code section", ErrBadModule, numDefined)
	}
	if nRemoved > 0 && !haveCode {
		content := appendULEB(nil, uint64(nRemoved), 0)
		content = append(content, stubBodies...)
		at := insertionPoint(secs, secCode)
		m.replace(at, at, encodeSection(secCode, content))
	}
	return m.apply()
}

func kindName(k byte) string {
	switch k {
	case 0:
		return "function"
	case 1:
		return "table"
	case 2:
		return "memory"
	case 3:
		return "global"
	case 4:
		return "tag"
	}
	return fmt.Sprintf("kind-%d", k)
}

func encodeSection(id byte, content []byte) []byte {
	out := []byte{id}
	out = appendULEB(out, uint64(len(content)), 0)
	return append(out, content...)
}

// insertionPoint is where a missing section of the given id goes: right after the last non-custom
// section that must precede it, so that custom sections following that one (like a trailing name
// section) stay where they are.
func insertionPoint(secs []section, id byte) int {
	at := 8
	for _, s := range secs {
		if s.id != secCustom && sectionRank[s.id] < sectionRank[id] {
			at = s.end
		}
	}
	return at
}

// splitSections finds the sections and checks their ids, sizes and order.
func splitSections(module []byte) ([]section, error) {
	var secs []section
	r := &reader{b: module, off: 8, end: len(module)}
	lastRank := 0
	for !r.done() {
		start := r.off
		id, _ := r.byte()
		rank, known := sectionRank[id]
		if id != secCustom {
			if !known {
				r.off = start
				return nil, r.errf("unknown section id %d", id)
			}
			if rank <= lastRank {
				r.off = start
				return nil, r.errf("section %d out of order or repeated", id)
			}
			lastRank = rank
		}
		sizeStart := r.off
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		content := r.off
		if err := r.skip(uint64(size)); err != nil {
			return nil, err
		}
		secs = append(secs, section{id: id, start: start, sizeStart: sizeStart, content: content, end: r.off})
	}
	return secs, nil
}

func (m *rewriter) apply() ([]byte, error) {
	sort.SliceStable(m.patches, func(i, j int) bool { return m.patches[i].start < m.patches[j].start })
	size := len(m.mod)
	for _, p := range m.patches {
		size += len(p.data) - (p.end - p.start)
	}
	out := make([]byte, 0, size)
	at := 0
	for _, p := range m.patches {
		if p.start < at || p.end < p.start || p.end > len(m.mod) {
			return nil, fmt.Errorf("%w: overlapping rewrites at offset %d", ErrBadModule, p.start)
		}
		out = append(out, m.mod[at:p.start]...)
		out = append(out, p.data...)
		at = p.end
	}
	return append(out, m.mod[at:]...), nil
}

func parseTypes(r *reader) ([]funcType, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	var types []funcType
	for i := uint32(0); i < n; i++ {
		c, err := r.peek()
		if err != nil {
			return nil, err
		}
		subs := uint32(1)
		if c == 0x4E { // rec group: its subtypes each take a type index
			r.off++
			if subs, err = r.count(); err != nil {
				return nil, err
			}
		}
		for j := uint32(0); j < subs; j++ {
			t, err := subType(r)
			if err != nil {
				return nil, err
			}
			types = append(types, t)
		}
	}
	if !r.done() {
		return nil, r.errf("type section has trailing bytes")
	}
	return types, nil
}

func subType(r *reader) (funcType, error) {
	c, err := r.byte()
	if err != nil {
		return funcType{}, err
	}
	if c == 0x50 || c == 0x4F { // sub, sub final: supertypes, then the composite type
		n, err := r.count()
		if err != nil {
			return funcType{}, err
		}
		if err := skipU32s(r, int(n)); err != nil {
			return funcType{}, err
		}
		if c, err = r.byte(); err != nil {
			return funcType{}, err
		}
	}
	switch c {
	case 0x60:
		np, err := r.count()
		if err != nil {
			return funcType{}, err
		}
		for i := uint32(0); i < np; i++ {
			if err := r.valType(); err != nil {
				return funcType{}, err
			}
		}
		nr, err := r.count()
		if err != nil {
			return funcType{}, err
		}
		t := funcType{isFunc: true, results: int(nr)}
		for i := uint32(0); i < nr; i++ {
			if i == 0 {
				c, _ := r.peek()
				t.oneI32 = nr == 1 && c == 0x7F
			}
			if err := r.valType(); err != nil {
				return funcType{}, err
			}
		}
		return t, nil
	case 0x5F: // struct
		n, err := r.count()
		if err != nil {
			return funcType{}, err
		}
		for i := uint32(0); i < n; i++ {
			if err := fieldType(r); err != nil {
				return funcType{}, err
			}
		}
		return funcType{}, nil
	case 0x5E: // array
		return funcType{}, fieldType(r)
	}
	r.off--
	return funcType{}, r.errf("unknown type form 0x%02x", c)
}

func fieldType(r *reader) error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	if c == 0x78 || c == 0x77 { // packed i8, i16
		r.off++
	} else if err := r.valType(); err != nil {
		return err
	}
	mut, err := r.byte()
	if err != nil {
		return err
	}
	if mut > 1 {
		return r.errf("bad mutability %d", mut)
	}
	return nil
}

// parseImports also returns where the count ends, so the count can be patched.
func parseImports(r *reader) ([]importEntry, int, error) {
	n, err := r.count()
	if err != nil {
		return nil, 0, err
	}
	countEnd := r.off
	var out []importEntry
	for i := uint32(0); i < n; i++ {
		im := importEntry{start: r.off}
		if im.module, err = r.name(); err != nil {
			return nil, 0, err
		}
		if im.name, err = r.name(); err != nil {
			return nil, 0, err
		}
		if im.kind, err = r.byte(); err != nil {
			return nil, 0, err
		}
		switch im.kind {
		case 0:
			im.typeIdx, err = r.u32()
		case 1:
			if err = r.valType(); err == nil {
				err = r.limits()
			}
		case 2:
			err = r.limits()
		case 3:
			if err = r.valType(); err == nil {
				var mut byte
				if mut, err = r.byte(); err == nil && mut > 1 {
					err = r.errf("bad mutability %d", mut)
				}
			}
		case 4:
			if err = r.skip(1); err == nil {
				_, err = r.u32()
			}
		default:
			r.off--
			err = r.errf("unknown import kind %d", im.kind)
		}
		if err != nil {
			return nil, 0, err
		}
		im.end = r.off
		out = append(out, im)
	}
	if !r.done() {
		return nil, 0, r.errf("import section has trailing bytes")
	}
	return out, countEnd, nil
}

func (m *rewriter) tables(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		c, err := r.peek()
		if err != nil {
			return err
		}
		withInit := c == 0x40 // function-references: table with an initializer expression
		if withInit {
			r.off++
			if c, err := r.byte(); err != nil {
				return err
			} else if c != 0x00 {
				return r.errf("bad table encoding 0x40 0x%02x", c)
			}
		}
		if err := r.valType(); err != nil {
			return err
		}
		if err := r.limits(); err != nil {
			return err
		}
		if withInit {
			if err := m.constExpr(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func memories(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.limits(); err != nil {
			return err
		}
	}
	return nil
}

func tags(r *reader, ntypes int) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.skip(1); err != nil {
			return err
		}
		t, err := r.u32()
		if err != nil {
			return err
		}
		if uint64(t) >= uint64(ntypes) {
			return r.errf("tag type index %d out of range", t)
		}
	}
	return nil
}

func (m *rewriter) globals(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if err := r.valType(); err != nil {
			return err
		}
		mut, err := r.byte()
		if err != nil {
			return err
		}
		if mut > 1 {
			return r.errf("bad mutability %d", mut)
		}
		if err := m.constExpr(r); err != nil {
			return err
		}
	}
	return nil
}

func (m *rewriter) exports(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.name(); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch {
		case kind == 0:
			err = m.funcIdx(r)
		case kind <= 4:
			_, err = r.u32()
		default:
			r.off--
			err = r.errf("unknown export kind %d", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// elements handles all eight segment encodings. Bit 0 of the flags marks a passive or declarative
// segment (no offset), bit 1 an explicit table index (active) or a declarative segment, bit 2 a
// vector of expressions with a reference type instead of plain function indices with an element
// kind; encodings 0 and 4 leave the element kind / reference type implicit.
func (m *rewriter) elements(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return r.errf("unknown element segment encoding %d", flags)
		}
		exprs := flags&4 != 0
		if flags&1 == 0 {
			if flags&2 != 0 {
				if _, err := r.u32(); err != nil {
					return err
				}
			}
			if err := m.constExpr(r); err != nil {
				return err
			}
		}
		if flags&3 != 0 {
			if exprs {
				err = r.valType()
			} else if kind, e := r.byte(); e != nil {
				err = e
			} else if kind != 0 {
				err = r.errf("unknown element kind %d", kind)
			}
			if err != nil {
				return err
			}
		}
		cnt, err := r.count()
		if err != nil {
			return err
		}
		for j := uint32(0); j < cnt; j++ {
			if exprs {
				err = m.constExpr(r)
			} else {
				err = m.funcIdx(r)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *rewriter) code(r *reader, numDefined, nRemoved uint32, stubBodies []byte) error {
	countStart := r.off
	n, err := r.count()
	if err != nil {
		return err
	}
	if n != numDefined {
		return r.errf("code section has %d bodies for %d declared functions", n, numDefined)
	}
	countEnd := r.off
	for i := uint32(0); i < n; i++ {
		if err := m.body(r); err != nil {
			return err
		}
	}
	if nRemoved > 0 {
		m.replace(countStart, countEnd, appendULEB(nil, uint64(n)+uint64(nRemoved), countEnd-countStart))
		m.replace(r.end, r.end, slices.Clone(stubBodies))
	}
	return nil
}

func (m *rewriter) data(r *reader) error {
	n, err := r.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 0:
			err = m.constExpr(r)
		case 1:
		case 2:
			if _, err = r.u32(); err == nil {
				err = m.constExpr(r)
			}
		default:
			err = r.errf("unknown data segment encoding %d", flags)
		}
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		if err := r.skip(uint64(size)); err != nil {
			return err
		}
	}
	return nil
}

// EnvoyStubs are the imports jtiguard's module answers itself, so that it behaves the same on
// every Envoy from 1.33 on:
//
//   - poll_oneoff (0, no events): Go's runtime polls after a GC once its netpoller exists, and
//     sleeps through it; those hosts answer ENOSYS, which the runtime treats as fatal
//     (golang/go#78513), and Envoy forbids the call inside proxy_on_memory_allocate, where a GC
//     can start. The plugin never sleeps or waits on I/O (it runs only inside host callbacks),
//     so "nothing ready" is always the right answer, and it is what newer hosts answer too.
//
// path_filestat_get, which Envoy's host before proxy-wasm-cpp-host 94091cd (April 2026) lacks, was
// stubbed too while golang-jwt linked crypto/x509 and net into the module; jwtverify links
// neither, so the module no longer imports it (the harness's envoy-1.33 surface refuses a module
// that does, which the module tests would report).
var EnvoyStubs = map[string]int32{
	"wasi_snapshot_preview1.poll_oneoff": 0,
}
