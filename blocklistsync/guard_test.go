package blocklistsync

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/abi"
)

var jsonHeaders = [][2]string{{"content-type", jsonCT}}

func jtis(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// pollNow makes the VM's next Tick poll: it moves the clock past any schedule.
func (r *rig) pollNow(v *vm) *call {
	r.t.Helper()
	r.advance(r.cfg.MaxBackoff.D() + r.cfg.Interval.D())
	v.sync.Tick()
	return v.host.pending()
}

// TestHostileBodiesKeepTheList: every malformed 200 reaching the syncer is rejected, counted,
// logged, and leaves the list in shared data as it was.
func TestHostileBodiesKeepTheList(t *testing.T) {
	bodies := []struct{ name, ctype, body string }{
		{"empty json", jsonCT, ""},
		{"empty plain", "text/plain", ""},
		{"empty object", jsonCT, "{}"},
		{"error object", jsonCT, `{"error":"database unavailable"}`},
		{"html as json", jsonCT, "<html><body>502 Bad Gateway</body></html>"},
		{"html as text", "text/plain", "<html><body>502 Bad Gateway</body></html>"},
		{"html as html", "text/html", "<html><body>502 Bad Gateway</body></html>"},
		{"json as text", "text/plain", snapshotBody("v9")},
		{"no kind", jsonCT, `{"entries":[]}`},
		{"no entries", jsonCT, `{"kind":"snapshot","version":"v9"}`},
		{"untyped text", "", "abc\n"},
	}
	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, snapshotBody("v1", "keep-1", "keep-2"))
			before := mustGet(t, r.store, KeysFor("jtiguard.").Snapshot)
			r.pollNow(a)
			logs := len(a.host.logs)
			a.host.answer(200, [][2]string{{"content-type", tc.ctype}}, tc.body)
			if got := mustGet(t, r.store, KeysFor("jtiguard.").Snapshot); !bytes.Equal(got, before) {
				t.Fatal("a rejected body changed the shared list")
			}
			if !a.has(t, "keep-1", r.now) || !a.has(t, "keep-2", r.now) {
				t.Fatal("entries lost")
			}
			if r.metrics.get("sync.rejected") != 1 || r.metrics.get("sync.failures") != 1 {
				t.Fatalf("rejected %d failures %d; want 1, 1", r.metrics.get("sync.rejected"), r.metrics.get("sync.failures"))
			}
			if got := a.host.logged(abi.LogLevelWarn, "keeping the last good list"); len(a.host.logs) != logs+1 || len(got) != 1 {
				t.Fatalf("logs = %q; want one warning that keeps the last good list", a.host.logs[logs:])
			}
		})
	}
}

// TestRejectedFirstBodySaysNoList: with nothing held, a failure says so instead of claiming a
// last good list.
func TestRejectedFirstBodySaysNoList(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, "{}")
	a.sync.Tick()
	r.pollNow(a)
	a.host.reset()
	if len(a.host.logged(abi.LogLevelWarn, "no list yet")) != 2 {
		t.Fatalf("logs = %q; want two failures saying there is no list yet", a.host.logs)
	}
	for _, l := range a.host.logs {
		if strings.Contains(l, "last good list") {
			t.Fatalf("log %q claims a last good list that does not exist", l)
		}
	}
	if _, _, err := r.store.GetSharedData(KeysFor("jtiguard.").Snapshot); err == nil {
		t.Fatal("a rejected body was published")
	}
}

