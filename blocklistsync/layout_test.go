package blocklistsync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testHasher is a fixed key for tests that do not care which.
var testHasher = Hasher{0x1111111111111111, 0x2222222222222222}

func tokenEntry(iss, jti string, exp uint32) Entry {
	var l List
	l.AddToken(testHasher, iss, jti, exp)
	return l.Entries[0]
}

func subjectCutoff(iss, sub string, before, exp uint32) Cutoff {
	var l List
	l.AddCutoff(testHasher, iss, sub, before, exp)
	return l.Cutoffs[0]
}

func buildEncoded(t testing.TB, meta Meta, entries []Entry, cutoffs []Cutoff) Encoded {
	t.Helper()
	if meta.Hasher.IsZero() {
		meta.Hasher = testHasher
	}
	l := List{Entries: entries, Cutoffs: cutoffs}
	l.Normalize(0)
	enc, err := l.Encode(meta)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func buildSnapshot(t testing.TB, meta Meta, entries []Entry, cutoffs []Cutoff) *Snapshot {
	t.Helper()
	s, err := DecodeSnapshot(buildEncoded(t, meta, entries, cutoffs).Snapshot)
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
				entries[i] = tokenEntry("", fmt.Sprintf("jti-%d", i), uint32(1000+i%2*1000))
			}
			meta := Meta{Generation: 7, Built: time.UnixMilli(123456), Version: "v9", ETag: `"e"`, KeyedByIssuer: true, Hasher: testHasher, BuildID: 99}
			s := buildSnapshot(t, meta, entries, []Cutoff{subjectCutoff("", "u", 500, 3000)})
			if s.Generation != 7 || s.Version != "v9" || s.ETag != `"e"` || !s.KeyedByIssuer || !s.Built.Equal(meta.Built) ||
				s.Hasher() != testHasher || s.BuildID != 99 {
				t.Fatalf("meta = %+v; want %+v", s.Meta, meta)
			}
			if s.Len() != n || s.Cutoffs() != 1 {
				t.Fatalf("Len, Cutoffs = %d, %d; want %d, 1", s.Len(), s.Cutoffs(), n)
			}
			h := s.Hasher()
			for i := 0; i < n; i++ {
				k := h.TokenKey("", fmt.Sprintf("jti-%d", i))
				if !s.Revoked(k, 999) {
					t.Fatalf("entry %d not found", i)
				}
				wantAfter := i%2 == 1 // exp 2000 still live at 1500
				if got := s.Revoked(k, 1500); got != wantAfter {
					t.Fatalf("entry %d Revoked at 1500 = %v; want %v", i, got, wantAfter)
				}
			}
			for i := n; i < n+1000; i++ {
				if s.Revoked(h.TokenKey("", fmt.Sprintf("jti-%d", i)), 0) {
					t.Fatalf("absent entry %d reported revoked", i)
				}
			}
			if b, ok := s.CutoffFor(h.SubjectKey("", "u"), 100); !ok || b != 500 {
				t.Fatalf("CutoffFor = %d, %v; want 500, true", b, ok)
			}
			if _, ok := s.CutoffFor(h.SubjectKey("", "u"), 3000); ok {
				t.Fatal("cutoff still live after its expiry")
			}
			if _, ok := s.CutoffFor(h.SubjectKey("", "v"), 0); ok {
				t.Fatal("cutoff of another subject")
			}
		})
	}
}

func TestEntryWithoutExpiryNeverLapses(t *testing.T) {
	s := buildSnapshot(t, Meta{}, []Entry{tokenEntry("", "a", 0)}, nil)
	if !s.Revoked(testHasher.TokenKey("", "a"), 1<<32-1) {
		t.Fatal("exp 0 entry lapsed")
	}
}

func TestNormalizeMergesTheSameEntryAndDropsExpired(t *testing.T) {
	l := List{Entries: []Entry{tokenEntry("", "a", 10), tokenEntry("", "b", 5), tokenEntry("", "a", 20), tokenEntry("", "c", 0), tokenEntry("", "c", 7)}}
	l.Normalize(6)
	want := map[uint64]uint32{testHasher.TokenKey("", "a"): 20, testHasher.TokenKey("", "c"): 0}
	if len(l.Entries) != 2 {
		t.Fatalf("entries = %v; want 2", l.Entries)
	}
	for _, e := range l.Entries {
		if exp, ok := want[e.Key]; !ok || exp != e.Exp {
			t.Fatalf("entry %x exp = %d; want %d", e.Key, e.Exp, want[e.Key])
		}
	}
}

