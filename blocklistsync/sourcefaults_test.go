package blocklistsync

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDeltaToEveryPollIsPacedAndCounted: a broken or hostile source that answers every
// poll, including the full-resync polls that send no since, with a delta on a base the filter
// does not hold. Each such answer is taken as "resync at once": it is counted as neither a
// failure nor a rejection, backs nothing off, and skips the limit of polls sent at once
// (watchBurst per interval), so the lease holder polls again from the reply's callback, as
// fast as the source answers, for as long as it keeps answering: an unbounded poll rate that
// a source controls, with sync.failures at 0 while the list ages. A delta that does not apply
// now asks for a full snapshot at once within the burst limit, and a delta in answer to that
// is a failure, backed off.
func TestDeltaToEveryPollIsPacedAndCounted(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a"))
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	start := len(a.host.calls)
	const answers = 200
	for i := 0; i < answers; i++ {
		c := a.host.pending() // fails the test if no poll is in flight
		if i > 0 && (c.header(":path") != "/v1/revocations" || c.header("if-none-match") != "") {
			t.Fatalf("poll %d: path %q if-none-match %q; want a full resync request", i, c.header(":path"), c.header("if-none-match"))
		}
		a.host.answer(200, [][2]string{{"content-type", jsonCT}},
			`{"kind":"delta","base":"v0","version":"v9","added":[{"jti":"x"}],"removed":[]}`)
		if len(a.host.calls) == start+i {
			break // the filter stopped polling at once: paced
		}
	}
	polls := len(a.host.calls) - start
	t.Logf("%d polls sent within one instant of the fake clock; sync.failures=%d sync.rejected=%d sync.resyncs=%d",
		polls, r.metrics.get("sync.failures"), r.metrics.get("sync.rejected"), r.metrics.get("sync.resyncs"))
	if polls > 2*watchBurst {
		t.Errorf("a source answering every poll with a delta on an unknown base got %d polls without the clock moving (the limit of polls sent at once is %d per interval)", polls, watchBurst)
	}
	if r.metrics.get("sync.failures") == 0 {
		t.Errorf("%d answers that could not be applied, none counted in sync.failures: no backoff, no alert", polls)
	}
	if !a.has(t, "a", r.now) || a.has(t, "x", r.now) {
		t.Fatal("the held list changed")
	}
}

// TestDeltaRemovalOfOneIssuerKeepsTheOther: the source holds jti "a" revoked for two
// issuers (an iss column, admin revocations with iss, back-channel entries), and cutoffs of "u"
// under both; a filter without jwt.issuers looks them up by jti (and sub) alone. The source then
// unrevokes ("a", x) and removes ("u", x)'s cutoff, and sends the delta that says exactly that.
// The filter once merged the two into one entry and one cutoff, and the delta took them away
// although ("a", y) and ("u", y) still stand at the source. Now the two stay two entries (one
// key, two IDs: keyAndID), and the delta removes only the one it names.
func TestDeltaRemovalOfOneIssuerKeepsTheOther(t *testing.T) {
	r := newRig(t) // byIssuer false: the filter keys by jti alone
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[
		{"jti":"a","iss":"https://x.example","exp":1800000000},
		{"jti":"a","iss":"https://y.example","exp":1800000000}],
		"cutoffs":[{"sub":"u","iss":"https://x.example","revoked_before":1600000000},
		           {"sub":"u","iss":"https://y.example","revoked_before":1700000000}]}`)
	if !a.has(t, "a", r.now) {
		t.Fatal("snapshot not applied")
	}
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v1","version":"v2",
		"added":[],"removed":[{"jti":"a","iss":"https://x.example"}],
		"cutoffs_removed":[{"sub":"u","iss":"https://x.example"}]}`)
	if !a.has(t, "a", r.now) {
		t.Error(`after the source unrevoked ("a", x.example) only, the filter holds no revocation of "a": ("a", y.example) is still revoked at the source and in a snapshot of v2`)
	}
	snap, _, _ := a.reader.Refresh()
	before, ok := snap.CutoffFor(snap.Hasher().SubjectKey("", "u"), uint32(r.now.Unix()))
	if snap.Version != "v2" || !ok || before != 1700000000 || r.metrics.get("sync.resyncs") != 0 {
		t.Errorf("after the delta: version %q, cutoff of u %d %v, resyncs %d; want v2, 1700000000, merged without a resync",
			snap.Version, before, ok, r.metrics.get("sync.resyncs"))
	}
	// And removing the other issuer's entry unrevokes "a".
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v2","version":"v3",
		"added":[],"removed":[{"jti":"a","iss":"https://y.example"}]}`)
	if a.has(t, "a", r.now) {
		t.Error(`after both issuers' entries were removed, "a" is still revoked`)
	}
}

