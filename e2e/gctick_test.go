package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// bigList is a list of n filler entries, encoded once, published again and again under new
// generation numbers (a snapshot names its generation at offset 8, its record at offset 8):
// encoding a million entries takes seconds, rewriting two numbers nothing.
type bigList struct {
	snap, ids, gen []byte
}

func newBigList(tb testing.TB, h blocklistsync.Hasher, n int, extra ...string) bigList {
	tb.Helper()
	l := localproxytest.List{JTIs: make([]string, 0, n+len(extra))}
	for i := range n {
		l.JTIs = append(l.JTIs, "filler-"+strconv.Itoa(i))
	}
	l.JTIs = append(l.JTIs, extra...)
	enc, gen, err := l.Encode(1, time.Now(), h)
	if err != nil {
		tb.Fatal(err)
	}
	return bigList{enc.Snapshot, enc.IDs, gen}
}

// publish writes l into h's shared data as generation gen, in the layout's order.
func (l bigList) publish(tb testing.TB, h hosttest.Host, gen uint64) {
	tb.Helper()
	keys := blocklistsync.KeysFor(prefix)
	s, g := slices.Clone(l.snap), slices.Clone(l.gen)
	binary.LittleEndian.PutUint64(s[8:], gen)
	binary.LittleEndian.PutUint64(g[8:], gen)
	for _, w := range []hosttest.SharedWrite{{Key: keys.Snapshot, Value: s}, {Key: keys.IDs, Value: l.ids}, {Key: keys.Generation, Value: g}} {
		if _, err := h.SetSharedData(w.Key, w.Value, 0); err != nil {
			tb.Fatal(err)
		}
	}
}

