package wasmstub

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
)

// This file shrinks a Go module's data section without changing the memory it initialises.
//
// Go's linker writes the initial memory as data segments, splitting it wherever eight or more
// zero bytes follow each other. On wasm one table comes out as tens of thousands of tiny
// segments: findfunctab, the runtime's PC-to-function index, has a 20-byte bucket (a 4-byte
// function number and 16 one-byte deltas) per 4096 PCs, and a wasm PC is the function index
// shifted left by 16, so every function owns 16 buckets whose deltas are all zero. Each bucket
// becomes a segment carrying one or two bytes behind an 8-byte header: 57 000 segments and 560 KB
// of the jtiguard module (docs/module-size.md), which every engine decodes at load and copies at
// every instantiation.
//
// CompactData replaces each long run of such segments (equal stride, at most 4 bytes each, values
// that step by a constant every R entries) with a loop in a start function, which the engine runs
// right after applying the remaining segments and before any export (_initialize included) can
// be called. Before returning, it recomputes the memory the new module initialises from the
// description of the runs and compares it byte for byte with the original's, so a module it
// cannot describe exactly is refused (ErrCompact), never changed.

// ErrCompact reports a module CompactData will not rewrite: overlapping or non-constant segments,
// a 64-bit memory, or a rewrite whose memory image would differ from the original's.
var ErrCompact = errors.New("wasmstub: cannot compact data")

// minRun is the shortest run worth a loop: a loop costs about 40 bytes of code, a tiny segment
// about 9 bytes of data section.
const minRun = 16

// fillRun describes the stores of one run: for i in [0, count), the little-endian u32
// value0 + ((i + phase) / every) * step is stored at addr + i*stride.
type fillRun struct {
	addr, stride, count   uint32
	value0, phase, every  uint32
	step                  uint32 // added modulo 2^32, so a decreasing sequence works too
	first, last           int    // the segments it replaces, indices into the sorted list
	replacedSegmentsBytes int
}

func (f fillRun) value(i uint32) uint32 { return f.value0 + ((i+f.phase)/f.every)*f.step }

// CompactStats says what CompactData did.
type CompactStats struct {
	SegmentsBefore, SegmentsAfter int
	Runs                          int
	BytesBefore, BytesAfter       int
}

// DataInitFunctionName is the name-section name of the start function CompactData adds, so that
// an engine's stack trace of a trap in it says where it comes from.
const DataInitFunctionName = "wasmstub.data_init"

// CompactData returns module with runs of small data segments replaced by a start function that
// writes the same bytes. A module with no run worth replacing is returned unchanged.
func CompactData(module []byte) ([]byte, CompactStats, error) {
	st := CompactStats{BytesBefore: len(module), BytesAfter: len(module)}
	l, err := Inspect(module)
	if err != nil {
		return nil, st, err
	}
	st.SegmentsBefore, st.SegmentsAfter = len(l.Data), len(l.Data)
	secs, err := splitSections(module)
	if err != nil {
		return nil, st, err
	}
	for _, s := range secs {
		if s.id == secMemory {
			r := &reader{b: module, off: s.content, end: s.end}
			if n, err := r.count(); err != nil || n != 1 {
				return nil, st, fmt.Errorf("%w: %d memories", ErrCompact, n)
			}
			if flags, err := r.byte(); err != nil || flags&0x04 != 0 {
				return nil, st, fmt.Errorf("%w: 64-bit or unreadable memory", ErrCompact)
			}
		}
	}
	segs := l.Data
	for i, s := range segs {
		if s.Passive {
			return nil, st, fmt.Errorf("%w: passive segment %d", ErrCompact, i)
		}
		if i > 0 && segs[i-1].Offset+uint64(len(segs[i-1].Bytes)) > s.Offset {
			return nil, st, fmt.Errorf("%w: segments overlap at %#x", ErrCompact, s.Offset)
		}
		if s.Offset+uint64(len(s.Bytes))+4 > 1<<32 {
			return nil, st, fmt.Errorf("%w: segment beyond 4 GiB", ErrCompact)
		}
	}
	runs := findRuns(segs)
	if len(runs) == 0 {
		return module, st, nil
	}
	out, err := rewriteWithRuns(module, secs, l, runs)
	if err != nil {
		return nil, st, err
	}
	if err := checkSameImage(segs, out, runs); err != nil {
		return nil, st, err
	}
	st.Runs = len(runs)
	for _, r := range runs {
		st.SegmentsAfter -= r.last - r.first + 1
	}
	st.BytesAfter = len(out)
	return out, st, nil
}

