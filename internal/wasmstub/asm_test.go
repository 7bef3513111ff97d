package wasmstub

// A tiny assembler for the hand-written test modules. It has its own LEB128 encoder so that the
// expected bytes do not come from the code under test.

func leb(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// leb5 is the fixed-width 5-byte form Go's linker uses for call targets.
func leb5(v uint32) []byte {
	return []byte{byte(v) | 0x80, byte(v>>7) | 0x80, byte(v>>14) | 0x80, byte(v>>21) | 0x80, byte(v >> 28)}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func b(bs ...byte) []byte { return bs }

func str(s string) []byte { return cat(leb(uint64(len(s))), []byte(s)) }

func vec(items ...[]byte) []byte { return cat(leb(uint64(len(items))), cat(items...)) }

func sec(id byte, content ...[]byte) []byte {
	c := cat(content...)
	return cat(b(id), leb(uint64(len(c))), c)
}

func custom(name string, content ...[]byte) []byte { return sec(0, str(name), cat(content...)) }

func header() []byte { return b(0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00) }

func module(sections ...[]byte) []byte { return cat(header(), cat(sections...)) }

// body encodes a code section entry: local groups, then instructions (the final end included by the caller).
func body(locals []byte, code ...[]byte) []byte {
	c := cat(locals, cat(code...))
	return cat(leb(uint64(len(c))), c)
}

var noLocals = leb(0)

func funcImport(mod, name string, typeIdx uint32) []byte {
	return cat(str(mod), str(name), b(0x00), leb(uint64(typeIdx)))
}

func export(name string, kind byte, idx uint32) []byte {
	return cat(str(name), b(kind), leb(uint64(idx)))
}

func nameAssoc(idx uint32, name string) []byte { return cat(leb(uint64(idx)), str(name)) }

const (
	i32 = 0x7F
	i64 = 0x7E
	end = 0x0B
)

// Opcodes used by the test modules.
func call(f uint32) []byte         { return cat(b(0x10), leb(uint64(f))) }
func returnCall(f uint32) []byte   { return cat(b(0x12), leb(uint64(f))) }
func refFunc(f uint32) []byte      { return cat(b(0xD2), leb(uint64(f))) }
func localGet(i uint32) []byte     { return cat(b(0x20), leb(uint64(i))) }
func localSet(i uint32) []byte     { return cat(b(0x21), leb(uint64(i))) }
func globalGet(i uint32) []byte    { return cat(b(0x23), leb(uint64(i))) }
func globalSet(i uint32) []byte    { return cat(b(0x24), leb(uint64(i))) }
func i32Const(v int32) []byte      { return cat(b(0x41), sleb(int64(v))) }
func callIndirect(t uint32) []byte { return cat(b(0x11), leb(uint64(t)), b(0x00)) }
func tableSet() []byte             { return b(0x26, 0x00) }

func sleb(v int64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(out, c)
		}
		out = append(out, c|0x80)
	}
}

// Function indices of handModule before any rewrite.
const (
	fnF0 = iota
	fnF1
	fnF2
	fnDirect
	fnIndirect
	fnStart
	fnRefFunc
	fnViaGlobal
	fnPassive
	fnKitchen
	fnTail
	numHandFuncs
)

var handFuncNames = [numHandFuncs]string{
	"f0", "f1", "f2", "direct", "indirect", "start", "reffunc", "viaglobal", "passive", "kitchen", "tail",
}