// TestIssuerEntriesAcrossLeaseChanges: the entries stay apart whoever merges the deltas: a
// holder that merged an issuer's entry, then another holder that removes the issuer-less one.
func TestIssuerEntriesAcrossLeaseChanges(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	b := r.vm(2, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":1800000000}]}`)
	r.advance(r.cfg.LeaseTTL.D() + time.Second) // a stalls; b takes the lease
	b.sync.Tick()
	b.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v1","version":"v2",
		"added":[{"jti":"a","iss":"https://x.example","exp":1800000000}],"removed":[]}`)
	r.advance(r.cfg.LeaseTTL.D() + time.Second) // b stalls; a takes it back
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v2","version":"v3",
		"added":[],"removed":[{"jti":"a"}]}`)
	if snap, _, _ := a.reader.Refresh(); snap.Version != "v3" || !a.has(t, "a", r.now) {
		t.Errorf(`version %q, "a" revoked %v: ("a", x.example) still stands at the source`, snap.Version, a.has(t, "a", r.now))
	}
}

// TestUUIDSpellingsStayApart: two spellings of one UUID at the source are one key to the
// filter, but two entries (and two cutoffs): a delta that removes one spelling, or its cutoff,
// leaves the other revoking.
func TestUUIDSpellingsStayApart(t *testing.T) {
	const lower = "6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10"
	const upper = "6F1E2B0C-7D7C-4C1A-9A57-2B0F7C8E9D10"
	const hex = "6f1e2b0c7d7c4c1a9a572b0f7c8e9d10"
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v1","entries":[{"jti":"`+lower+`"},{"jti":"`+upper+`"}],
		"cutoffs":[{"sub":"`+lower+`","revoked_before":1600000000},{"sub":"`+hex+`","revoked_before":1700000000}]}`)
	if !a.has(t, hex, r.now) {
		t.Fatal("a third spelling is not revoked")
	}
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[{"jti":"`+upper+`"}],
		"cutoffs_removed":[{"sub":"`+lower+`"}]}`)
	snap, _, _ := a.reader.Refresh()
	if snap.Version != "v2" || !a.has(t, upper, r.now) {
		t.Errorf("version %q: the source still revokes %q (only %q was removed), the filter does not", snap.Version, lower, upper)
	}
	before, ok := snap.CutoffFor(snap.Hasher().SubjectKey("", upper), uint32(r.now.Unix()))
	if !ok || before != 1700000000 {
		t.Errorf("cutoff after removing %q's: %d %v; want %q's, 1700000000", lower, before, ok, hex)
	}
}