// findRuns finds maximal runs of segments of at most 4 bytes at a constant stride whose values
// follow fillRun.value and whose 4-byte stores would write only zeros outside their segment.
func findRuns(segs []DataSegment) []fillRun {
	small := func(i int) bool {
		if len(segs[i].Bytes) == 0 || len(segs[i].Bytes) > 4 {
			return false
		}
		// The store writes 4 bytes; the ones past the segment must be free (zero in memory).
		return i+1 == len(segs) || segs[i+1].Offset >= segs[i].Offset+4
	}
	val := func(i int) uint32 {
		var b [4]byte
		copy(b[:], segs[i].Bytes)
		return binary.LittleEndian.Uint32(b[:])
	}
	var runs []fillRun
	for i := 0; i+minRun <= len(segs); {
		if !small(i) || !small(i+1) {
			i++
			continue
		}
		stride := segs[i+1].Offset - segs[i].Offset
		if stride < 4 || stride > 1<<31 {
			i++
			continue
		}
		// The stretch of equal stride.
		j := i + 1
		for j+1 < len(segs) && small(j+1) && segs[j+1].Offset-segs[j].Offset == stride {
			j++
		}
		// Split it into runs following the value formula, greedily.
		for k := i; k <= j; {
			r, ok := fitRun(k, j, val)
			if ok && r.last-r.first+1 >= minRun {
				r.addr, r.stride = uint32(segs[k].Offset), uint32(stride)
				for x := r.first; x <= r.last; x++ {
					r.replacedSegmentsBytes += len(segs[x].Bytes)
				}
				runs = append(runs, r)
				k = r.last + 1
			} else {
				k++
			}
		}
		i = j + 1
	}
	return runs
}

// fitRun takes the longest prefix of segments [k, j] whose values step by a constant every
// `every` entries (the first group may be shorter: that is the phase).
func fitRun(k, j int, val func(int) uint32) (fillRun, bool) {
	// Groups of equal consecutive values.
	type group struct{ start, n int }
	var groups []group
	for x := k; x <= j; x++ {
		if len(groups) > 0 && val(x) == val(groups[len(groups)-1].start) {
			groups[len(groups)-1].n++
			continue
		}
		groups = append(groups, group{x, 1})
		if len(groups) > 3 && groups[len(groups)-2].n != groups[1].n {
			break // the interior groups differ: no need to look further
		}
	}
	r := fillRun{first: k, value0: val(k), every: 1}
	if len(groups) == 1 {
		r.last, r.every, r.count = groups[0].start+groups[0].n-1, uint32(groups[0].n), uint32(groups[0].n)
		return r, true
	}
	every := groups[0].n
	if len(groups) > 2 {
		every = groups[1].n
	}
	if groups[0].n > every {
		// A long first group: it is its own run (step 0).
		r.last, r.every, r.count = k+groups[0].n-1, uint32(groups[0].n), uint32(groups[0].n)
		return r, true
	}
	r.every, r.phase = uint32(every), uint32(every-groups[0].n)
	r.step = val(groups[1].start) - val(groups[0].start)
	last := groups[0].start + groups[0].n - 1
	for g := 1; g < len(groups); g++ {
		if val(groups[g].start)-val(groups[g-1].start) != r.step {
			break
		}
		if groups[g].n != every {
			if groups[g].n < every { // a short last group ends the run
				last = groups[g].start + groups[g].n - 1
			}
			break
		}
		last = groups[g].start + groups[g].n - 1
	}
	r.last, r.count = last, uint32(last-k+1)
	return r, true
}

// fillBody is the code-section entry of the start function: one loop per run, then a call of the
// previous start function if there was one.
func fillBody(runs []fillRun, prevStart int64) []byte {
	c := []byte{0x01, 0x01, 0x7F} // one local group: one i32 (the loop counter)
	i32 := func(v uint32) { c = append(c, 0x41); c = appendSLEB(c, int64(int32(v))) }
	get := func() { c = append(c, 0x20, 0x00) }
	for _, r := range runs {
		i32(0)
		c = append(c, 0x21, 0x00)       // local.set 0
		c = append(c, 0x03, 0x40)       // loop
		get()                           // address: addr + i*stride
		i32(r.stride)                   //
		c = append(c, 0x6C)             // i32.mul
		i32(r.addr)                     //
		c = append(c, 0x6A)             // i32.add
		get()                           // value: value0 + ((i+phase)/every)*step
		i32(r.phase)                    //
		c = append(c, 0x6A)             // i32.add
		i32(r.every)                    //
		c = append(c, 0x6E)             // i32.div_u
		i32(r.step)                     //
		c = append(c, 0x6C)             // i32.mul
		i32(r.value0)                   //
		c = append(c, 0x6A)             // i32.add
		c = append(c, 0x36, 0x00, 0x00) // i32.store align=1 offset=0
		get()                           // i++ while i < count
		i32(1)                          //
		c = append(c, 0x6A, 0x22, 0x00) // i32.add, local.tee 0
		i32(r.count)                    //
		c = append(c, 0x49, 0x0D, 0x00) // i32.lt_u, br_if 0
		c = append(c, 0x0B)             // end
	}
	if prevStart >= 0 {
		c = append(c, 0x10)
		c = appendULEB(c, uint64(prevStart), 0)
	}
	c = append(c, 0x0B)
	return append(appendULEB(nil, uint64(len(c)), 0), c...)
}

