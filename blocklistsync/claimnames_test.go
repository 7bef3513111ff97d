package blocklistsync

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// The snapshot names the claims its claim entries revoke by, so a worker reads exactly
// those claims of every token: a claim entry must never be held by a list whose readers do
// not look for its claim.

func TestSnapshotCarriesClaimNames(t *testing.T) {
	for _, names := range [][]string{nil, {"sid"}, {"family", "sid", "tenant"}, {"a", "b", "c", "d", "e", "f", "g", "h"}, {strings.Repeat("x", MaxClaimNameLen)}} {
		t.Run(fmt.Sprint(len(names)), func(t *testing.T) {
			var l List
			for _, c := range names {
				if err := l.AddClaim(testHasher, "", c, "v-"+c, 0); err != nil {
					t.Fatal(err)
				}
			}
			l.AddToken(testHasher, "", "j", 0)
			l.Normalize(0)
			enc, err := l.Encode(Meta{Generation: 1, Version: "v", ETag: `"e"`, Hasher: testHasher})
			if err != nil {
				t.Fatal(err)
			}
			s, err := DecodeSnapshot(enc.Snapshot)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Claims(), names) || s.Version != "v" || s.ETag != `"e"` {
				t.Fatalf("claims %q version %q etag %q; want %q, v, \"e\"", s.Claims(), s.Version, s.ETag, names)
			}
			for _, c := range names {
				if !s.Revoked(testHasher.ClaimKey("", c, "v-"+c), 0) {
					t.Fatalf("claim entry %s not found", c)
				}
			}
			if !s.Revoked(testHasher.TokenKey("", "j"), 0) {
				t.Fatal("jti entry not found after the claim names")
			}
		})
	}
}

