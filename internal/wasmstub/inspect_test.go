package wasmstub

import (
	"bytes"
	"errors"
	"testing"
)

func TestInspect(t *testing.T) {
	fBody := body(noLocals, i32Const(7), b(0x1A), b(end)) // i32.const 7; drop
	gBody := body(noLocals, b(end))
	seg0 := []byte("hello")
	m := module(
		sec(1, vec(b(0x60, 0x00, 0x00))),
		sec(2, vec(funcImport("env", "imp", 0))),
		sec(3, vec(leb(0), leb(0))),
		sec(5, vec(b(0x00, 0x01))),
		sec(10, vec(fBody, gBody)),
		sec(11, vec(
			cat(b(0x00), i32Const(300), b(end), leb(uint64(len(seg0))), seg0), // active, memory 0
			cat(b(0x01), leb(2), b('p', 'q')),                                 // passive
			cat(b(0x00), i32Const(8), b(end), leb(1), b('z')),
		)),
		custom("name", b(1), func() []byte {
			c := vec(nameAssoc(0, "env.imp"), nameAssoc(2, "g"))
			return cat(leb(uint64(len(c))), c)
		}()),
	)
	l, err := Inspect(m)
	if err != nil {
		t.Fatal(err)
	}
	if l.Size != len(m) || l.FuncImports != 1 || len(l.Funcs) != 2 {
		t.Fatalf("layout %+v", l)
	}
	want := []Func{{Index: 1, Name: "", Size: len(fBody)}, {Index: 2, Name: "g", Size: len(gBody)}}
	for i, f := range l.Funcs {
		if f != want[i] {
			t.Errorf("func %d = %+v, want %+v", i, f, want[i])
		}
	}
	total := 8
	var names []string
	for _, s := range l.Sections {
		total += s.Size
		names = append(names, s.Name)
	}
	if total != len(m) {
		t.Errorf("section sizes add up to %d, module is %d", total, len(m))
	}
	if got := l.Section("code"); got != len(sec(10, vec(fBody, gBody))) {
		t.Errorf("code section %d", got)
	}
	if l.Section("name") == 0 || l.Section("nothing") != 0 {
		t.Errorf("sections %v", names)
	}
	// Data: sorted by offset, passive first (offset 0), entry sizes include the headers.
	if len(l.Data) != 3 {
		t.Fatalf("data %+v", l.Data)
	}
	if d := l.Data[0]; !d.Passive || string(d.Bytes) != "pq" || d.EntrySize != 4 {
		t.Errorf("passive segment %+v", d)
	}
	if d := l.Data[1]; d.Offset != 8 || string(d.Bytes) != "z" || d.EntrySize != 1+2+1+1+1 {
		t.Errorf("segment at 8: %+v", d)
	}
	if d := l.Data[2]; d.Offset != 300 || !bytes.Equal(d.Bytes, seg0) || d.EntrySize != 1+3+1+1+5 {
		t.Errorf("segment at 300: %+v", d)
	}
}

func TestInspectRejects(t *testing.T) {
	good := module(sec(1, vec(b(0x60, 0x00, 0x00))), sec(3, vec(leb(0))), sec(10, vec(body(noLocals, b(end)))))
	if _, err := Inspect(good); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string][]byte{
		"not wasm":           []byte("\x00asn\x01\x00\x00\x00"),
		"component":          []byte("\x00asm\x0d\x00\x01\x00"),
		"truncated":          good[:len(good)-1],
		"bodies != declared": module(sec(1, vec(b(0x60, 0x00, 0x00))), sec(3, vec(leb(0), leb(0))), sec(10, vec(body(noLocals, b(end))))),
		"non-constant offset": module(sec(5, vec(b(0x00, 0x01))),
			sec(11, vec(cat(b(0x00), globalGet(0), b(end), leb(1), b('x'))))),
	} {
		if _, err := Inspect(m); !errors.Is(err, ErrBadModule) {
			t.Errorf("%s: err = %v, want ErrBadModule", name, err)
		}
	}
}

// FuzzInspect: any input yields a layout or ErrBadModule, never a panic, and a layout's sections
// add up to the input.
func FuzzInspect(f *testing.F) {
	f.Add(handModule())
	f.Add(dataModule(1, true, findfunctabLike(64, 4)))
	f.Fuzz(func(t *testing.T, m []byte) {
		l, err := Inspect(m)
		if err != nil {
			if !errors.Is(err, ErrBadModule) {
				t.Fatalf("error %v is not ErrBadModule", err)
			}
			return
		}
		total := 8
		for _, s := range l.Sections {
			total += s.Size
		}
		if total != len(m) {
			t.Fatalf("sections add up to %d of %d bytes", total, len(m))
		}
		// Compacting what Inspect reads either works or says why.
		if _, _, err := CompactData(m); err != nil && !errors.Is(err, ErrBadModule) && !errors.Is(err, ErrCompact) {
			t.Fatalf("CompactData: %v", err)
		}
	})
}
