package revocationsource

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

func claimPut(claim, value string, exp int64) Change {
	return Change{Op: OpPutEntry, Entry: ClaimEntry("", claim, value, exp)}
}

// TestClaimEntriesAreTheirOwnItems: a claim entry, a jti entry of the same
// text and another claim of the same value are three items, with their own
// expiry, and each changes the version.
func TestClaimEntriesAreTheirOwnItems(t *testing.T) {
	clock := newFakeClock(t0)
	x := NewIndex(clock.Now, 0)
	x.SetExpiryGrace(0)
	v0 := x.Version()
	x.Apply([]Change{put("s1", 0)})
	v1 := x.Version()
	x.Apply([]Change{claimPut("sid", "s1", t0+10)})
	v2 := x.Version()
	x.Apply([]Change{claimPut("org", "s1", 0)})
	if v := x.Version(); v == v0 || v == v1 || v == v2 || v1 == v2 {
		t.Fatal("a claim entry did not change the version, or named an existing one")
	}
	if n, _ := x.Len(); n != 3 || x.Claims() != 2 {
		t.Fatalf("Len = %d, Claims = %d; want 3 entries of which 2 claim entries", n, x.Claims())
	}
	// Removing the jti leaves the claim entries; the sid entry expires alone.
	x.Apply([]Change{del("s1")})
	clock.Add(10)
	x.MaybeExpire()
	_, es, _ := x.Snapshot()
	if len(es) != 1 || es[0] != ClaimEntry("", "org", "s1", 0) || x.Claims() != 1 {
		t.Fatalf("after removing the jti and the sid's expiry: %+v (claims %d)", es, x.Claims())
	}
	// A claim entry is merged like a jti entry: the later expiry wins.
	x.Apply([]Change{{Op: OpPutEntry, Entry: ClaimEntry("", "sid", "s2", t0+100), Merge: true}})
	x.Apply([]Change{{Op: OpPutEntry, Entry: ClaimEntry("", "sid", "s2", t0+50), Merge: true}})
	if _, es, _ = x.Snapshot(); len(es) != 2 || es[1].Exp != t0+100 {
		t.Fatalf("merged claim entry: %+v", es)
	}
	// Claim entries with an invalid claim are dropped, as any invalid item.
	dropped := 0
	x.OnInvalid = func() { dropped++ }
	x.Apply([]Change{claimPut("jti", "a", 0), claimPut("sub", "a", 0), claimPut("s d", "a", 0), claimPut(strings.Repeat("c", 65), "a", 0)})
	if dropped != 4 {
		t.Fatalf("%d invalid claim entries dropped; want 4", dropped)
	}
}

// TestReconcileClaimsScope: ReconcileClaims replaces the claim entries and
// nothing else; Reconcile replaces everything.
func TestReconcileClaimsScope(t *testing.T) {
	x := NewIndex(newFakeClock(t0).Now, 0)
	x.Apply([]Change{put("j", 0), claimPut("sid", "a", 0), claimPut("sid", "b", 0),
		{Op: OpPutCutoff, Cutoff: Cutoff{Sub: "u", RevokedBefore: t0}}})
	if err := x.ReconcileClaims([]Entry{ClaimEntry("", "sid", "b", 0), ClaimEntry("", "sid", "c", 0), {JTI: "ignored"}}, x.Seq()); err != nil {
		t.Fatal(err)
	}
	_, es, cs := x.Snapshot()
	if got := fmt.Sprint(es); got != fmt.Sprint([]Entry{{JTI: "j"}, ClaimEntry("", "sid", "b", 0), ClaimEntry("", "sid", "c", 0)}) || len(cs) != 1 {
		t.Fatalf("after ReconcileClaims: %v %v", es, cs)
	}
	if err := x.Reconcile(State{Entries: []Entry{{JTI: "j"}}}, x.Seq()); err != nil {
		t.Fatal(err)
	}
	if _, es, cs = x.Snapshot(); len(es) != 1 || len(cs) != 0 || x.Claims() != 0 {
		t.Fatalf("after a full Reconcile: %v %v", es, cs)
	}
}