// handModule imports env.f0, env.f1 and env.f2, all (i32) -> i32, and reaches them in every way a
// function index can appear: direct calls, return_call, call_indirect through table slots filled by
// all eight element segment encodings, ref.func in code and in a global initializer, table.init
// from a passive segment, a start function, re-export of an import, and the name section.
//
// Given host functions f0..f2, the exports compute:
//
//	direct(x)    = f0(x) + f1(x) + f2(x)
//	indirect(s)  = table[s](100)     table: 0 f0, 1 f1, 2 f2, 3 direct, 4 f0, 5 f1, 9 f2, 10 f1
//	reffunc(x)   = f1(x)             via ref.func in code into slot 6
//	viaglobal(x) = f2(x)             via a funcref global initialized with ref.func into slot 7
//	passive(x)   = f2(x)             via table.init from a passive segment into slot 8
//	kitchen(x)   = f0(f2(x) + 37)    after a tour of immediates that could desynchronise a decoder
//	tail(x)      = f1(x)             via return_call
//	f1(x)        = f1(x)             the import re-exported
//	global g     = f1(7)             set by the start function
func handModule() []byte {
	typeFn := b(0x60, 0x01, i32, 0x01, i32) // t0 (i32) -> i32
	typeVoid := b(0x60, 0x00, 0x00)         // t1 () -> ()

	kitchen := body(vec(cat(leb(1), b(i64))), // one i64 local (local 1)
		localGet(0),
		b(0x02, 0x00), call(fnF2), b(end), // block (type 0): f2(x)
		localSet(0),
		b(0x42, 0x7F), localSet(1), // i64.const -1
		i32Const(0), i32Const(16), b(0x36, 0x02, 0x04), // i32.store offset=4: mem[4] = 16
		i32Const(100), i32Const(16), i32Const(4), b(0xFC, 0x0B, 0x00), // memory.fill mem[100..104] = 16
		i32Const(200), i32Const(0), i32Const(4), b(0xFC, 0x08, 0x00, 0x00), // memory.init data 0
		b(0xFC, 0x09, 0x00),                                                            // data.drop 0
		b(0x02, 0x40, 0x02, 0x40), localGet(0), b(0x0E, 0x01, 0x00, 0x01), b(end, end), // br_table
		i32Const(1), i32Const(2), i32Const(0), b(0x1C, 0x01, i32, 0x1A), // select (result i32); drop
		b(0xFD, 0x0C), []byte("\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10\x10"), // v128.const
		b(0xFD, 0x1B, 0x02, 0x1A),                                     // i32x4.extract_lane 2; drop
		b(0x43, 0x00, 0x00, 0xC0, 0x3F, 0xFC, 0x00, 0xC0, 0x1A),       // f32.const 1.5; i32.trunc_sat_f32_s; i32.extend8_s; drop
		b(0x44, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1A), // f64.const; drop
		i32Const(1), b(0x04, i32), i32Const(16), b(0x05), i32Const(0), b(end, 0x1A), // if (result i32) else end; drop
		b(0x03, 0x40, end),        // loop end
		b(0xD0, 0x70, 0xD1, 0x1A), // ref.null func; ref.is_null; drop
		b(0x3F, 0x00, 0x1A),       // memory.size; drop
		localGet(0),
		i32Const(0), b(0x28, 0x02, 0x04, 0x6A), // + i32.load offset=4 (16)
		i32Const(100), b(0x2D, 0x00, 0x00, 0x6A), // + i32.load8_u (16)
		i32Const(200), b(0x2D, 0x00, 0x00, 0x6A), // + i32.load8_u (5, from the passive data segment)
		call(fnF0),
		b(end))

	funcNames := make([][]byte, numHandFuncs)
	for i, n := range handFuncNames {
		funcNames[i] = nameAssoc(uint32(i), n)
	}

	return module(
		sec(1, vec(typeFn, typeVoid)),
		sec(2, vec(funcImport("env", "f0", 0), funcImport("env", "f1", 0), funcImport("env", "f2", 0))),
		sec(3, vec(leb(0), leb(0), leb(1), leb(0), leb(0), leb(0), leb(0), leb(0))),
		sec(4, vec(b(0x70, 0x00, 0x10))), // table funcref min 16
		sec(5, vec(b(0x00, 0x01))),       // memory min 1 page
		sec(6, vec(
			cat(b(i32, 0x01), i32Const(0), b(end)),    // g0 mut i32 = 0
			cat(b(0x70, 0x00), refFunc(fnF2), b(end)), // g1 funcref = ref.func f2
		)),
		sec(7, vec(
			export("direct", 0, fnDirect), export("indirect", 0, fnIndirect), export("reffunc", 0, fnRefFunc),
			export("viaglobal", 0, fnViaGlobal), export("passive", 0, fnPassive), export("kitchen", 0, fnKitchen),
			export("tail", 0, fnTail), export("f1", 0, fnF1), export("g", 3, 0), export("memory", 2, 0),
		)),
		sec(8, leb(fnStart)),
		sec(9, vec(
			cat(leb(0), i32Const(0), b(end), vec(leb(fnF0), leb(fnF1), leb(fnF2), leb(fnDirect))),         // slots 0-3
			cat(leb(1), b(0x00), vec(leb(fnF2))),                                                          // passive, for table.init
			cat(leb(2), leb(0), i32Const(10), b(end), b(0x00), vec(leb(fnF1))),                            // slot 10
			cat(leb(3), b(0x00), vec(leb(fnF1))),                                                          // declarative
			cat(leb(4), i32Const(4), b(end), vec(cat(refFunc(fnF0), b(end)), cat(refFunc(fnF1), b(end)))), // slots 4-5
			cat(leb(5), b(0x70), vec(cat(refFunc(fnF2), b(end)), b(0xD0, 0x70, end))),                     // passive exprs
			cat(leb(6), leb(0), i32Const(9), b(end), b(0x70), vec(cat(refFunc(fnF2), b(end)))),            // slot 9
			cat(leb(7), b(0x70), vec(cat(refFunc(fnF0), b(end)))),                                         // declarative exprs
		)),
		sec(12, leb(2)),
		sec(10, vec(
			body(noLocals, localGet(0), call(fnF0), localGet(0), call(fnF1), b(0x6A), localGet(0), call(fnF2), b(0x6A, end)),
			body(noLocals, i32Const(100), localGet(0), callIndirect(0), b(end)),
			body(noLocals, i32Const(7), call(fnF1), globalSet(0), b(end)),
			body(noLocals, i32Const(6), refFunc(fnF1), tableSet(), localGet(0), i32Const(6), callIndirect(0), b(end)),
			body(noLocals, i32Const(7), globalGet(1), tableSet(), localGet(0), i32Const(7), callIndirect(0), b(end)),
			body(noLocals, i32Const(8), i32Const(0), i32Const(1), b(0xFC, 0x0C, 0x01, 0x00), localGet(0), i32Const(8), callIndirect(0), b(end)),
			kitchen,
			body(noLocals, localGet(0), returnCall(fnF1), b(end)),
		)),
		sec(11, vec(
			cat(leb(1), vec(b(5), b(6), b(7), b(8))),      // passive [5 6 7 8]
			cat(leb(0), i32Const(300), b(end), vec(b(9))), // active at 300
		)),
		custom("producers", vec(cat(str("language"), vec(cat(str("asm"), str("1")))))),
		custom("name",
			b(0), leb(uint64(len(str("hand")))), str("hand"),
			sec(1, vec(funcNames...)),
			sec(2, vec(
				cat(leb(fnDirect), vec(nameAssoc(0, "x"))),
				cat(leb(fnKitchen), vec(nameAssoc(0, "x"), nameAssoc(1, "tmp"))),
			)),
		),
	)
}