// rewriteWithRuns emits the module with: one more type (func () -> ()), one more function (the
// fill function, last in the index space so no index moves), the start section pointing at it,
// the data section without the replaced segments and the name section naming the new function.
func rewriteWithRuns(module []byte, secs []section, l *Layout, runs []fillRun) ([]byte, error) {
	replaced := map[uint64]bool{}
	for _, r := range runs {
		for x := r.first; x <= r.last; x++ {
			replaced[l.Data[x].Offset] = true
		}
	}
	var (
		numTypes  uint64
		prevStart int64 = -1
		haveType  bool
	)
	for _, s := range secs {
		r := &reader{b: module, off: s.content, end: s.end}
		switch s.id {
		case secType:
			types, err := parseTypes(r)
			if err != nil {
				return nil, err
			}
			numTypes, haveType = uint64(len(types)), true
		case secStart:
			v, err := r.u32()
			if err != nil {
				return nil, err
			}
			prevStart = int64(v)
		}
	}
	fillIdx := uint64(l.FuncImports) + uint64(len(l.Funcs))
	body := fillBody(runs, prevStart)

	var out []byte
	out = append(out, module[:8]...)
	emitted := map[byte]bool{}
	emit := func(id byte, content []byte) {
		out = append(out, encodeSection(id, content)...)
		emitted[id] = true
	}
	// A module without a type or start section gets one, in rank order.
	insertMissing := func(beforeRank int) {
		if !haveType && !emitted[secType] && sectionRank[secType] < beforeRank {
			emit(secType, []byte{0x01, 0x60, 0x00, 0x00})
		}
		if prevStart < 0 && !emitted[secStart] && sectionRank[secStart] < beforeRank {
			emit(secStart, appendULEB(nil, fillIdx, 0))
		}
	}
	for _, s := range secs {
		if s.id != secCustom {
			insertMissing(sectionRank[s.id])
		}
		r := &reader{b: module, off: s.content, end: s.end}
		switch s.id {
		case secType:
			// The count is of entries (a rec group is one), the new index of flattened types.
			n, err := r.count()
			if err != nil {
				return nil, err
			}
			c := appendULEB(nil, uint64(n)+1, 0)
			c = append(c, module[r.off:s.end]...)
			c = append(c, 0x60, 0x00, 0x00)
			emit(secType, c)
			continue
		case secFunction:
			n, err := r.count()
			if err != nil {
				return nil, err
			}
			c := appendULEB(nil, uint64(n)+1, 0)
			c = append(c, module[r.off:s.end]...)
			c = appendULEB(c, numTypes, 0)
			emit(secFunction, c)
			continue
		case secStart:
			emit(secStart, appendULEB(nil, fillIdx, 0))
			continue
		case secCode:
			n, err := r.count()
			if err != nil {
				return nil, err
			}
			c := appendULEB(nil, uint64(n)+1, 0)
			c = append(c, module[r.off:s.end]...)
			c = append(c, body...)
			emit(secCode, c)
			continue
		case secDataCount:
			n, err := r.u32()
			if err != nil {
				return nil, err
			}
			emit(secDataCount, appendULEB(nil, uint64(n)-uint64(len(replaced)), 0))
			continue
		case secData:
			c, err := dataWithout(r, replaced)
			if err != nil {
				return nil, err
			}
			emit(secData, c)
			continue
		case secCustom:
			name, err := r.name()
			if err != nil {
				return nil, err
			}
			if name == "name" {
				c, err := nameWithFunction(module[s.content:s.end], r.off-s.content, uint32(fillIdx), DataInitFunctionName)
				if err != nil {
					return nil, err
				}
				out = append(out, encodeSection(secCustom, c)...)
				continue
			}
		}
		out = append(out, module[s.start:s.end]...)
	}
	insertMissing(1 << 30)
	if !emitted[secFunction] || !emitted[secCode] || !emitted[secData] {
		return nil, fmt.Errorf("%w: no function, code or data section", ErrCompact)
	}
	return out, nil
}