func TestShrinkGuard(t *testing.T) {
	const held = 100
	tests := []struct {
		name    string
		refuse  bool
		update  func(r *rig, v *vm)
		want    int // entries after the update
		flagged bool
	}{
		{"snapshot keeping 60%", false, func(r *rig, v *vm) {
			v.host.answer(200, jsonHeaders, snapshotBody("v2", jtis("j", 60)...))
		}, 60, false},
		{"snapshot keeping 40%: warned and published", false, func(r *rig, v *vm) {
			v.host.answer(200, jsonHeaders, snapshotBody("v2", jtis("j", 40)...))
		}, 40, true},
		{"snapshot keeping 40%: refused", true, func(r *rig, v *vm) {
			v.host.answer(200, jsonHeaders, snapshotBody("v2", jtis("j", 40)...))
		}, held, true},
		{"empty snapshot: refused", true, func(r *rig, v *vm) {
			v.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v2","entries":[]}`)
		}, held, true},
		{"plain 'null' replacing the list: refused", true, func(r *rig, v *vm) {
			v.host.answer(200, [][2]string{{"content-type", "text/plain"}}, "null\n")
		}, held, true},
		{"delta removing 60: refused", true, func(r *rig, v *vm) {
			var removed []string
			for _, j := range jtis("j", 60) {
				removed = append(removed, fmt.Sprintf(`{"jti":%q}`, j))
			}
			v.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[`+strings.Join(removed, ",")+`]}`)
		}, held, true},
		{"expired entries do not count as a shrink", true, func(r *rig, v *vm) {
			r.advance(200 * 24 * time.Hour) // past the exp of the 100 held
			v.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v2","entries":[{"jti":"new"}]}`)
		}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			r.cfg.RefuseShrink = tt.refuse
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			body := snapshotBody("v1", jtis("j", held)...)
			if strings.HasPrefix(tt.name, "expired") {
				body = strings.ReplaceAll(body, "1800000000", fmt.Sprint(r.now.Add(time.Hour).Unix()))
			}
			a.host.answer(200, jsonHeaders, body)
			r.pollNow(a)
			tt.update(r, a)
			snap, _, _ := a.reader.Refresh()
			if snap.Len() != tt.want {
				t.Fatalf("entries after the update = %d; want %d", snap.Len(), tt.want)
			}
			wantFlag := int64(0)
			if tt.flagged {
				wantFlag = 1
			}
			if got := r.metrics.get("sync.large_shrinks"); got != wantFlag {
				t.Fatalf("sync.large_shrinks = %d; want %d", got, wantFlag)
			}
			warnings := a.host.logged(abi.LogLevelWarn, "more than max_shrink")
			if len(warnings) != int(wantFlag) {
				t.Fatalf("shrink warnings = %q; want %d", warnings, wantFlag)
			}
			if tt.flagged && tt.refuse && (r.metrics.get("sync.rejected") != 1 || !strings.Contains(warnings[0], "refused")) {
				t.Fatalf("refused shrink: rejected = %d, log %q", r.metrics.get("sync.rejected"), warnings)
			}
		})
	}
}

