package wasmstub

// This file walks instruction sequences. Function indices can only be found by decoding every
// instruction's immediates (a 0x10 byte inside an i32.const is not a call), so every opcode of the
// core spec and of the proposals toolchains emit today (sign extension, saturating truncation, bulk
// memory, reference types, multi-value, SIMD and relaxed SIMD, threads, tail calls, exception
// handling in both encodings, function references, GC, multi-memory, memory64, wide arithmetic) is
// decoded; an unknown opcode is an error rather than a guess.

// funcIdx reads a function index and, when the index moves, records a patch that rewrites it in
// place with the same LEB width when it fits.
func (m *rewriter) funcIdx(r *reader) error {
	start := r.off
	v, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(v) >= uint64(len(m.newIndex)) {
		r.off = start
		return r.errf("function index %d out of range (%d functions)", v, len(m.newIndex))
	}
	if nv := m.newIndex[v]; nv != v {
		m.replace(start, r.off, appendULEB(nil, uint64(nv), r.off-start))
	}
	return nil
}

func skipU32s(r *reader, n int) error {
	for i := 0; i < n; i++ {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// blockType skips a block type: 0x40, a value type, or a non-negative s33 type index.
func blockType(r *reader) error {
	start := r.off
	v, err := r.sleb(33)
	if err != nil {
		return err
	}
	if v < 0 {
		switch c := r.b[start]; {
		case r.off-start != 1:
			r.off = start
			return r.errf("bad block type")
		case c == 0x63 || c == 0x64:
			return r.heapType()
		case c == 0x40 || (c >= 0x7B && c <= 0x7F) || (c >= 0x69 && c <= 0x74):
		default:
			r.off = start
			return r.errf("bad block type 0x%02x", c)
		}
	}
	return nil
}

// memarg skips alignment (with the multi-memory flag bit 6 announcing a memory index) and offset.
func memarg(r *reader) error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.uleb(64)
	return err
}

// instr decodes one instruction, recording patches for function indices, and returns its opcode
// so that expression walkers can track nesting.
func (m *rewriter) instr(r *reader) (byte, error) {
	op, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case op == 0x10 || op == 0x12 || op == 0xD2: // call, return_call, ref.func
		return op, m.funcIdx(r)
	case op >= 0x45 && op <= 0xC4: // numeric, including sign extension: no immediates
		return op, nil
	case op >= 0x28 && op <= 0x3E: // loads and stores
		return op, memarg(r)
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		return op, skipU32s(r, 1)
	}
	switch op {
	case 0x00, 0x01, 0x05, 0x0A, 0x0B, 0x0F, 0x19, 0x1A, 0x1B, 0xD1, 0xD3, 0xD4:
		// unreachable nop else throw_ref end return catch_all drop select ref.is_null ref.eq
		// ref.as_non_null
		return op, nil
	case 0x02, 0x03, 0x04, 0x06: // block loop if try
		return op, blockType(r)
	case 0x07, 0x08, 0x09, 0x0C, 0x0D, 0x14, 0x15, 0x18, 0x3F, 0x40, 0xD5, 0xD6:
		// catch throw rethrow br br_if call_ref return_call_ref delegate memory.size memory.grow
		// br_on_null br_on_non_null
		return op, skipU32s(r, 1)
	case 0x11, 0x13: // call_indirect, return_call_indirect: type index, table index
		return op, skipU32s(r, 2)
	case 0x0E: // br_table
		n, err := r.count()
		if err != nil {
			return op, err
		}
		return op, skipU32s(r, int(n)+1)
	case 0x1C: // select with types
		n, err := r.count()
		if err != nil {
			return op, err
		}
		for i := uint32(0); i < n; i++ {
			if err := r.valType(); err != nil {
				return op, err
			}
		}
		return op, nil
	case 0x1F: // try_table
		if err := blockType(r); err != nil {
			return op, err
		}
		n, err := r.count()
		if err != nil {
			return op, err
		}
		for i := uint32(0); i < n; i++ {
			kind, err := r.byte()
			if err != nil {
				return op, err
			}
			switch kind {
			case 0x00, 0x01: // catch, catch_ref: tag, label
				err = skipU32s(r, 2)
			case 0x02, 0x03: // catch_all, catch_all_ref: label
				err = skipU32s(r, 1)
			default:
				err = r.errf("unknown catch clause 0x%02x", kind)
			}
			if err != nil {
				return op, err
			}
		}
		return op, nil
	case 0x41:
		_, err := r.sleb(32)
		return op, err
	case 0x42:
		_, err := r.sleb(64)
		return op, err
	case 0x43:
		return op, r.skip(4)
	case 0x44:
		return op, r.skip(8)
	case 0xD0: // ref.null
		return op, r.heapType()
	case 0xFB:
		return op, prefixGC(r)
	case 0xFC:
		return op, prefixMisc(r)
	case 0xFD:
		return op, prefixSIMD(r)
	case 0xFE:
		return op, prefixAtomic(r)
	}
	r.off--
	return op, r.errf("unknown opcode 0x%02x", op)
}

