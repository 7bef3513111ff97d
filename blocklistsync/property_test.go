package blocklistsync

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// forceCollisions narrows every key to mask (0: all keys equal) for the test's duration.
func collisionsForced() bool { return primaryMask != ^uint64(0) }

func forceCollisions(t *testing.T, mask uint64) {
	t.Helper()
	old := primaryMask
	primaryMask = mask
	t.Cleanup(func() { primaryMask = old })
}

// heldList reads back the list in shared data with its IDs, as the lease holder would.
func heldList(t *testing.T, r *rig, prefix string) (*Snapshot, List) {
	t.Helper()
	keys := KeysFor(prefix)
	snap, err := DecodeSnapshot(mustGet(t, r.store, keys.Snapshot))
	if err != nil {
		t.Fatal(err)
	}
	held, err := attachIDs(snap, mustGet(t, r.store, keys.IDs))
	if err != nil {
		t.Fatal(err)
	}
	return snap, held.list()
}

// TestCollidingJTIsStayDistinct: two jtis whose keys collide (forced: every key is equal) are
// two entries; a delta removing one leaves the other revoked. The same for subject cutoffs.
func TestCollidingJTIsStayDistinct(t *testing.T) {
	forceCollisions(t, 0)
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v1","entries":[{"jti":"alice"},{"jti":"bob"}],`+
		`"cutoffs":[{"sub":"u1","revoked_before":100},{"sub":"u2","revoked_before":200}]}`)
	snap, l := heldList(t, r, "jtiguard.")
	h := snap.Hasher()
	if h.TokenKey("", "alice") != h.TokenKey("", "bob") || h.TokenKey("", "carol") != h.TokenKey("", "bob") {
		t.Fatal("the test hook did not force a collision")
	}
	if snap.Len() != 2 || snap.Cutoffs() != 2 || l.Entries[0].ID == l.Entries[1].ID {
		t.Fatalf("colliding entries merged: %d entries, %d cutoffs", snap.Len(), snap.Cutoffs())
	}
	if b, ok := snap.CutoffFor(h.SubjectKey("", "u1"), 0); !ok || b != 200 {
		t.Fatalf("CutoffFor on colliding subjects = %d, %v; want the later cutoff, 200", b, ok)
	}

	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[{"jti":"alice"}],"cutoffs_removed":[{"sub":"u2"}]}`)
	snap, l = heldList(t, r, "jtiguard.")
	_, bobID := keyAndID(h, domainToken, "", "", "bob")
	if snap.Len() != 1 || l.Entries[0].ID != bobID || !snap.Revoked(h.TokenKey("", "bob"), 0) {
		t.Fatalf("removing alice: %d entries left (%v); want bob alone, still revoked", snap.Len(), l.Entries)
	}
	if b, ok := snap.CutoffFor(h.SubjectKey("", "u1"), 0); !ok || b != 100 {
		t.Fatalf("after removing u2's cutoff, CutoffFor = %d, %v; want u1's 100", b, ok)
	}

	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v2","version":"v3","added":[],"removed":[{"jti":"bob"}],"cutoffs_removed":[{"sub":"u1"}]}`)
	if snap, _ = heldList(t, r, "jtiguard."); snap.Len() != 0 || snap.Revoked(h.TokenKey("", "bob"), 0) || snap.Cutoffs() != 0 {
		t.Fatal("removing bob left an entry")
	}
}

// source is the reference model: what the revocation source holds, as strings.
type source struct {
	entries map[string]uint32    // jti → exp (0: none)
	claims  map[[2]string]uint32 // (claim, value) → exp: claim entries
	cutoffs map[string]uint32    // sub → revoked_before
	version int
}

// modelClaims are the claims the model revokes by; their values are drawn from the same
// universe as the jtis, so a claim entry and a jti entry often have the same text.
var modelClaims = []string{"sid", "org"}

func claimJSON(c [2]string, exp uint32, withExp bool) string {
	if !withExp {
		return fmt.Sprintf(`{"claim":%q,"value":%q}`, c[0], c[1])
	}
	return fmt.Sprintf(`{"claim":%q,"value":%q,"exp":%d}`, c[0], c[1], exp)
}

func (s *source) snapshotJSON() string {
	var e, c []string
	for _, j := range slices.Sorted(maps.Keys(s.entries)) {
		e = append(e, fmt.Sprintf(`{"jti":%q,"exp":%d}`, j, s.entries[j]))
	}
	for _, c := range slices.SortedFunc(maps.Keys(s.claims), func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		e = append(e, claimJSON(c, s.claims[c], true))
	}
	for _, sub := range slices.Sorted(maps.Keys(s.cutoffs)) {
		c = append(c, fmt.Sprintf(`{"sub":%q,"revoked_before":%d}`, sub, s.cutoffs[sub]))
	}
	return fmt.Sprintf(`{"kind":"snapshot","version":"v%d","entries":[%s],"cutoffs":[%s]}`, s.version, strings.Join(e, ","), strings.Join(c, ","))
}