// parsed reduces a feed body, as the filter parses it, to the set of keys it
// adds (with their expiry) and removes.
func parsed(t *testing.T, h blocklistsync.Hasher, body []byte) (add map[uint64]uint32, remove map[uint64]bool, u *blocklistsync.Update) {
	t.Helper()
	u, err := blocklistsync.ParseFeed(body, "application/json", blocklistsync.FeedLimits{MaxEntries: 100000, KeyedByIssuer: true, Hasher: h})
	if err != nil {
		t.Fatalf("the filter refuses the source's body: %v\n%s", err, body)
	}
	add, remove = map[uint64]uint32{}, map[uint64]bool{}
	for _, e := range u.Add.Entries {
		add[e.Key] = e.Exp
	}
	for _, r := range u.Remove {
		remove[r.Key] = true
	}
	return add, remove, u
}

func filterKey(h blocklistsync.Hasher, k EntryKey) uint64 {
	if k.Claim != "" {
		return h.ClaimKey(k.Iss, k.Claim, k.JTI)
	}
	return h.TokenKey(k.Iss, k.JTI)
}

// TestFilterReadsTheSourcesClaimEntries: for random lists of jti and claim
// entries (hostile text included), the filter's own parser reads every
// snapshot and delta the source writes, and finds each entry under the key
// the filter looks it up by: TokenKey for a jti, ClaimKey for a claim entry.
func TestFilterReadsTheSourcesClaimEntries(t *testing.T) {
	h, err := blocklistsync.NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	texts := []string{"a", "s-1", `q"uote`, "back\\slash", "caf\u00e9", "nl\nx", "\u2028", "\x00nul"}
	claims := []string{"sid", "org", `we"ird`, "x\\y", "~"}
	isses := []string{"", "https://a.example"}
	random := func() Change {
		e := Entry{JTI: texts[rnd.IntN(len(texts))] + fmt.Sprint(rnd.IntN(5)), Iss: isses[rnd.IntN(2)], Exp: int64(rnd.IntN(2)) * (t0 + 3600)}
		if rnd.IntN(2) == 0 {
			e.Claim = claims[rnd.IntN(len(claims))]
		}
		if rnd.IntN(4) == 0 {
			return Change{Op: OpRemoveEntry, Entry: e}
		}
		return Change{Op: OpPutEntry, Entry: e}
	}
	for iter := range 100 {
		x := NewIndex(newFakeClock(t0).Now, 0)
		for range rnd.IntN(30) {
			x.Apply([]Change{random()})
		}
		version, es, cs := x.Snapshot()
		add, _, _ := parsed(t, h, AppendSnapshot(nil, version, es, cs))
		if len(add) != len(es) {
			t.Fatalf("iter %d: %d entries, %d distinct keys parsed", iter, len(es), len(add))
		}
		for _, e := range es {
			if exp, ok := add[filterKey(h, e.Key())]; !ok || int64(exp) != e.Exp {
				t.Fatalf("iter %d: %+v not found under the filter's key (exp %d, %v)", iter, e, exp, ok)
			}
		}
		base := version
		var changes []Change
		for range 1 + rnd.IntN(10) {
			changes = append(changes, random())
		}
		x.Apply(changes)
		version, d, ok := x.Delta(base)
		if !ok {
			continue
		}
		add, remove, u := parsed(t, h, AppendDelta(nil, base, version, d))
		if u.Kind != blocklistsync.KindDelta || len(add) != len(d.Added) || len(remove) != len(d.Removed) {
			t.Fatalf("iter %d: delta parsed as %d added, %d removed; sent %d, %d", iter, len(add), len(remove), len(d.Added), len(d.Removed))
		}
		for _, e := range d.Added {
			if _, ok := add[filterKey(h, e.Key())]; !ok {
				t.Fatalf("iter %d: added %+v not under the filter's key", iter, e)
			}
		}
		for _, k := range d.Removed {
			if !remove[filterKey(h, k)] {
				t.Fatalf("iter %d: removed %+v not under the filter's key", iter, k)
			}
		}
	}
}