func prefixMisc(r *reader) error {
	start := r.off
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7, sub >= 19 && sub <= 22: // trunc_sat, wide arithmetic
		return nil
	case sub == 8, sub == 10, sub == 12, sub == 14:
		// memory.init data mem, memory.copy mem mem, table.init elem table, table.copy table table
		return skipU32s(r, 2)
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill
		return skipU32s(r, 1)
	}
	r.off = start
	return r.errf("unknown 0xFC opcode %d", sub)
}

func prefixSIMD(r *reader) error {
	start := r.off
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // v128 loads and stores
		return memarg(r)
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		return r.skip(16)
	case sub >= 21 && sub <= 34: // extract_lane / replace_lane
		return r.skip(1)
	case sub >= 84 && sub <= 91: // load*_lane / store*_lane
		if err := memarg(r); err != nil {
			return err
		}
		return r.skip(1)
	case sub <= 0x113: // every other SIMD and relaxed-SIMD opcode has no immediates
		return nil
	}
	r.off = start
	return r.errf("unknown 0xFD opcode %d", sub)
}

func prefixAtomic(r *reader) error {
	start := r.off
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 2 || (sub >= 0x10 && sub <= 0x4E):
		return memarg(r)
	case sub == 3: // atomic.fence
		return r.skip(1)
	}
	r.off = start
	return r.errf("unknown 0xFE opcode %d", sub)
}

func prefixGC(r *reader) error {
	start := r.off
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 1 || (sub >= 6 && sub <= 7) || (sub >= 11 && sub <= 14) || sub == 16:
		return skipU32s(r, 1) // type index
	case (sub >= 2 && sub <= 5) || (sub >= 8 && sub <= 10) || (sub >= 17 && sub <= 19):
		return skipU32s(r, 2) // type index and field, count, data, elem or second type index
	case sub == 15 || (sub >= 26 && sub <= 30):
		return nil
	case sub >= 20 && sub <= 23: // ref.test, ref.cast
		return r.heapType()
	case sub == 24 || sub == 25: // br_on_cast(_fail): flags, label, two heap types
		if err := r.skip(1); err != nil {
			return err
		}
		if err := skipU32s(r, 1); err != nil {
			return err
		}
		if err := r.heapType(); err != nil {
			return err
		}
		return r.heapType()
	}
	r.off = start
	return r.errf("unknown 0xFB opcode %d", sub)
}

// constExpr walks an initializer expression up to its final end.
func (m *rewriter) constExpr(r *reader) error {
	depth := 0
	for {
		op, err := m.instr(r)
		if err != nil {
			return err
		}
		switch op {
		case 0x02, 0x03, 0x04, 0x06, 0x1F:
			depth++
		case 0x18: // delegate closes a try
			depth--
		case 0x0B:
			if depth == 0 {
				return nil
			}
			depth--
		}
	}
}

// body rewrites one code section entry: size, locals, instructions. If any rewritten index
// changed width, the size is re-encoded too.
func (m *rewriter) body(r *reader) error {
	sizeStart := r.off
	size, err := r.u32()
	if err != nil {
		return err
	}
	sizeEnd := r.off
	if uint64(size) > uint64(r.end-r.off) {
		return r.errf("function body of %d bytes, %d left", size, r.end-r.off)
	}
	b := &reader{b: r.b, off: r.off, end: r.off + int(size)}
	r.off = b.end
	first := len(m.patches)
	groups, err := b.count()
	if err != nil {
		return err
	}
	for i := uint32(0); i < groups; i++ {
		if _, err := b.u32(); err != nil {
			return err
		}
		if err := b.valType(); err != nil {
			return err
		}
	}
	if b.done() {
		return b.errf("function body without instructions")
	}
	var last byte
	for !b.done() {
		if last, err = m.instr(b); err != nil {
			return err
		}
	}
	if last != 0x0B {
		return b.errf("function body does not end with end")
	}
	if d := m.deltaSince(first); d != 0 {
		m.replace(sizeStart, sizeEnd, appendULEB(nil, uint64(int64(size)+d), sizeEnd-sizeStart))
	}
	return nil
}