func (s *source) snapshotText() string {
	var b strings.Builder
	b.WriteString("# list\n")
	for _, j := range slices.Sorted(maps.Keys(s.entries)) {
		fmt.Fprintf(&b, "%s %d\n", j, s.entries[j])
	}
	return b.String()
}

// change makes a random change to the source and returns it as a delta body.
func (s *source) change(rng *rand.Rand, universe []string) string {
	base := s.version
	s.version++
	var added, removed, cutAdded, cutRemoved []string
	touched := map[string]bool{}
	for range rng.IntN(6) {
		j := universe[rng.IntN(len(universe))]
		if touched[j] {
			continue
		}
		touched[j] = true
		if rng.IntN(2) == 0 {
			exp := uint32(0)
			if rng.IntN(3) > 0 {
				exp = 1_800_000_000 + uint32(rng.IntN(1000))
			}
			added = append(added, fmt.Sprintf(`{"jti":%q,"exp":%d}`, j, exp))
			if old, ok := s.entries[j]; ok {
				exp = laterExp(old, exp) // re-adding keeps the later expiry
			}
			s.entries[j] = exp
		} else {
			removed = append(removed, fmt.Sprintf(`{"jti":%q}`, j))
			delete(s.entries, j)
		}
	}
	claimTouched := map[[2]string]bool{}
	for range rng.IntN(4) {
		c := [2]string{modelClaims[rng.IntN(len(modelClaims))], universe[rng.IntN(len(universe))]}
		if claimTouched[c] {
			continue
		}
		claimTouched[c] = true
		if rng.IntN(2) == 0 {
			exp := uint32(0)
			if rng.IntN(3) > 0 {
				exp = 1_800_000_000 + uint32(rng.IntN(1000))
			}
			added = append(added, claimJSON(c, exp, true))
			if old, ok := s.claims[c]; ok {
				exp = laterExp(old, exp) // re-adding keeps the later expiry, as for jtis
			}
			s.claims[c] = exp
		} else {
			removed = append(removed, claimJSON(c, 0, false))
			delete(s.claims, c)
		}
	}
	for range rng.IntN(3) {
		sub := "user-" + universe[rng.IntN(len(universe))]
		if touched[sub] {
			continue
		}
		touched[sub] = true
		if rng.IntN(2) == 0 {
			before := uint32(1_600_000_000 + rng.IntN(1000))
			cutAdded = append(cutAdded, fmt.Sprintf(`{"sub":%q,"revoked_before":%d}`, sub, before))
			s.cutoffs[sub] = before // an added cutoff replaces the one held
		} else {
			cutRemoved = append(cutRemoved, fmt.Sprintf(`{"sub":%q}`, sub))
			delete(s.cutoffs, sub)
		}
	}
	return fmt.Sprintf(`{"kind":"delta","base":"v%d","version":"v%d","added":[%s],"removed":[%s],"cutoffs_added":[%s],"cutoffs_removed":[%s]}`,
		base, s.version, strings.Join(added, ","), strings.Join(removed, ","), strings.Join(cutAdded, ","), strings.Join(cutRemoved, ","))
}

