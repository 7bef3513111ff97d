package wasmstub

import "sort"

// Subsections of the "name" custom section that are keyed by function index: function names, and
// local and label names (maps of function index to a name map). The others (module name, type,
// table, memory, global, elem, data, field and tag names) do not mention functions and are copied.
const (
	nameFunctions = 1
	nameLocals    = 2
	nameLabels    = 3
)

type nameEntry struct {
	idx uint32
	raw []byte // the rest of the entry: a name, or a whole inner name map
}

// nameSection rewrites the function indices of the name section so that Envoy's stack traces keep
// naming the right functions. A removed import's names move to its stub, so the stub appears in a
// trace under the name of the import it replaces. The content is replaced only if an index moved.
func (m *rewriter) nameSection(r *reader) error {
	start := r.off
	var out []byte
	changed := false
	for !r.done() {
		subStart := r.off
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		if uint64(size) > uint64(r.end-r.off) {
			return r.errf("name subsection of %d bytes, %d left", size, r.end-r.off)
		}
		sub := &reader{b: r.b, off: r.off, end: r.off + int(size)}
		r.off = sub.end
		if id != nameFunctions && id != nameLocals && id != nameLabels {
			out = append(out, r.b[subStart:r.off]...)
			continue
		}
		entries, moved, err := m.nameMap(sub, id != nameFunctions)
		if err != nil {
			return err
		}
		if !sub.done() {
			return sub.errf("name subsection %d has trailing bytes", id)
		}
		if !moved {
			out = append(out, r.b[subStart:r.off]...)
			continue
		}
		content := appendULEB(nil, uint64(len(entries)), 0)
		for _, e := range entries {
			content = appendULEB(content, uint64(e.idx), 0)
			content = append(content, e.raw...)
		}
		changed = true
		out = append(out, id)
		out = appendULEB(out, uint64(len(content)), 0)
		out = append(out, content...)
	}
	if changed {
		m.replace(start, r.end, out)
	}
	return nil
}

// nameMap reads a name map (or, if indirect, a map of function index to name map), renumbers its
// function indices and sorts it again, as the section requires ascending indices and the stubs now
// sit at the end.
func (m *rewriter) nameMap(r *reader, indirect bool) (entries []nameEntry, moved bool, err error) {
	n, err := r.count()
	if err != nil {
		return nil, false, err
	}
	entries = make([]nameEntry, 0, n)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		if uint64(idx) >= uint64(len(m.newIndex)) {
			return nil, false, r.errf("name for function %d, which does not exist", idx)
		}
		start := r.off
		if indirect {
			inner, err := r.count()
			if err != nil {
				return nil, false, err
			}
			for j := uint32(0); j < inner; j++ {
				if _, err := r.u32(); err != nil {
					return nil, false, err
				}
				if _, err := r.name(); err != nil {
					return nil, false, err
				}
			}
		} else if _, err := r.name(); err != nil {
			return nil, false, err
		}
		moved = moved || m.newIndex[idx] != idx
		entries = append(entries, nameEntry{idx: m.newIndex[idx], raw: r.b[start:r.off]})
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].idx < entries[j].idx })
	return entries, moved, nil
}
