package blocklistsync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// TestOperatorLogs: the first list and a recovery are each said once, with what an operator
// needs (entries and version; failures and how long the list went unsynced), and no log
// carries the feed's credentials or the hash key.
func TestOperatorLogs(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1, "jtiguard."), r.vm(2, "jtiguard.")
	a.sync.Tick()
	b.sync.Tick()
	a.host.reset() // the source is not up yet
	r.pollNow(a)
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"e1"`}}, snapshotBody("v1", "a", "b"))
	first := a.host.logged(abi.LogLevelInfo, "first list received")
	if len(first) != 1 || !strings.Contains(first[0], "2 entries, 0 cutoffs, version \"v1\"") {
		t.Fatalf("first-list logs = %q", first)
	}
	if got := a.host.logged(abi.LogLevelInfo, "recovered after 1 failed polls; there was no list before"); len(got) != 1 {
		t.Fatalf("recovery from no list: %q", a.host.logs)
	}
	syncedAt := r.now

	// Three failures, then the source is back.
	for range 3 {
		r.pollNow(a)
		a.host.answer(503, nil, "upstream connect error")
	}
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c"}],"removed":[]}`)
	stale := r.now.Sub(syncedAt).Round(time.Millisecond)
	rec := a.host.logged(abi.LogLevelInfo, "recovered after 3 failed polls")
	if len(rec) != 1 || !strings.Contains(rec[0], fmt.Sprint("not been synced for ", stale)) {
		t.Fatalf("recovery logs = %q; want one, saying the list was %s old", rec, stale)
	}
	// Later successes, and a takeover by b, say neither again.
	r.pollNow(a)
	a.host.answer(304, nil, "")
	r.pollNow(a)
	a.host.answer(200, jsonHeaders, snapshotBody("v3", "z"))
	r.advance(r.cfg.LeaseTTL.D() + time.Minute)
	b.sync.Tick()
	b.host.answer(200, jsonHeaders, snapshotBody("v4", "y"))
	all := append(append([]string(nil), a.host.logs...), b.host.logs...)
	var firsts, recs int
	for _, l := range all {
		if strings.Contains(l, "first list received") {
			firsts++
		}
		if strings.Contains(l, "recovered after") {
			recs++
		}
	}
	if firsts != 1 || recs != 2 {
		t.Fatalf("first-list logs %d, recovery logs %d in %q; want 1 and 2", firsts, recs, all)
	}
	snap, _, _ := b.reader.Refresh()
	key := make([]byte, hashKeySize)
	snap.Hasher().putBytes(key)
	for _, l := range all {
		if strings.Contains(l, "feed-secret") || strings.Contains(l, fmt.Sprintf("%x", key[:8])) ||
			strings.Contains(l, fmt.Sprint(snap.Hasher().k0)) {
			t.Fatalf("log %q carries a credential or the hash key", l)
		}
	}
}