// TestSmallListsCanBeEmptied: fewer than minGuardedShrink removals never trip the guard.
func TestSmallListsCanBeEmptied(t *testing.T) {
	r := newRig(t)
	r.cfg.RefuseShrink = true
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", jtis("j", minGuardedShrink-1)...))
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"snapshot","version":"v2","entries":[]}`)
	if snap, _, _ := a.reader.Refresh(); snap.Len() != 0 || r.metrics.get("sync.large_shrinks") != 0 {
		t.Fatalf("entries %d, large_shrinks %d; want the list emptied without a flag", snap.Len(), r.metrics.get("sync.large_shrinks"))
	}
}

// TestKeyingMismatchIsNeverUsed: a list keyed by issuer is not a list for a filter that is
// not, and the other way round. Readers report no list; the lease holder asks for a full
// snapshot (no since, no if-none-match) instead of merging a delta into it, and replaces it.
func TestKeyingMismatchIsNeverUsed(t *testing.T) {
	for _, writerByIssuer := range []bool{true, false} {
		t.Run(fmt.Sprint("writer keyed by issuer=", writerByIssuer), func(t *testing.T) {
			r := newRig(t)
			r.byIssuer = writerByIssuer
			w := r.vm(1, "shared.")
			w.sync.Tick()
			w.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"e1"`}}, snapshotBody("v1", "a"))
			key := mustGet(t, r.store, KeysFor("shared.").Snapshot)[offHashKey : offHashKey+16]

			// A plugin with the other keying shares the prefix; the first plugin's VM stops.
			r.byIssuer = !writerByIssuer
			o := r.vm(2, "shared.")
			snap, freshAt, err := o.reader.Refresh()
			if snap != nil || !freshAt.IsZero() || !errors.Is(err, ErrKeyingMismatch) {
				t.Fatalf("Refresh = %v, %v, %v; want no list and ErrKeyingMismatch", snap, freshAt, err)
			}
			if _, _, err := o.reader.Refresh(); !errors.Is(err, ErrKeyingMismatch) {
				t.Fatalf("second Refresh = %v; want ErrKeyingMismatch again", err)
			}
			r.advance(r.cfg.LeaseTTL.D() + time.Second) // w's lease lapses
			o.sync.Tick()
			c := o.host.pending()
			if c.header(":path") != "/v1/revocations" || c.header("if-none-match") != "" {
				t.Fatalf("poll after a keying mismatch: path %q if-none-match %q; want a full request", c.header(":path"), c.header("if-none-match"))
			}
			if r.metrics.get("sync.resyncs") != 1 || len(o.host.logged(abi.LogLevelWarn, "keyed")) != 1 {
				t.Fatalf("resyncs %d, logs %q; want one resync, reported once", r.metrics.get("sync.resyncs"), o.host.logs)
			}
			// A delta (a source that ignores the missing since) must not be merged into it.
			o.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"b"}],"removed":[]}`)
			if _, _, err := o.reader.Refresh(); !errors.Is(err, ErrKeyingMismatch) {
				t.Fatalf("a delta was merged into a mismatched list: %v", err)
			}
			// That is the source's fault: counted as a failure, and asked again after the backoff.
			if r.metrics.get("sync.failures") != 1 {
				t.Fatalf("failures %d; want the delta to a full poll counted as one", r.metrics.get("sync.failures"))
			}
			r.advance(r.cfg.MaxBackoff.D())
			o.sync.Tick()
			o.host.answer(200, jsonHeaders, snapshotBody("v2", "a", "b"))
			if !o.has(t, "a", r.now) || !o.has(t, "b", r.now) {
				t.Fatal("the full snapshot did not replace the mismatched list")
			}
			if s := o.reader.Snapshot(); s.KeyedByIssuer != !writerByIssuer {
				t.Fatal("replacement keyed the wrong way")
			}
			if got := mustGet(t, r.store, KeysFor("shared.").Snapshot)[offHashKey : offHashKey+16]; !bytes.Equal(got, key) {
				t.Fatal("the hash key of the shared data's lifetime was not kept")
			}
			// Now the first plugin's readers are the ones without a list.
			if _, _, err := w.reader.Refresh(); !errors.Is(err, ErrKeyingMismatch) {
				t.Fatalf("writer's reader after the replacement: %v; want ErrKeyingMismatch", err)
			}
		})
	}
}

// formatOneSnapshot is a snapshot as the previous module wrote it (format 1, FNV keys).
func formatOneSnapshot(gen uint64, keys ...uint64) []byte {
	b := make([]byte, 40+12*len(keys))
	copy(b, "JTIS")
	binary.LittleEndian.PutUint16(b[4:], 1)
	binary.LittleEndian.PutUint64(b[8:], gen)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(keys)))
	for i, k := range keys {
		binary.LittleEndian.PutUint64(b[40+8*i:], k)
	}
	return b
}

// TestOldFormatSnapshotForcesResync: a snapshot left by an older module is no list for the
// readers, and the lease holder replaces it whole, under a freshly drawn hash key.
func TestOldFormatSnapshotForcesResync(t *testing.T) {
	r := newRig(t)
	keys := KeysFor("jtiguard.")
	if err := r.store.SetSharedData(keys.Snapshot, formatOneSnapshot(3, 5, 9), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.store.SetSharedData(keys.Generation, Generation{Number: 3, LastSuccess: r.now, Entries: 2}.MarshalBinary(), 0); err != nil {
		t.Fatal(err)
	}
	a := r.vm(1, "jtiguard.")
	if snap, _, err := a.reader.Refresh(); snap != nil || !errors.Is(err, ErrSnapshotFormat) {
		t.Fatalf("Refresh = %v, %v; want no list, ErrSnapshotFormat", snap, err)
	}
	a.sync.Tick()
	c := a.host.pending()
	if c.header(":path") != "/v1/revocations" || r.metrics.get("sync.resyncs") != 1 {
		t.Fatalf("poll %q, resyncs %d; want a full request and one resync", c.header(":path"), r.metrics.get("sync.resyncs"))
	}
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "x"))
	snap, _, err := a.reader.Refresh()
	if err != nil || !a.has(t, "x", r.now) || snap.Generation <= 3 || snap.Hasher().IsZero() {
		t.Fatalf("after the resync: %v, generation %d", err, snap.Generation)
	}
}

// TestForeignIDsForceResync: IDs that do not belong to the snapshot (a writer that lost the
// race for the snapshot, or a damaged record) make the holder resync, never merge wrongly.
func TestForeignIDsForceResync(t *testing.T) {
	for name, ids := range map[string][]byte{
		"garbage":       []byte("not an ids record"),
		"another build": buildEncoded(t, Meta{BuildID: 12345}, nil, nil).IDs,
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, snapshotBody("v1", "a", "b"))
			if err := r.store.SetSharedData(KeysFor("jtiguard.").IDs, ids, 0); err != nil {
				t.Fatal(err)
			}
			r.pollNow(a)
			a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c"}],"removed":[{"jti":"a"}]}`)
			if !a.has(t, "a", r.now) || a.has(t, "c", r.now) || r.metrics.get("sync.resyncs") != 1 {
				t.Fatalf("delta merged over foreign IDs (resyncs %d)", r.metrics.get("sync.resyncs"))
			}
			a.sync.Tick()
			if c := a.host.pending(); c.header(":path") != "/v1/revocations" {
				t.Fatalf("resync poll path %q", c.header(":path"))
			}
			a.host.answer(200, jsonHeaders, snapshotBody("v2", "b", "c"))
			if a.has(t, "a", r.now) || !a.has(t, "b", r.now) || !a.has(t, "c", r.now) {
				t.Fatal("resync snapshot not applied")
			}
		})
	}
}

