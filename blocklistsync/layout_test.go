package blocklistsync

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func buildSnapshot(t testing.TB, meta Meta, entries []Entry, cutoffs []Cutoff) *Snapshot {
	t.Helper()
	l := List{Entries: entries, Cutoffs: cutoffs}
	l.Normalize(0)
	raw, err := l.Encode(meta)
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSnapshot(raw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSnapshotRoundTripAndLookup(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 100, 10_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			entries := make([]Entry, n)
			for i := range entries {
				entries[i] = Entry{Key: TokenKey("", fmt.Sprintf("jti-%d", i)), Exp: uint32(1000 + i%2*1000)}
			}
			meta := Meta{Generation: 7, Built: time.UnixMilli(123456), Version: "v9", ETag: `"e"`, KeyedByIssuer: true}
			s := buildSnapshot(t, meta, entries, []Cutoff{{Key: SubjectKey("", "u"), RevokedBefore: 500, Exp: 3000}})
			if s.Generation != 7 || s.Version != "v9" || s.ETag != `"e"` || !s.KeyedByIssuer || !s.Built.Equal(meta.Built) {
				t.Fatalf("meta = %+v; want %+v", s.Meta, meta)
			}
			if s.Len() != n {
				t.Fatalf("Len = %d; want %d", s.Len(), n)
			}
			for i := 0; i < n; i++ {
				k := TokenKey("", fmt.Sprintf("jti-%d", i))
				if !s.Revoked(k, 999) {
					t.Fatalf("entry %d not found", i)
				}
				wantAfter := i%2 == 1 // exp 2000 still live at 1500
				if got := s.Revoked(k, 1500); got != wantAfter {
					t.Fatalf("entry %d Revoked at 1500 = %v; want %v", i, got, wantAfter)
				}
			}
			for i := n; i < n+1000; i++ {
				if s.Revoked(TokenKey("", fmt.Sprintf("jti-%d", i)), 0) {
					t.Fatalf("absent entry %d reported revoked", i)
				}
			}
			if b, ok := s.CutoffFor(SubjectKey("", "u"), 100); !ok || b != 500 {
				t.Fatalf("CutoffFor = %d, %v; want 500, true", b, ok)
			}
			if _, ok := s.CutoffFor(SubjectKey("", "u"), 3000); ok {
				t.Fatal("cutoff still live after its expiry")
			}
		})
	}
}

func TestEntryWithoutExpiryNeverLapses(t *testing.T) {
	s := buildSnapshot(t, Meta{}, []Entry{{Key: TokenKey("", "a")}}, nil)
	if !s.Revoked(TokenKey("", "a"), 1<<32-1) {
		t.Fatal("exp 0 entry lapsed")
	}
}

func TestNormalizeMergesAndDropsExpired(t *testing.T) {
	a, b, c := TokenKey("", "a"), TokenKey("", "b"), TokenKey("", "c")
	l := List{Entries: []Entry{{a, 10}, {b, 5}, {a, 20}, {c, 0}, {c, 7}}}
	l.Normalize(6)
	want := map[uint64]uint32{a: 20, c: 0}
	if len(l.Entries) != 2 {
		t.Fatalf("entries = %v; want 2", l.Entries)
	}
	for _, e := range l.Entries {
		if want[e.Key] != e.Exp {
			t.Fatalf("entry %x exp = %d; want %d", e.Key, e.Exp, want[e.Key])
		}
	}
}

func TestDecodeSnapshotRejectsMalformed(t *testing.T) {
	good, _ := EncodeSnapshot(Meta{Version: "v"}, []Entry{{Key: 5, Exp: 1}, {Key: 9, Exp: 1}}, nil)
	unsorted, _ := EncodeSnapshot(Meta{}, []Entry{{Key: 9}, {Key: 5}}, nil)
	dup, _ := EncodeSnapshot(Meta{}, []Entry{{Key: 5}, {Key: 5}}, nil)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XXXX"), good[4:]...)},
		{"truncated", good[:len(good)-1]},
		{"extra byte", append(append([]byte(nil), good...), 0)},
		{"unsorted keys", unsorted},
		{"duplicate keys", dup},
		{"future format", func() []byte { b := append([]byte(nil), good...); b[4] = 9; return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSnapshot(tt.b); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("DecodeSnapshot = %v; want ErrBadSnapshot", err)
			}
		})
	}
}

func TestGenerationRoundTrip(t *testing.T) {
	g := Generation{Number: 42, LastSuccess: time.UnixMilli(1700000000123), Entries: 3, Cutoffs: 1}
	got, err := ParseGeneration(g.MarshalBinary())
	if err != nil || got.Number != 42 || !got.LastSuccess.Equal(g.LastSuccess) || got.Entries != 3 || got.Cutoffs != 1 {
		t.Fatalf("ParseGeneration = %+v, %v; want %+v", got, err, g)
	}
	if _, err := ParseGeneration([]byte("short")); !errors.Is(err, ErrBadGeneration) {
		t.Fatalf("short record error = %v; want ErrBadGeneration", err)
	}
}

func TestKeysAreDomainSeparated(t *testing.T) {
	if TokenKey("", "x") == SubjectKey("", "x") {
		t.Fatal("token and subject keys collide")
	}
	if TokenKey("ab", "c") == TokenKey("a", "bc") {
		t.Fatal("issuer/jti boundary is ambiguous")
	}
	if TokenKey("", "x") != TokenKey("", "x") {
		t.Fatal("hash is not deterministic")
	}
}