// check compares the shared list with the model: the same entries and cutoffs, identified by
// (key, ID), and lookups that answer exactly what the model says for every key.
func (s *source) check(t *testing.T, r *rig, universe []string, step int) {
	t.Helper()
	snap, l := heldList(t, r, "jtiguard.")
	h := snap.Hasher()
	var want List
	for j, exp := range s.entries {
		want.AddToken(h, "", j, exp)
	}
	for c, exp := range s.claims {
		k, id := claimKeyAndID(h, "", "", c[0], c[1])
		want.Entries = append(want.Entries, Entry{Key: k, ID: id, Exp: exp})
	}
	for sub, before := range s.cutoffs {
		want.AddCutoff(h, "", sub, before, 0)
	}
	want.Normalize(0)
	if fmt.Sprint(want.Entries) != fmt.Sprint(l.Entries) && len(want.Entries)+len(l.Entries) > 0 {
		t.Fatalf("step %d: entries\n got  %v\n want %v", step, l.Entries, want.Entries)
	}
	if fmt.Sprint(want.Cutoffs) != fmt.Sprint(l.Cutoffs) && len(want.Cutoffs)+len(l.Cutoffs) > 0 {
		t.Fatalf("step %d: cutoffs\n got  %v\n want %v", step, l.Cutoffs, want.Cutoffs)
	}
	for _, j := range universe {
		// A lookup answers for every entry whose key is the one asked, jti or claim: only
		// forced collisions make a jti's key another entry's.
		keyHeld := func(k uint64) bool {
			for m := range s.entries {
				if h.TokenKey("", m) == k {
					return true
				}
			}
			for c := range s.claims {
				if h.ClaimKey("", c[0], c[1]) == k {
					return true
				}
			}
			return false
		}
		k := h.TokenKey("", j)
		if got, want := snap.Revoked(k, uint32(r.now.Unix())), keyHeld(k); got != want {
			t.Fatalf("step %d: Revoked(%s) = %v; want %v", step, j, got, want)
		}
		for _, claim := range append(modelClaims, "other") {
			k := h.ClaimKey("", claim, j)
			if got, want := snap.Revoked(k, uint32(r.now.Unix())), keyHeld(k); got != want {
				t.Fatalf("step %d: Revoked(claim %s=%s) = %v; want %v", step, claim, j, got, want)
			}
		}
		if !collisionsForced() {
			_, jtiHeld := s.entries[j]
			_, sidHeld := s.claims[[2]string{"sid", j}]
			if snap.Revoked(h.TokenKey("", j), 0) != jtiHeld || snap.Revoked(h.ClaimKey("", "sid", j), 0) != sidHeld {
				t.Fatalf("step %d: %s: a jti entry and a sid entry of the same text are not independent", step, j)
			}
		}
		sk := h.SubjectKey("", "user-"+j)
		var wantBefore uint32
		wantCut := false
		for sub, b := range s.cutoffs {
			if h.SubjectKey("", sub) == sk {
				wantBefore, wantCut = max(wantBefore, b), true
			}
		}
		if b, ok := snap.CutoffFor(sk, uint32(r.now.Unix())); ok != wantCut || b != wantBefore {
			t.Fatalf("step %d: CutoffFor(user-%s) = %d, %v; want %d, %v", step, j, b, ok, wantBefore, wantCut)
		}
	}
}

// TestSyncMatchesReferenceModel: any sequence of snapshots (JSON or text), deltas, 304s,
// failures and deltas on a foreign base, over a generated set of jtis, leaves in shared data
// exactly the set the model holds. Half the runs force heavy key collisions.
func TestSyncMatchesReferenceModel(t *testing.T) {
	seeds := 150
	if testing.Short() {
		seeds = 20
	}
	for seed := range seeds {
		collide := seed%2 == 1
		t.Run(fmt.Sprintf("seed=%d/collisions=%v", seed, collide), func(t *testing.T) {
			if collide {
				forceCollisions(t, 0x7) // at most 8 distinct keys for dozens of jtis
			}
			rng := rand.New(rand.NewPCG(uint64(seed), 42))
			universe := jtis(fmt.Sprintf("s%d", seed), 12+rng.IntN(30))
			r := newRig(t)
			r.cfg.MaxShrink = 1 // random changes shrink a lot; the guard is tested elsewhere
			a := r.vm(1, "jtiguard.")
			src := &source{entries: map[string]uint32{}, claims: map[[2]string]uint32{}, cutoffs: map[string]uint32{}}
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, src.snapshotJSON())
			src.check(t, r, universe, 0)
			held := src.version // the version the filter holds
			for step := 1; step <= 40; step++ {
				c := r.pollNow(a)
				since := strings.TrimPrefix(c.header(":path"), "/v1/revocations")
				switch op := rng.IntN(10); {
				case op < 5 && since == fmt.Sprintf("?since=v%d", held): // a delta on the held version
					a.host.answer(200, jsonHeaders, src.change(rng, universe))
				case op < 6: // the source moved on twice: a delta on a base the filter lacks
					src.change(rng, universe)
					a.host.answer(200, jsonHeaders, src.change(rng, universe))
					c = r.pollNow(a) // the resync
					if c.header(":path") != "/v1/revocations" {
						t.Fatalf("step %d: no full request after a foreign base: %q", step, c.header(":path"))
					}
					a.host.answer(200, jsonHeaders, src.snapshotJSON())
				case op < 7:
					a.host.answer(500, nil, "")
					continue
				case op < 8 && len(src.cutoffs) == 0: // plain text carries no cutoffs or claim entries
					src.change(rng, universe)
					src.cutoffs = map[string]uint32{}
					src.claims = map[[2]string]uint32{}
					a.host.answer(200, [][2]string{{"content-type", "text/plain"}}, src.snapshotText())
				case op < 9 && since != "":
					a.host.answer(304, nil, "")
				default:
					src.change(rng, universe)
					a.host.answer(200, jsonHeaders, src.snapshotJSON())
				}
				snap, _ := heldList(t, r, "jtiguard.")
				held = src.version
				if snap.Version != fmt.Sprintf("v%d", src.version) && snap.Version != "" {
					t.Fatalf("step %d: held version %q; source at v%d", step, snap.Version, src.version)
				}
				if snap.Version == "" { // plain text has no version: the next poll is a full one
					held = -1
				}
				src.check(t, r, universe, step)
			}
		})
	}
}
