package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/revocationsource"
)

// Soak parameters. See TestSoakEnvoy133 for why the default request count is what it is.
const (
	soakDefaultRequests = 1_000_000
	soakPool            = 1000    // distinct tokens: after the first round every request is a cache hit
	soakRevokedEvery    = 20      // every 20th pool token is revoked (5%)
	soakListTarget      = 100_000 // entries the list grows to
	soakGrowth          = 10_000  // entries added per feed version
	soakSnapshotEvery   = 4       // every 4th version is served as a full snapshot, the rest as deltas
	soakInterval        = time.Second
	// soakMemoryBound is the cap asserted on each VM's linear memory. The live data of a
	// VM at 100k entries is small: the snapshot it holds (12 B/entry ≈ 1.2 MB plus its
	// bucket directory), the copy a refresh reads from shared data (1.2 MB), the token cache
	// (1000 tokens ≈ 0.5 MB) and, on the lease holder, the feed body being parsed (≈ 60 B/entry
	// ≈ 6 MB for a 100k snapshot) with its decoded update (≈ 1.2 MB) and the new snapshot
	// (1.2 MB). That is under 12 MB live; Go's heap grows to about (1 + GOGC/100) × live
	// (GOGC=50 as in envoy.yaml), plus the runtime's own few MB. Wasm memory never shrinks,
	// so a leak (snapshots or bodies kept alive across updates) shows as growth past this.
	soakMemoryBound = 64 << 20
)

func soakJTI(i int) string {
	if i%soakRevokedEvery == 0 {
		return fmt.Sprintf("soak-revoked-%d", i)
	}
	return fmt.Sprintf("soak-ok-%d", i)
}

func gauge(h *harness.Harness, name string) int64 {
	v, _ := h.Metrics().Gauge(prefix + name)
	return v
}

// growingFeed serves the feed protocol (docs/feed.md) with a list that grows by soakGrowth
// entries per version up to soakListTarget and then keeps changing: each later version drops
// the soakChurn oldest filler entries and adds as many new ones, so updates go on for the
// whole soak. The pool's revoked jtis are in every version. Each poll moves to the next
// version and is answered with a delta from the poller's version, or with a full snapshot
// every soakSnapshotEvery versions (as after a source restart) or when the poller has none.
type growingFeed struct {
	*httptest.Server
	mu                       sync.Mutex
	version                  int
	polls, snapshots, deltas atomic.Int64
}

const soakChurn = 1000

func newGrowingFeed(t *testing.T) *growingFeed {
	f := &growingFeed{}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func soakRevokedJTIs() []string {
	var out []string
	for i := 0; i < soakPool; i += soakRevokedEvery {
		out = append(out, soakJTI(i))
	}
	return out
}

// fillerOf returns the filler window [lo, hi) of version v.
func fillerOf(v int) (lo, hi int) {
	capacity := soakListTarget - len(soakRevokedJTIs())
	grown := capacity / soakGrowth // versions it takes to grow
	if v <= grown {
		return 0, min(v*soakGrowth, capacity)
	}
	lo = (v - grown) * soakChurn
	return lo, lo + capacity
}

func (f *growingFeed) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	lo, hi := fillerOf(f.version)
	return len(soakRevokedJTIs()) + hi - lo
}

func filler(i int, exp int64) revocationsource.Entry {
	return revocationsource.Entry{JTI: "filler-" + strconv.Itoa(i), Exp: exp}
}

func (f *growingFeed) serve(w http.ResponseWriter, r *http.Request) {
	f.polls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	since := r.URL.Query().Get("since")
	exp := time.Now().Add(2 * time.Hour).Unix()
	base := f.version
	f.version++
	bLo, bHi := fillerOf(base)
	lo, hi := fillerOf(f.version)
	version := "v" + strconv.Itoa(f.version)
	w.Header().Set("content-type", "application/json")
	w.Header().Set("etag", `"`+version+`"`)
	if since != "" && since == "v"+strconv.Itoa(base) && f.version%soakSnapshotEvery != 0 {
		f.deltas.Add(1)
		var d revocationsource.DeltaChanges
		for i := bLo; i < lo; i++ {
			d.Removed = append(d.Removed, filler(i, 0).Key())
		}
		for i := bHi; i < hi; i++ {
			d.Added = append(d.Added, filler(i, exp))
		}
		w.Write(revocationsource.AppendDelta(nil, since, version, d))
		return
	}
	f.snapshots.Add(1)
	entries := make([]revocationsource.Entry, 0, soakListTarget)
	for _, j := range soakRevokedJTIs() {
		entries = append(entries, revocationsource.Entry{JTI: j, Exp: exp})
	}
	for i := lo; i < hi; i++ {
		entries = append(entries, filler(i, exp))
	}
	w.Write(revocationsource.AppendSnapshot(nil, version, entries, nil))
}
