package blocklistsync

import (
	"strings"
	"testing"
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
// issuers (an iss column, admin revocations with iss, back-channel entries); a filter without
// jwt.issuers keys entries by jti alone, so its snapshot merges the two into one entry. The
// source then unrevokes ("a", X) and sends the delta that says exactly that. The filter
// removes its one entry: "a" is no longer revoked at all, although ("a", Y) still is at the
// source, and a snapshot of the very same version would hold it. Versions match from then on
// (304s and empty deltas), so the token stayed allowed until something forced a full resync.
// Now such a delta asks for a full snapshot instead, which holds ("a", y) and its cutoff.
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
	if snap.Cutoffs() == 0 {
		t.Error(`after the source removed the cutoff of ("u", x.example) only, the filter holds no cutoff of "u": ("u", y.example, revoked_before 1700000000) is gone too`)
	}
	// The delta asked for a full snapshot, at once: v2 as the source holds it.
	a.sync.Tick()
	c := a.host.pending()
	if strings.Contains(c.header(":path"), "since=") {
		t.Fatalf("after the delta, poll %q; want a full snapshot asked for", c.header(":path"))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"snapshot","version":"v2","entries":[
		{"jti":"a","iss":"https://y.example","exp":1800000000}],
		"cutoffs":[{"sub":"u","iss":"https://y.example","revoked_before":1700000000}]}`)
	snap, _, _ = a.reader.Refresh()
	before, ok := snap.CutoffFor(snap.Hasher().SubjectKey("", "u"), uint32(r.now.Unix()))
	if snap.Version != "v2" || !a.has(t, "a", r.now) || !ok || before != 1700000000 {
		t.Errorf("after the full snapshot: version %q, a revoked %v, cutoff of u %d %v; want v2, true, 1700000000", snap.Version, a.has(t, "a", r.now), before, ok)
	}
}

// TestDeltaWithoutIssuersStillMerges: a source that names no issuer gets its deltas merged,
// removals and cutoffs included, as before. (A holder that has read no full snapshot itself
// since it took the lease asks for one first: see Syncer.issuersClear.)
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