// TestCollidingEntriesStayApart: two entries with one key but different IDs (different jtis
// whose 64-bit keys collide) are kept as two; a lookup of the key sees the live one.
func TestCollidingEntriesStayApart(t *testing.T) {
	l := List{
		Entries: []Entry{{Key: 7, ID: 2, Exp: 100}, {Key: 7, ID: 1, Exp: 0}, {Key: 7, ID: 2, Exp: 50}, {Key: 9, ID: 1, Exp: 10}},
		Cutoffs: []Cutoff{{Key: 3, ID: 1, RevokedBefore: 10, Exp: 20}, {Key: 3, ID: 2, RevokedBefore: 5, Exp: 0}},
	}
	l.Normalize(0)
	want := []Entry{{7, 1, 0}, {7, 2, 100}, {9, 1, 10}}
	if fmt.Sprint(l.Entries) != fmt.Sprint(want) {
		t.Fatalf("normalized = %v; want %v", l.Entries, want)
	}
	enc, err := l.Encode(Meta{Hasher: testHasher})
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeSnapshot(enc.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Revoked(7, 1000) { // the entry without expiry
		t.Fatal("colliding key not revoked")
	}
	if b, ok := s.CutoffFor(3, 15); !ok || b != 10 {
		t.Fatalf("CutoffFor(3) at 15 = %d, %v; want the later live cutoff 10", b, ok)
	}
	if b, ok := s.CutoffFor(3, 25); !ok || b != 5 {
		t.Fatalf("CutoffFor(3) at 25 = %d, %v; want 5 (the other expired)", b, ok)
	}
	held, err := attachIDs(s, enc.IDs)
	if err != nil {
		t.Fatal(err)
	}
	if got := held.list(); fmt.Sprint(got.Entries) != fmt.Sprint(want) {
		t.Fatalf("entries read back with IDs = %v; want %v", got.Entries, want)
	}
}

func TestEncodeRefusesUnsortedOrKeyless(t *testing.T) {
	for name, tc := range map[string]struct {
		meta    Meta
		entries []Entry
	}{
		"no hasher":    {Meta{}, nil},
		"unsorted":     {Meta{Hasher: testHasher}, []Entry{{Key: 9, ID: 1}, {Key: 5, ID: 1}}},
		"same key, id": {Meta{Hasher: testHasher}, []Entry{{Key: 5, ID: 1}, {Key: 5, ID: 1}}},
		"ids unsorted": {Meta{Hasher: testHasher}, []Entry{{Key: 5, ID: 2}, {Key: 5, ID: 1}}},
		"zero key":     {Meta{Hasher: testHasher}, []Entry{{Key: 0, ID: 1}}},
		"long version": {Meta{Hasher: testHasher, Version: string(make([]byte, MaxVersionLen+1))}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := EncodeSnapshot(tc.meta, tc.entries, nil); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("EncodeSnapshot = %v; want ErrBadSnapshot", err)
			}
		})
	}
}

func TestDecodeSnapshotRejectsMalformed(t *testing.T) {
	good := buildEncoded(t, Meta{Version: "v"}, []Entry{{Key: 5, ID: 1, Exp: 1}, {Key: 9, ID: 1, Exp: 1}}, nil).Snapshot
	withKeys := func(keys ...uint64) []byte {
		b := bytes.Clone(good)
		off := snapHeader + 1
		for i, k := range keys {
			binary.LittleEndian.PutUint64(b[off+8*i:], k)
		}
		return b
	}
	format1 := bytes.Clone(good)
	binary.LittleEndian.PutUint16(format1[4:], 1)
	noKey := bytes.Clone(good)
	copy(noKey[offHashKey:offHashKey+16], make([]byte, 16))
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrBadSnapshot},
		{"bad magic", append([]byte("XXXX"), good[4:]...), ErrBadSnapshot},
		{"truncated", good[:len(good)-1], ErrBadSnapshot},
		{"short header", good[:snapHeader-1], ErrBadSnapshot},
		{"extra byte", append(bytes.Clone(good), 0), ErrBadSnapshot},
		{"unsorted keys", withKeys(9, 5), ErrBadSnapshot},
		{"zero key", withKeys(0, 5), ErrBadSnapshot},
		{"no hash key", noKey, ErrBadSnapshot},
		{"format 1 (unkeyed FNV)", format1, ErrSnapshotFormat},
		{"future format", func() []byte { b := bytes.Clone(good); b[4] = 9; return b }(), ErrSnapshotFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSnapshot(tt.b); !errors.Is(err, tt.want) || !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("DecodeSnapshot = %v; want %v (an ErrBadSnapshot)", err, tt.want)
			}
		})
	}
	if _, err := DecodeSnapshot(withKeys(5, 5)); err != nil {
		t.Fatalf("equal keys (a collision) refused: %v", err)
	}
}

func TestAttachIDsRefusesForeignRecords(t *testing.T) {
	enc := buildEncoded(t, Meta{BuildID: 1}, []Entry{{Key: 5, ID: 1}, {Key: 9, ID: 1}}, []Cutoff{{Key: 3, ID: 4, RevokedBefore: 1}})
	other := buildEncoded(t, Meta{BuildID: 2}, []Entry{{Key: 5, ID: 1}, {Key: 9, ID: 1}}, []Cutoff{{Key: 3, ID: 4, RevokedBefore: 1}})
	s, err := DecodeSnapshot(enc.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attachIDs(s, enc.IDs); err != nil {
		t.Fatalf("own IDs refused: %v", err)
	}
	unsorted := bytes.Clone(enc.IDs)
	binary.LittleEndian.PutUint64(unsorted[idsHeader:], 5)
	binary.LittleEndian.PutUint64(unsorted[idsHeader+8:], 1)
	s2, _ := DecodeSnapshot(buildEncoded(t, Meta{BuildID: 1}, []Entry{{Key: 5, ID: 1}, {Key: 5, ID: 2}}, nil).Snapshot)
	for name, tc := range map[string]struct {
		s   *Snapshot
		raw []byte
	}{
		"another build": {s, other.IDs},
		"truncated":     {s, enc.IDs[:len(enc.IDs)-1]},
		"empty":         {s, nil},
		"bad magic":     {s, append([]byte("XXXX"), enc.IDs[4:]...)},
		"not ascending": {s2, func() []byte {
			b := bytes.Clone(buildEncoded(t, Meta{BuildID: 1}, []Entry{{Key: 5, ID: 1}, {Key: 5, ID: 2}}, nil).IDs)
			binary.LittleEndian.PutUint64(b[idsHeader:], 3)
			binary.LittleEndian.PutUint64(b[idsHeader+8:], 2)
			return b
		}()},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := attachIDs(tc.s, tc.raw); !errors.Is(err, errBadIDs) {
				t.Fatalf("attachIDs = %v; want errBadIDs", err)
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