// TestClaimNameRuleIsTheFilters: the source admits exactly the claim names
// the filter's parser accepts.
func TestClaimNameRuleIsTheFilters(t *testing.T) {
	names := []string{"", "sid", "jti", "sub", "iss", "iat", "JTI", "Sub", "s id", "s\tid", "caf\u00e9", "~", "!", "a\x7f", strings.Repeat("c", 64), strings.Repeat("c", 65), `"`, `\`}
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		b := make([]byte, rnd.IntN(70))
		for i := range b {
			b[i] = byte(rnd.IntN(130))
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		if got, want := ValidClaimName(n), blocklistsync.CheckClaimName(n) == nil; got != want {
			t.Errorf("ValidClaimName(%q) = %v; the filter's CheckClaimName accepts: %v", n, got, want)
		}
	}
}

// memClaimStore is memStore with claim entries.
type memClaimStore struct{ *memStore }

func (m memClaimStore) RevokeClaim(_ context.Context, e Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.entries[e.Key()]; ok {
		e.Exp = longerExp(old.Exp, e.Exp)
	}
	m.entries[e.Key()] = e
	return nil
}

func (m memClaimStore) UnrevokeClaim(_ context.Context, k EntryKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.entries, k)
	return nil
}

// TestAdminClaimRevocations: the admin API revokes and unrevokes claim
// entries ({claim, value, exp, iss}), refuses malformed ones, answers 501
// for a store without claims, and the feed serves them in their own form.
func TestAdminClaimRevocations(t *testing.T) {
	idx := NewIndex(newFakeClock(t0).Now, 0)
	mem := memClaimStore{newMemStore()}
	srv := &Server{Index: idx, Store: mem, AdminToken: "t", Now: newFakeClock(t0).Now}
	h := srv.Handler()
	post := func(body string) (int, string) {
		w := request(t, h, "POST", AdminPath, "Bearer t", body)
		return w.Code, w.Body.String()
	}
	if code, body := post(fmt.Sprintf(`{"claim":"sid","value":"s-1","exp":%d,"iss":"https://i"}`, t0+60)); code != 200 {
		t.Fatalf("revoke a sid: %d %s", code, body)
	}
	if code, body := post(`{"claim":"tenant","value":"s-1"}`); code != 200 {
		t.Fatalf("revoke a tenant: %d %s", code, body)
	}
	if _, ok := mem.entries[EntryKey{Iss: "https://i", JTI: "s-1", Claim: "sid"}]; !ok {
		t.Fatalf("the store does not hold the sid entry: %v", mem.entries)
	}
	for _, bad := range []string{
		`{"claim":"sid"}`, `{"value":"x"}`, `{"claim":"sid","value":""}`, `{"claim":"jti","value":"x"}`,
		`{"claim":"sub","value":"x"}`, `{"claim":"iss","value":"x"}`, `{"claim":"iat","value":"x"}`, `{"claim":"s d","value":"x"}`, `{"jti":"a","claim":"sid","value":"x"}`,
		`{"sub":"u","claim":"sid","value":"x"}`, `{"claim":"sid","value":"x","revoked_before":1}`,
		`{"claim":"sid","value":"` + strings.Repeat("v", 257) + `"}`, `{"claim":"` + strings.Repeat("c", 65) + `","value":"x"}`,
	} {
		if code, body := post(bad); code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("POST %s: %d %s; want 400", bad, code, body)
		}
	}
	w := request(t, h, "GET", FeedPath, "", "")
	var snap Snapshot
	if err := json.Unmarshal(w.Body.Bytes(), &snap); err != nil || len(snap.Entries) != 2 {
		t.Fatalf("feed: %v %s", err, w.Body)
	}
	if got := snap.Entries[1]; got != (WireEntry{Claim: "tenant", Value: "s-1"}) || snap.Entries[0] != (WireEntry{Claim: "sid", Value: "s-1", Exp: t0 + 60, Iss: "https://i"}) {
		t.Fatalf("feed entries: %+v", snap.Entries)
	}
	if w := request(t, h, "DELETE", AdminPath+"?claim=sid&value=s-1&iss=https://i", "Bearer t", ""); w.Code != 200 {
		t.Fatalf("unrevoke: %d %s", w.Code, w.Body)
	}
	if w := request(t, h, "DELETE", AdminPath, "Bearer t", `{"claim":"tenant","value":"s-1"}`); w.Code != 200 {
		t.Fatalf("unrevoke by body: %d %s", w.Code, w.Body)
	}
	if n, _ := idx.Len(); n != 0 || len(mem.entries) != 0 {
		t.Fatalf("after unrevoking: index %d, store %v", n, mem.entries)
	}

	// A filter reads at most MaxClaimNames claims: a revocation by one more is refused, one
	// by a name already held is not.
	for i := range MaxClaimNames {
		if code, body := post(fmt.Sprintf(`{"claim":"c%d","value":"v"}`, i)); code != 200 {
			t.Fatalf("claim name %d: %d %s", i, code, body)
		}
	}
	if code, body := post(`{"claim":"one-more","value":"v"}`); code != 400 || !strings.Contains(body, "the most a filter reads") {
		t.Fatalf("a ninth claim name: %d %s; want 400 saying why", code, body)
	}
	if code, body := post(`{"claim":"c0","value":"w"}`); code != 200 {
		t.Fatalf("another value of a held name: %d %s", code, body)
	}
	if got := idx.ClaimNames(); len(got) != MaxClaimNames || got[0] != "c0" {
		t.Fatalf("ClaimNames = %q", got)
	}
	if MaxClaimNames != blocklistsync.MaxClaimNames {
		t.Fatalf("the source admits %d claim names, the filter reads %d", MaxClaimNames, blocklistsync.MaxClaimNames)
	}

	// A store without claim entries: 501, and nothing changes.
	plain := &Server{Index: NewIndex(newFakeClock(t0).Now, 0), Store: newMemStore(), AdminToken: "t"}
	for _, c := range []struct{ method, target, body string }{
		{"POST", AdminPath, `{"claim":"sid","value":"x"}`},
		{"DELETE", AdminPath + "?claim=sid&value=x", ""},
	} {
		w := request(t, plain.Handler(), c.method, c.target, "Bearer t", c.body)
		if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), "claim") {
			t.Errorf("%s on a store without claims: %d %s; want 501", c.method, w.Code, w.Body)
		}
	}
	if n, _ := plain.Index.Len(); n != 0 {
		t.Fatal("a refused claim revocation reached the index")
	}
}

// TestClaimNameBoundHoldsUnderConcurrency: revocations under new claim names at once never
// take the list past MaxClaimNames (a ninth name would make every filter refuse the feed).
func TestClaimNameBoundHoldsUnderConcurrency(t *testing.T) {
	idx := NewIndex(newFakeClock(t0).Now, 0)
	srv := &Server{Index: idx, Store: memClaimStore{newMemStore()}, AdminToken: "t", Now: newFakeClock(t0).Now}
	h := srv.Handler()
	for i := range MaxClaimNames - 1 {
		if w := request(t, h, "POST", AdminPath, "Bearer t", fmt.Sprintf(`{"claim":"held%d","value":"v"}`, i)); w.Code != 200 {
			t.Fatalf("claim name %d: %d %s", i, w.Code, w.Body)
		}
	}
	var wg sync.WaitGroup
	codes := make(chan int, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- request(t, h, "POST", AdminPath, "Bearer t", fmt.Sprintf(`{"claim":"new%d","value":"v"}`, i)).Code
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == 200 {
			ok++
		}
	}
	if names := idx.ClaimNames(); len(names) != MaxClaimNames || ok != 1 {
		t.Fatalf("after 16 revocations under new names at once: %d accepted, names %q; want 1 and %d names", ok, names, MaxClaimNames)
	}
}