// TestSharedKeysAreFolded: past MaxSharedKey items under one key (one jti under that many
// issuers, for a filter that looks up by jti alone), the rest are folded into one entry that
// keeps the key revoked; the list is taken, and later deltas, with unrelated revocations in
// them, still are.
func TestSharedKeysAreFolded(t *testing.T) {
	issuers := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			if i > from {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"jti":"a","iss":"https://%d.example","exp":%d}`, i, 1800000000+i)
		}
		return b.String()
	}
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v1","entries":[`+issuers(0, MaxSharedKey+5)+`,{"jti":"held"}]}`)
	snap, _, _ := a.reader.Refresh()
	if snap.Version != "v1" || !a.has(t, "a", r.now) || !a.has(t, "held", r.now) || snap.Len() != MaxSharedKey+1 {
		t.Fatalf("version %q, entries %d; want v1 with %d entries for \"a\" and one for \"held\"", snap.Version, snap.Len(), MaxSharedKey)
	}
	// The fold revokes as long as its latest item: past every kept item's expiry, "a" is still revoked.
	if !snap.Revoked(snap.Hasher().TokenKey("", "a"), 1800000000+MaxSharedKey+3) {
		t.Error("the folded items' latest expiry was not kept")
	}
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[`+issuers(100, 103)+
		`,{"jti":"stolen"}],"removed":[{"jti":"a","iss":"https://68.example"}]}`)
	if snap, _, _ = a.reader.Refresh(); snap.Version != "v2" || !a.has(t, "stolen", r.now) || !a.has(t, "a", r.now) {
		t.Errorf("version %q, stolen revoked %v, a revoked %v; want the delta taken", snap.Version, a.has(t, "stolen", r.now), a.has(t, "a", r.now))
	}
	if r.metrics.get("sync.rejected") != 0 {
		t.Errorf("rejected %d; want nothing refused", r.metrics.get("sync.rejected"))
	}
}

// TestDeltaWithoutIssuersStillMerges: a source that names no issuer gets its deltas merged,
// removals and cutoffs included.
func TestDeltaWithoutIssuersStillMerges(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[
		{"jti":"a","exp":1800000000},{"jti":"b","exp":1800000000}],"cutoffs":[{"sub":"u","revoked_before":1600000000}]}`)
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	if c := a.host.pending(); !strings.Contains(c.header(":path"), "since=v1") {
		t.Fatalf("poll %q; want a delta asked for", c.header(":path"))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[{"jti":"a"}],
		"cutoffs_added":[{"sub":"u","revoked_before":1650000000}]}`)
	snap, _, _ := a.reader.Refresh()
	before, _ := snap.CutoffFor(snap.Hasher().SubjectKey("", "u"), uint32(r.now.Unix()))
	if snap.Version != "v2" || a.has(t, "a", r.now) || !a.has(t, "b", r.now) || before != 1650000000 || r.metrics.get("sync.resyncs") != 0 {
		t.Errorf("after the delta: version %q, a %v, b %v, cutoff %d, resyncs %d; want v2 merged, no resync",
			snap.Version, a.has(t, "a", r.now), a.has(t, "b", r.now), before, r.metrics.get("sync.resyncs"))
	}
}

// hookStore runs hook once, just before the first write of key: another VM's callback that
// runs on its own worker thread between this VM's read and its write.
type hookStore struct {
	SharedData
	key  string
	hook func()
}

func (h *hookStore) SetSharedData(key string, value []byte, cas uint32) error {
	if key == h.key && h.hook != nil {
		f := h.hook
		h.hook = nil
		f()
	}
	return h.SharedData.SetSharedData(key, value, cas)
}

// TestOverwrittenSnapshotDoesNotWedgeTheHolder: the lease's documented start-up window
// (Envoy cannot create a key atomically, so two VMs may both hold the lease for one tick).
// Both poll; B reads "no list", A publishes generation 1, then B writes its own generation 1
// over it unconditionally (cas 0, the first write). The generation record keeps number 1, so
// A's reader never reads the snapshot key again and keeps the CAS of the snapshot B replaced.
// A, the holder from then on, can never publish again: every update fails with a CAS
// mismatch, on every later poll, and no new revocation ever reaches any worker. While
// nothing changes the 304s keep the old list fresh; after the first revocation the list
// ages into max_staleness (503 for every token under fail_mode closed, every request let
// through unchecked under open), until Envoy restarts. Now a refused CAS makes the holder read
// the snapshot there (Reader.Invalidate), and its next poll publishes over it.
func TestOverwrittenSnapshotDoesNotWedgeTheHolder(t *testing.T) {
	r := newRig(t)
	keys := KeysFor("jtiguard.")
	a := r.vm(1, "jtiguard.")
	// B shares the list's keys; a lease key of its own stands for the one tick in which both
	// VMs hold the lease.
	bKeys := keys
	bKeys.Lease = "jtiguard.lease-b"
	bStore := &hookStore{SharedData: r.store, key: keys.Snapshot}
	bHost := &fakeHost{t: t, metrics: r.metrics}
	b := NewSyncer(r.cfg, SyncOptions{Keys: bKeys, Store: bStore, Host: bHost, Now: r.clock, HolderID: 2, MetricsPrefix: "jtiguard."})

	a.sync.Tick()
	b.Tick()
	bStore.hook = func() {
		a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a"))
	}
	bHost.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a"))
	if !a.has(t, "a", r.now) {
		t.Fatal("no list after the first polls")
	}
	// From here on A alone holds the lease (B's next tick would find A's lease and stand back).
	// The source revokes "x": a delta from v1, and a snapshot to a full resync.
	for i := 0; i < 20; i++ {
		r.advance(r.cfg.MaxBackoff.D())
		a.sync.Tick()
		if len(a.host.calls) == 0 || a.host.calls[len(a.host.calls)-1].done {
			continue
		}
		if c := a.host.pending(); strings.Contains(c.header(":path"), "since=v1") {
			a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1..v2"`}},
				`{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"x","exp":1800000000}],"removed":[]}`)
		} else {
			a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v2"`}}, snapshotBody("v2", "a", "x"))
		}
	}
	fresh := NewReader(r.store, keys, ReaderOptions{})
	snap, _, err := fresh.Refresh()
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Revoked(snap.Hasher().TokenKey("", "x"), uint32(r.now.Unix())) {
		var why []string
		for _, l := range a.host.logs {
			if strings.Contains(l, "poll failed") {
				why = append(why, l)
			}
		}
		if len(why) > 3 {
			why = why[len(why)-3:]
		}
		t.Errorf("20 polls later the revocation of x has reached no worker (generation %d in shared data, sync.failures=%d); last failures:\n%s",
			snap.Generation, r.metrics.get("sync.failures"), strings.Join(why, "\n"))
	}
}