// dataWithout re-encodes the data section without the segments whose offsets are in drop.
func dataWithout(r *reader, drop map[uint64]bool) ([]byte, error) {
	n, err := r.count()
	if err != nil {
		return nil, err
	}
	var body []byte
	kept := uint64(0)
	for i := uint32(0); i < n; i++ {
		start := r.off
		seg, err := dataSegment(r)
		if err != nil {
			return nil, err
		}
		if !seg.Passive && drop[seg.Offset] {
			continue
		}
		body = append(body, r.b[start:r.off]...)
		kept++
	}
	return append(appendULEB(nil, kept, 0), body...), nil
}

// nameWithFunction returns the content of a "name" custom section (content, whose subsections
// start at subStart) with idx named name in its function-names subsection. idx must be above
// every named index, as the new function is the last one.
func nameWithFunction(content []byte, subStart int, idx uint32, name string) ([]byte, error) {
	entry := appendULEB(nil, uint64(idx), 0)
	entry = appendULEB(entry, uint64(len(name)), 0)
	entry = append(entry, name...)
	out := append([]byte(nil), content[:subStart]...)
	r := &reader{b: content, off: subStart, end: len(content)}
	added := false
	for !r.done() {
		start := r.off
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		sub := &reader{b: content, off: r.off, end: r.off + int(min(uint64(size), uint64(r.end-r.off)))}
		if err := r.skip(uint64(size)); err != nil {
			return nil, err
		}
		if !added && id > nameFunctions {
			out = append(out, nameFunctions)
			out = appendULEB(out, uint64(len(entry)+1), 0)
			out = append(append(out, 0x01), entry...)
			added = true
		}
		if id != nameFunctions {
			out = append(out, content[start:r.off]...)
			continue
		}
		n, err := sub.count()
		if err != nil {
			return nil, err
		}
		entries := sub.b[sub.off:sub.end]
		for i := uint32(0); i < n; i++ {
			at, err := sub.u32()
			if err != nil {
				return nil, err
			}
			if at >= idx {
				return nil, sub.errf("function %d named, but %d is the new last function", at, idx)
			}
			if _, err := sub.name(); err != nil {
				return nil, err
			}
		}
		c := appendULEB(nil, uint64(n)+1, 0)
		c = append(c, entries...)
		c = append(c, entry...)
		out = append(out, nameFunctions)
		out = appendULEB(out, uint64(len(c)), 0)
		out = append(out, c...)
		added = true
	}
	if !added {
		out = append(out, nameFunctions)
		out = appendULEB(out, uint64(len(entry)+1), 0)
		out = append(append(out, 0x01), entry...)
	}
	return out, nil
}

// checkSameImage proves the rewrite: the memory written by out's segments and then the runs'
// stores must equal, byte for byte, the memory written by the original segments. It compares
// only the address ranges either side writes, so its memory use is bounded by the module's size
// whatever offsets the segments claim.
func checkSameImage(orig []DataSegment, out []byte, runs []fillRun) error {
	l, err := Inspect(out)
	if err != nil {
		return fmt.Errorf("%w: the rewritten module does not decode: %w", ErrCompact, err)
	}
	type write struct {
		at   uint64
		data []byte
	}
	var stores []write
	for _, r := range runs {
		for i := uint32(0); i < r.count; i++ {
			var v [4]byte
			binary.LittleEndian.PutUint32(v[:], r.value(i))
			stores = append(stores, write{uint64(r.addr) + uint64(i)*uint64(r.stride), v[:]})
		}
	}
	// The merged address ranges that either side writes.
	type span struct{ start, end uint64 }
	var spans []span
	addSpan := func(at uint64, n int) { spans = append(spans, span{at, at + uint64(n)}) }
	for _, s := range orig {
		addSpan(s.Offset, len(s.Bytes))
	}
	for _, s := range l.Data {
		addSpan(s.Offset, len(s.Bytes))
	}
	for _, w := range stores {
		addSpan(w.at, len(w.data))
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	var merged []span
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	want := make([][]byte, len(merged))
	got := make([][]byte, len(merged))
	for i, sp := range merged {
		want[i], got[i] = make([]byte, sp.end-sp.start), make([]byte, sp.end-sp.start)
	}
	put := func(img [][]byte, at uint64, data []byte) {
		i := sort.Search(len(merged), func(i int) bool { return merged[i].end > at })
		copy(img[i][at-merged[i].start:], data)
	}
	for _, s := range orig {
		put(want, s.Offset, s.Bytes)
	}
	for _, s := range l.Data { // segments first, as the engine applies them before the start function
		put(got, s.Offset, s.Bytes)
	}
	for _, w := range stores {
		put(got, w.at, w.data)
	}
	for i := range merged {
		if !bytes.Equal(want[i], got[i]) {
			k := 0
			for want[i][k] == got[i][k] {
				k++
			}
			return fmt.Errorf("%w: rewritten memory differs at %#x (%#x, want %#x)", ErrCompact,
				merged[i].start+uint64(k), got[i][k], want[i][k])
		}
	}
	return nil
}