func startGCHost(tb testing.TB, e hosttest.Engine) hosttest.Host {
	tb.Helper()
	cfg := benchPluginConfig(tb, newBenchKeys(tb))
	hcfg := harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false)
	h, err := hosttest.Start(context.Background(), e, mixWasm(tb), hcfg)
	if err != nil {
		tb.Fatalf("start %s: %v", e, err)
	}
	tb.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func callExport(tb testing.TB, h hosttest.Host, name string) uint64 {
	tb.Helper()
	v, err := hosttest.CallExport(context.Background(), h, 0, name)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// BenchmarkTickCollection is what a collection on the tick costs in the module as the list
// grows, and why (docs/benchmarks.md, the mix's section): per engine and list size, a VM takes
// ten generations of the list (each adopted by a request, as the first request after the VM's
// recheck does), ticking after each, then runs a collection as the tick's pacer does
// (jtiguard_test_gc, timed inside the module) ten times, and reports the median and the
// largest with what the collector had to do: the live heap, the heap it scanned (objects that
// hold pointers), the VM's linear memory, and the collections that started inside requests.
// JTIGUARD_GC_LISTS sets the sizes (0,10000,100000,1000000); JTIGUARD_GC_MD names a file for
// the table, which is also printed.
func BenchmarkTickCollection(b *testing.B) {
	sizes := []int{0, 10_000, 100_000, 1_000_000}
	if s := os.Getenv("JTIGUARD_GC_LISTS"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 0 {
				b.Fatalf("JTIGUARD_GC_LISTS=%q: want sizes separated by commas", s)
			}
			sizes = append(sizes, n)
		}
	}
	hasher, err := blocklistsync.NewHasher()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var md strings.Builder
		md.WriteString("| engine | list | collection p50 / max, ms | tick after a new generation p50 / max, ms | live heap | heap scanned | linear memory | collections started in requests |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, n := range sizes {
			l := newBigList(b, hasher, n, "revoked-1")
			for _, e := range hosttest.Engines {
				h := startGCHost(b, e)
				ctx := context.Background()
				l.publish(b, h, 1)
				for i := range 300 { // a cache of verified tokens, as in the mix
					if _, err := h.Do(ctx, harness.Request{Path: "/api", Headers: bearer(token("w-" + strconv.Itoa(i)))}); err != nil {
						b.Fatal(err)
					}
				}
				var ticks, gcs []float64
				var inReq uint64
				for g := uint64(2); g < 12; g++ {
					l.publish(b, h, g)
					time.Sleep(110 * time.Millisecond) // past the VM's recheck: the next request adopts it
					p0 := callExport(b, h, gcCounterExport)
					r, err := h.Do(ctx, harness.Request{Path: "/api", Headers: bearer(token("revoked-1"))})
					if err != nil {
						b.Fatal(err)
					}
					if r.LocalResponse == nil || r.LocalResponse.Status != 401 {
						b.Fatalf("%s, list %d: the revoked token was not refused: %v", e, n, r)
					}
					inReq += callExport(b, h, gcCounterExport) - p0
					t0 := time.Now()
					if err := h.TickVM(ctx, 0); err != nil {
						b.Fatal(err)
					}
					ticks = append(ticks, float64(time.Since(t0).Microseconds())/1000)
				}
				for range 10 {
					gcs = append(gcs, float64(callExport(b, h, "jtiguard_test_gc"))/1000)
				}
				vms, err := h.VMs()
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(&md, "| %s | %d | %.2f / %.2f | %.2f / %.2f | %.1f MiB | %d KiB | %.1f MiB | %d |\n", e, n,
					quantile(gcs, 0.5), slices.Max(gcs), quantile(ticks, 0.5), slices.Max(ticks),
					float64(callExport(b, h, "jtiguard_test_heaplive"))/(1<<20), callExport(b, h, "jtiguard_test_scanheap")>>10,
					float64(vms[0].MemoryBytes)/(1<<20), inReq)
				_ = h.Close(ctx)
			}
		}
		if p := os.Getenv("JTIGUARD_GC_MD"); p != "" {
			if err := os.WriteFile(p, []byte(md.String()), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Print(md.String()) // b.Log would cut the table short

	}
}

// TestNoCollectionInRequestsWithMillionEntryUpdates is the garbage-collection check of the
// mix (TestNoCollectionStartsInARequestDuringListUpdates) with a list of a million entries
// (12 MB a snapshot) taking four new generations between two ticks, each adopted by a request,
// in wazero and V8. Before the list's reader reused its buffers, each
// generation was 13 MB of new garbage and collections started inside requests once the pacer's
// headroom was spent. It fails if any collection starts or ends inside a request; it checks
// that every generation was taken (the token that only every other one revokes is refused
// exactly when it should be) and that the VM's memory stays within three snapshots' size plus
// 16 MiB.
func TestNoCollectionInRequestsWithMillionEntryUpdates(t *testing.T) {
	t.Parallel() // no timing asserted, heavy on the CPU (doc.go)
	if testing.Short() {
		t.Skip("publishes a million-entry list in wazero and V8; -short skips it")
	}
	hasher, err := blocklistsync.NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	const n = 1_000_000
	lists := [2]bigList{newBigList(t, hasher, n), newBigList(t, hasher, n, "toggled")}
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			h := startGCHost(t, e)
			ctx := context.Background()
			lists[0].publish(t, h, 1)
			do := func(jti string) (refused bool) {
				t.Helper()
				p0 := callExport(t, h, gcCounterExport)
				r, err := h.Do(ctx, harness.Request{Path: "/api", Headers: bearer(token(jti))})
				if err != nil {
					t.Fatal(err)
				}
				if p := callExport(t, h, gcCounterExport) - p0; p != 0 {
					t.Errorf("%d garbage-collection pauses inside a request callback; want none (every collection on the tick)", p)
				}
				return r.LocalResponse != nil && r.LocalResponse.Status == 401
			}
			for i := range 300 {
				do("w-" + strconv.Itoa(i))
			}
			// Four generations between two ticks: ticks come at the VM's period in Envoy, and
			// a list can change faster (every sync interval, and the lease holder's own
			// generations on top), or the ticks come late on a busy worker.
			const perTick = 4
			ticks, gens := 0, 0
			for gen := uint64(2); ticks < 3; gen++ {
				if gens > 0 && gens%perTick == 0 {
					p0 := callExport(t, h, gcCounterExport)
					if err := h.TickVM(ctx, 0); err != nil {
						t.Fatal(err)
					}
					t.Logf("tick %d: %d GC pauses", ticks, callExport(t, h, gcCounterExport)-p0)
					ticks++
				}
				l := lists[gen%2]
				l.publish(t, h, gen)
				time.Sleep(110 * time.Millisecond) // past the VM's recheck: the next request takes it
				if got, want := do("toggled"), gen%2 == 1; got != want {
					t.Fatalf("generation %d: the token only odd generations revoke refused = %v; want %v", gen, got, want)
				}
				for i := range 20 {
					do("w-" + strconv.Itoa(i))
				}
				gens++
			}
			vms, err := h.VMs()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d generations of %d entries, %d between two ticks; linear memory %.1f MiB",
				e, gens, n, perTick, float64(vms[0].MemoryBytes)/(1<<20))
			if limit := uint64(3*len(lists[1].snap) + 16<<20); vms[0].MemoryBytes > limit {
				t.Errorf("linear memory %d bytes after %d generations; want at most %d (three snapshots and 16 MiB)", vms[0].MemoryBytes, gens, limit)
			}
		})
	}
}

// TestTickCollectionDocCommand runs the shell block of docs/benchmarks.md's section "What a
// collection on the tick costs" from the repository root, with one list of 10,000 entries
// (JTIGUARD_GC_LISTS), and checks that it printed the table.
func TestTickCollectionDocCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a V8 host; -short skips it")
	}
	out := runDocSection(t, "What a collection on the tick costs", "JTIGUARD_GC_LISTS=10000")
	for _, want := range []string{"| wazero | 10000 |", "| v8 | 10000 |", "heap scanned"} {
		if !strings.Contains(out, want) {
			t.Errorf("the section's command printed no %q:\n%s", want, out)
		}
	}
}