// TestDeltaCutoffOfOneIssuerDoesNotLowerTheOther: the same merge, for a cutoff changed
// by a delta. Without jwt.issuers the snapshot merges ("u", x) at 1600000000 and ("u", y) at
// 1700000000 into one cutoff at 1700000000 (the later wins). The source then moves ("u", x)
// to 1650000000 and says so in cutoffs_added; the filter replaces its merged cutoff: tokens
// of "u" issued in [1650000000, 1700000000), which ("u", y) still revokes, were let through.
// Now such a delta asks for a full snapshot instead.
func TestDeltaCutoffOfOneIssuerDoesNotLowerTheOther(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v1","entries":[],
		"cutoffs":[{"sub":"u","iss":"https://x.example","revoked_before":1600000000},
		           {"sub":"u","iss":"https://y.example","revoked_before":1700000000}]}`)
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[],
		"cutoffs_added":[{"sub":"u","iss":"https://x.example","revoked_before":1650000000}]}`)
	snap, _, err := a.reader.Refresh()
	if err != nil {
		t.Fatal(err)
	}
	sk := snap.Hasher().SubjectKey("", "u")
	before, ok := snap.CutoffFor(sk, uint32(r.now.Unix()))
	if !ok || before < 1700000000 {
		t.Errorf(`cutoff of "u" after the delta: %d (held %v); ("u", y.example) still revokes tokens issued before 1700000000`, before, ok)
	}
}