func TestClaimNamesAreBoundedAndChecked(t *testing.T) {
	var l List
	for i := range MaxClaimNames {
		if err := l.AddClaim(testHasher, "", fmt.Sprintf("c%d", i), "v", 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AddClaim(testHasher, "", "c0", "w", 0); err != nil {
		t.Fatalf("a name already held: %v", err)
	}
	if err := l.AddClaim(testHasher, "", "one-more", "v", 0); !errors.Is(err, errTooManyClaims) {
		t.Fatalf("a ninth name: %v; want errTooManyClaims", err)
	}
	for _, bad := range []string{"jti", "sub", "iss", "iat", "", "a b", strings.Repeat("x", MaxClaimNameLen+1)} {
		if err := l.AddClaim(testHasher, "", bad, "v", 0); err == nil {
			t.Errorf("AddClaim(%q) accepted", bad)
		}
	}
	for _, names := range [][]string{{"b", "a"}, {"a", "a"}, {"iss"}, {"a", "b", "c", "d", "e", "f", "g", "h", "i"}} {
		if _, err := EncodeSnapshot(Meta{Hasher: testHasher, Claims: names}, nil, nil); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("EncodeSnapshot with claims %q: %v; want ErrBadSnapshot", names, err)
		}
	}
}

func TestDecodeSnapshotRejectsBadClaimNames(t *testing.T) {
	good, err := EncodeSnapshot(Meta{Hasher: testHasher, Version: "v", Claims: []string{"a", "sid"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := snapHeader + 1 // after the version "v"
	for name, mutate := range map[string]func(b []byte) []byte{
		"count past the bytes": func(b []byte) []byte { b[34] = 3; return b },
		"count too large":      func(b []byte) []byte { b[34] = MaxClaimNames + 1; return b },
		"length past the end":  func(b []byte) []byte { b[names+2] = 200; return b },
		"not ascending":        func(b []byte) []byte { b[names+1] = 't'; return b },
		"a name not allowed":   func(b []byte) []byte { copy(b[names+3:], "iss"); return b },
		"a control byte":       func(b []byte) []byte { b[names+3] = '\n'; return b },
		"cut short":            func(b []byte) []byte { return b[:len(b)-1] },
	} {
		t.Run(name, func(t *testing.T) {
			b := mutate(slices.Clone(good.Snapshot))
			if _, err := DecodeSnapshot(b); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("DecodeSnapshot: %v; want ErrBadSnapshot", err)
			}
		})
	}
	if s, err := DecodeSnapshot(good.Snapshot); err != nil || !slices.Equal(s.Claims(), []string{"a", "sid"}) {
		t.Fatalf("unchanged: %v, %q", err, s.Claims())
	}
}

func TestFeedClaimNames(t *testing.T) {
	lim := FeedLimits{MaxEntries: 100, Hasher: testHasher}
	u, err := ParseFeed([]byte(`{"kind":"snapshot","version":"v","entries":[{"claim":"sid","value":"s1"},{"jti":"j"},{"claim":"family","value":"f"},{"claim":"sid","value":"s2"}]}`), jsonCT, lim)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.Add.Claims, []string{"family", "sid"}) {
		t.Fatalf("claims = %q; want [family sid]", u.Add.Claims)
	}
	// Removals name no claim the list needs to read.
	u, err = ParseFeed([]byte(`{"kind":"delta","base":"a","version":"b","added":[],"removed":[{"claim":"sid","value":"s1"}]}`), jsonCT, lim)
	if err != nil || len(u.Add.Claims) != 0 {
		t.Fatalf("delta removing a claim entry: %v, claims %q", err, u.Add.Claims)
	}
	var items []string
	for i := range MaxClaimNames + 1 {
		items = append(items, fmt.Sprintf(`{"claim":"c%d","value":"v"}`, i))
	}
	_, err = ParseFeed([]byte(`{"kind":"snapshot","version":"v","entries":[`+strings.Join(items, ",")+`]}`), jsonCT, lim)
	if !errors.Is(err, ErrBadFeed) || !strings.Contains(err.Error(), "more than 8 distinct claims") {
		t.Fatalf("nine claim names: %v; want ErrBadFeed naming the bound", err)
	}
}

// TestDeltaClaimNames: a delta's names join the held list's; one past the bound asks for the
// full list, which names only what it still holds.
func TestDeltaClaimNames(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[{"claim":"sid","value":"s1"}]}`)
	if got := a.snap(t).Claims(); !slices.Equal(got, []string{"sid"}) {
		t.Fatalf("claims after the snapshot = %q", got)
	}
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}},
		`{"kind":"delta","base":"v1","version":"v2","added":[{"claim":"c0","value":"x"},{"claim":"c1","value":"x"}],"removed":[{"claim":"sid","value":"s1"}]}`)
	snap := a.snap(t)
	if !slices.Equal(snap.Claims(), []string{"c0", "c1", "sid"}) || snap.Revoked(snap.Hasher().ClaimKey("", "sid", "s1"), 0) {
		t.Fatalf("claims after the delta = %q; want the union, and sid=s1 removed", snap.Claims())
	}
	var items []string
	for i := 2; i < MaxClaimNames; i++ {
		items = append(items, fmt.Sprintf(`{"claim":"c%d","value":"x"}`, i))
	}
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}},
		`{"kind":"delta","base":"v2","version":"v3","added":[`+strings.Join(items, ",")+`],"removed":[]}`)
	if v := a.snap(t).Version; v != "v2" || r.metrics.get("sync.resyncs") != 1 {
		t.Fatalf("a delta past the bound: version %q, resyncs %d; want v2 kept and a resync", v, r.metrics.get("sync.resyncs"))
	}
	a.sync.Tick()
	if c := a.host.pending(); c.header(":path") != "/v1/revocations" {
		t.Fatalf("resync poll path %q", c.header(":path"))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v3","entries":[{"claim":"c7","value":"x"}]}`)
	if got := a.snap(t).Claims(); !slices.Equal(got, []string{"c7"}) {
		t.Fatalf("claims after the resync = %q; want [c7]", got)
	}
}

// TestReaderKeepsTheClaimNamesSlice: while the names stay the same, a new snapshot hands out
// the same slice, so the filter can tell by identity that its tokens' claims are current.
func TestReaderKeepsTheClaimNamesSlice(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[{"claim":"sid","value":"s1"}]}`)
	first := a.snap(t).Claims()
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v2","entries":[{"claim":"sid","value":"s2"}]}`)
	second := a.snap(t).Claims()
	if a.snap(t).Version != "v2" || &first[0] != &second[0] {
		t.Fatal("the same names came as a new slice")
	}
	r.advance(r.cfg.Interval.D() + time.Millisecond)
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v3","entries":[{"claim":"sid","value":"s2"},{"claim":"org","value":"o"}]}`)
	if got := a.snap(t).Claims(); !slices.Equal(got, []string{"org", "sid"}) {
		t.Fatalf("claims = %q", got)
	}
}

// snap is the list the VM reads now.
func (v *vm) snap(t *testing.T) *Snapshot {
	t.Helper()
	s, _, err := v.reader.Reload()
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	return s
}