// TestHashKeyKeptForTheSharedDataLifetime: the first writer draws the key; deltas, later
// snapshots and another lease holder keep it.
func TestHashKeyKeptForTheSharedDataLifetime(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1, "jtiguard."), r.vm(2, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	first, _, _ := a.reader.Refresh()
	h := first.Hasher()
	if h.IsZero() {
		t.Fatal("no hash key drawn")
	}
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"b"}],"removed":[]}`)
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, snapshotBody("v3", "c"))
	r.advance(r.cfg.LeaseTTL.D() + r.cfg.MaxBackoff.D()) // a dies; b takes over
	b.sync.Tick()
	b.host.answer(200, [][2]string{{"content-type", "text/plain"}}, "d\n")
	snap, _, err := b.reader.Refresh()
	if err != nil || !b.has(t, "d", r.now) || snap.Generation < 4 {
		t.Fatalf("b's list: %v, generation %d", err, snap.Generation)
	}
	if snap.Hasher() != h {
		t.Fatal("the hash key changed within the shared data's lifetime")
	}
}

// TestWriterLosingTheRaceLeavesIDsAlone: a writer whose view is stale loses the snapshot's
// CAS and writes nothing else, so the winner's IDs still match the winner's snapshot and the
// next delta merges instead of resyncing.
func TestWriterLosingTheRaceLeavesIDsAlone(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1, "jtiguard."), r.vm(2, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	b.sync.reader.Reload() // b's view: v1
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"b"}],"removed":[]}`)
	stale := List{Entries: []Entry{tokenEntry("", "zzz", 0)}}
	if err := b.sync.publish(r.now, &stale, "v9", "", b.sync.reader.latest.Hasher()); !errors.Is(err, types.ErrorStatusCasMismatch) {
		t.Fatalf("stale publish = %v; want a CAS mismatch", err)
	}
	snap, l := heldList(t, r, "jtiguard.")
	if snap.Version != "v2" || len(l.Entries) != 2 {
		t.Fatalf("after the lost race: version %q, %d entries with IDs", snap.Version, len(l.Entries))
	}
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v2","version":"v3","added":[{"jti":"c"}],"removed":[]}`)
	if !a.has(t, "c", r.now) || r.metrics.get("sync.resyncs") != 0 {
		t.Fatalf("the winner's next delta: resyncs %d", r.metrics.get("sync.resyncs"))
	}
}
