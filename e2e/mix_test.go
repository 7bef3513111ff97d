package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// BenchmarkModuleMix makes the "mix, with list updates" table of docs/benchmarks.md (`make
// bench-mix`): a realistic mix of requests on a 10k-entry list that takes a new generation
// every few thousand requests, in native Go, wazero and V8 in the same run, with the tick
// running at the module's own period between requests. Every answer is checked, including
// when a token revoked by an update starts being refused. Per request it also records whether
// the timing thread was switched out, and reports the tail over all requests and over those
// that were not; with the module's test-only counter, it counts collections that started or
// ended inside request callbacks. JTIGUARD_MIX_MD names a file for the markdown;
// JTIGUARD_MIX_N (1,000,000) sets the requests and JTIGUARD_MIX_EVERY (10,000) the requests
// between two list updates.
func BenchmarkModuleMix(b *testing.B) {
	o := mixOptsFromEnv(b)
	for b.Loop() {
		md := mixTable(b, o)
		reportTable(b, "JTIGUARD_MIX_MD", md)
	}
}

// TestNoCollectionStartsInARequestDuringListUpdates runs the mix in wazero and V8 with list
// updates and a larger share of new tokens than the benchmark (so the heap grows fast), and
// fails if any garbage collection starts or ends inside a request callback: every collection
// must be the tick's. It also requires that collections did happen on ticks (the counter
// works, and the run allocated enough to need them), and, as a control, that the same counter
// does see collections inside requests when the VM runs Go's own pacing (GOGC=100).
func TestNoCollectionStartsInARequestDuringListUpdates(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a V8 host; -short skips it")
	}
	o := defaultMixOpts()
	// 150k requests (2-4 s) with 6% new tokens and an update every 1500: several MB allocated
	// between two ticks (1 s apart), so the tick's 4 MB budget is spent before each.
	o.n, o.every, o.warm, o.pctCold = 150_000, 1500, 1000, 6
	o.native, o.split = false, false
	o.minDuration = 2500 * time.Millisecond // at least two ticks however fast the host is
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			o := o
			o.engines = []hosttest.Engine{e}
			r := runMix(t, o)
			h := r.hosts[0]
			t.Logf("%s: %d requests in %s, %d ticks; GC pauses: %d on ticks, %d in requests", e, h.n, h.took.Round(time.Millisecond), len(h.ticks), h.gcTicks, h.gcOutside)
			if h.gcOutside != 0 {
				t.Errorf("%s: %d garbage-collection pauses inside request callbacks during the mix; want none (every collection on the tick)", e, h.gcOutside)
			}
			if len(h.ticks) < 2 || h.gcTicks == 0 {
				t.Errorf("%s: %d ticks made %d collection pauses; want at least 2 ticks and some collection on them", e, len(h.ticks), h.gcTicks)
			}
		})
	}
	t.Run("control GOGC=100", func(t *testing.T) {
		o := o
		o.engines = []hosttest.Engine{hosttest.Wazero}
		o.vmEnv = map[string]string{"GOGC": "100"}
		h := runMix(t, o).hosts[0]
		t.Logf("wazero with GOGC=100: GC pauses: %d on ticks, %d in requests", h.gcTicks, h.gcOutside)
		if h.gcOutside == 0 {
			t.Errorf("with Go's own pacing (GOGC=100) the counter saw no collection inside requests; the check above proves nothing")
		}
	})
}

type mixOpts struct {
	n        int // timed requests
	every    int // requests between two list updates
	warm     int // untimed requests first (answers checked)
	list     int // filler entries of the list
	working  int // allowed tokens that come back (cached after their first request)
	revoked  int // tokens on the list from the start
	pctAnon  float64
	pctRevok float64
	pctCold  float64 // a new HS256 token, never seen before; the rest: the working set
	// probeEvery: every probeEvery-th request carries one of the tokens revoked by the last
	// four updates, so the request at which a revocation shows is known to within a few hundred.
	probeEvery int
	native     bool
	engines    []hosttest.Engine
	vmEnv      map[string]string
	// split adds a second pass on fresh hosts that reads the timing thread's switch counters
	// around every request; the first pass leaves them unread, because reading them (a system
	// call between requests) slows the requests that follow.
	split       bool
	minDuration time.Duration // repeat the last chunk's sequence until the run lasts this long
}

func defaultMixOpts() mixOpts {
	return mixOpts{n: 1_000_000, every: 10_000, warm: 5000, list: 10_000, working: 300, revoked: 20,
		pctAnon: 15, pctRevok: 3, pctCold: 1, probeEvery: 32, native: true, engines: hosttest.Engines, split: true}
}

func mixOptsFromEnv(tb testing.TB) mixOpts {
	o := defaultMixOpts()
	env := func(name string, def int) int {
		s := os.Getenv(name)
		if s == "" {
			return def
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			tb.Fatalf("%s=%q: want a positive integer", name, s)
		}
		return n
	}
	o.n = env("JTIGUARD_MIX_N", o.n)
	o.every = env("JTIGUARD_MIX_EVERY", o.every)
	o.list = env("JTIGUARD_MIX_LIST", o.list)
	o.working = env("JTIGUARD_MIX_WORKING", o.working)
	return o
}

// mixTokens are the tokens of the mix by id (0: no token) and their kinds.
type mixTokens struct {
	all  []string // "" for none
	jti  []string
	kind []mixKind
}

type mixKind uint8

const (
	kindNone    mixKind = iota
	kindWorking         // a working-set token (revoked by an update when revokedAt says so)
	kindRevoked         // on the list from the start
	kindNew             // a new token, seen once
)

// add mints a token for jti ("" for none).
func (m *mixTokens) add(jti string, k mixKind) uint32 {
	tok := ""
	if jti != "" {
		tok = token(jti)
	}
	m.all = append(m.all, tok)
	m.jti = append(m.jti, jti)
	m.kind = append(m.kind, k)
	return uint32(len(m.all) - 1)
}

func (m *mixTokens) isWorking(id uint32) bool { return m.kind[id] == kindWorking }
func (m *mixTokens) isRevoked(id uint32) bool { return m.kind[id] == kindRevoked }
func (m *mixTokens) className(id uint32) string {
	return [...]string{"no token", "working set", "revoked", "new token"}[m.kind[id]]
}

// mixChunk is one update and the requests until the next.
type mixChunk struct {
	publish []hosttest.SharedWrite // nil for the warm-up and the first chunk
	revokes int                    // working-set id revoked by this update (0: none)
	ids     []uint32               // global token id per request
	sets    []harness.Pairs        // the chunk's header sets
	seq     []uint32               // index into sets per request
}

// mixPlan is everything every host runs, made once.
type mixPlan struct {
	o         mixOpts
	tok       *mixTokens
	initial   []hosttest.SharedWrite
	warm      mixChunk
	chunks    []mixChunk
	revokedAt map[uint32]int // working-set id → chunk whose update revoked it
	listSize  int            // entries of the last generation
}

const mixJTIWorking, mixJTIRevoked, mixJTICold = "mix-ok-", "mix-revoked-", "mix-new-"

func newMixPlan(tb testing.TB, o mixOpts) *mixPlan {
	rng := rand.New(rand.NewPCG(1, 2))
	p := &mixPlan{o: o, revokedAt: map[uint32]int{}}
	nChunks := (o.n + o.every - 1) / o.every
	tok := &mixTokens{}
	tok.add("", kindNone)
	nWorking := 0
	newWorking := func() uint32 {
		nWorking++
		return tok.add(mixJTIWorking+strconv.Itoa(nWorking-1), kindWorking)
	}
	slots := make([]uint32, o.working) // the working set now
	for i := range slots {
		slots[i] = newWorking()
	}
	revokedIDs := make([]uint32, o.revoked)
	for i := range revokedIDs {
		revokedIDs[i] = tok.add(mixJTIRevoked+strconv.Itoa(i), kindRevoked)
	}
	nNew := 0
	base := harness.RequestHeadersFor(harness.Request{Path: "/api/orders"})

	// The list of generation g: a sliding window of fillers (one leaves and one comes in on
	// every update), the tokens revoked from the start, and those revoked by updates so far.
	h, err := blocklistsync.NewHasher()
	if err != nil {
		tb.Fatal(err)
	}
	keys := blocklistsync.KeysFor(prefix)
	var dynamic []string
	encode := func(gen int) []hosttest.SharedWrite {
		l := localproxytest.List{}
		for i := range o.list {
			l.JTIs = append(l.JTIs, "mix-filler-"+strconv.Itoa(gen+i))
		}
		for i := range o.revoked {
			l.JTIs = append(l.JTIs, mixJTIRevoked+strconv.Itoa(i))
		}
		l.JTIs = append(l.JTIs, dynamic...)
		p.listSize = len(l.JTIs)
		enc, genRec, err := l.Encode(uint64(gen), time.Now(), h)
		if err != nil {
			tb.Fatal(err)
		}
		return []hosttest.SharedWrite{{Key: keys.Snapshot, Value: enc.Snapshot}, {Key: keys.IDs, Value: enc.IDs}, {Key: keys.Generation, Value: genRec}}
	}
	p.initial = encode(1)

	// pick draws a request's token; probes carries the recently revoked ids.
	pick := func(i int, probes []uint32) uint32 {
		if len(probes) > 0 && i%o.probeEvery == o.probeEvery-1 {
			return probes[(i/o.probeEvery)%len(probes)]
		}
		x := rng.Float64() * 100
		switch {
		case x < o.pctAnon:
			return 0
		case x < o.pctAnon+o.pctRevok:
			return revokedIDs[rng.IntN(len(revokedIDs))]
		case x < o.pctAnon+o.pctRevok+o.pctCold:
			nNew++
			return tok.add(mixJTICold+strconv.Itoa(nNew-1), kindNew)
		}
		return slots[rng.IntN(len(slots))]
	}
	build := func(ids []uint32) mixChunk {
		c := mixChunk{ids: ids, seq: make([]uint32, len(ids))}
		local := map[uint32]uint32{}
		for i, id := range ids {
			j, ok := local[id]
			if !ok {
				j = uint32(len(c.sets))
				local[id] = j
				hs := base
				if t := tok.all[id]; t != "" {
					hs = append(base[:len(base):len(base)], [2]string{"authorization", "Bearer " + t})
				}
				c.sets = append(c.sets, hs)
			}
			c.seq[i] = j
		}
		return c
	}

	// Warm-up: every working-set and revoked token once (so they are cached), then the mix.
	warm := append(slices.Clone(slots), revokedIDs...)
	for len(warm) < o.warm {
		warm = append(warm, pick(1, nil))
	}
	p.warm = build(warm)

	// Each update revokes one working-set token (its user logged out) and a new one takes its
	// place (another user logged in); the revoked one keeps coming only as a probe, while it
	// is one of the last four revoked.
	var probes []uint32
	for c := range nChunks {
		var publish []hosttest.SharedWrite
		var revokes uint32
		if c > 0 {
			k := rng.IntN(len(slots))
			revokes = slots[k]
			dynamic = append(dynamic, tok.jti[revokes])
			p.revokedAt[revokes] = c
			probes = append(probes, revokes)
			if len(probes) > 4 {
				probes = probes[1:]
			}
			slots[k] = newWorking()
			publish = encode(1 + c)
		}
		n := min(o.every, o.n-c*o.every)
		ids := make([]uint32, n)
		for i := range ids {
			ids[i] = pick(i, probes)
		}
		ch := build(ids)
		ch.publish, ch.revokes = publish, int(revokes)
		p.chunks = append(p.chunks, ch)
	}
	p.tok = tok
	return p
}

// mixHostResult is one host's run, summarised.
type mixHostResult struct {
	name               string
	n                  int
	took               time.Duration
	all, calm          stats // every request; those whose thread was not switched out
	p999, calmP999     float64
	invol, vol, either int // requests whose thread was switched out involuntarily, voluntarily, either
	unsplit            int // switched out, kind unknown (node's schedstat)
	switchesKnown      bool
	ticks              []hosttest.Tick
	gcTicks, gcOutside uint64
	gcCounted          bool
	mem                uint64
	vis                mixVisibility
	slowest            []string // the slowest requests not switched out, described
	classes            map[string]stats
	machine            bool // machineNoise's row, not a host
	// seenAgain counts requests let through (warm-up included) whose token had been let
	// through before; reverified, those of them the module verified again (not a cache hit).
	seenAgain, reverified int
	steal                 float64 // % of the machine's CPU time the hypervisor took during the timed chunks (-1: unknown)
}

// mixRunner runs one chunk on one host.
type mixRunner interface {
	name() string
	chunk(c mixChunk, gcCounter string) (hosttest.MixResult, error)
	// cacheHits ticks (to flush the module's counters) and returns its requests.cache_hits.
	cacheHits() (uint64, error)
	close()
}

const cacheHitsMetric = prefix + "requests.cache_hits"

func (m *nativeMix) cacheHits() (uint64, error) {
	m.host.Tick()
	return m.host.GetCounterMetric(cacheHitsMetric)
}

func (m hostMix) cacheHits() (uint64, error) {
	if err := m.h.TickVM(context.Background(), 0); err != nil {
		return 0, err
	}
	v, _, err := m.h.Metric(harness.MetricCounter, cacheHitsMetric)
	return uint64(v), err
}

type nativeMix struct {
	noSwitches bool
	host       proxytest.HostEmulator
	reset      func()
	lastTick   time.Time
	tickCount  int
}

func (*nativeMix) name() string { return "native" }
func (m *nativeMix) close()     { m.reset() }

// chunk is host.js's mix loop over the SDK's emulator.
func (m *nativeMix) chunk(c mixChunk, _ string) (hosttest.MixResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := len(c.seq)
	out := hosttest.MixResult{Samples: make([]float64, n), Starts: make([]float64, n), Status: make([]uint16, n),
		Switches: make([]uint8, n), SwitchesKnown: true}
	published := time.Now()
	for _, w := range c.publish {
		if err := nativeSet(w); err != nil {
			return out, err
		}
	}
	out.Published = float64(published.Sub(hosttest.MonoBase).Nanoseconds())
	if m.lastTick.IsZero() {
		m.lastTick = published
	}
	for i := range n {
		if p := time.Duration(m.host.GetTickPeriod()) * time.Millisecond; p > 0 && time.Since(m.lastTick) >= p {
			tv, ti, _ := hosttest.ThreadSwitches()
			t0 := time.Now()
			m.host.Tick()
			m.lastTick = time.Now()
			tv1, ti1, _ := hosttest.ThreadSwitches()
			out.Ticks = append(out.Ticks, hosttest.Tick{NS: float64(m.lastTick.Sub(t0).Nanoseconds()), Switched: tv1 != tv || ti1 != ti})
		}
		id := m.host.InitializeHttpContext()
		var v0, i0, v1, i1 int64
		ok := false
		if !m.noSwitches {
			v0, i0, ok = hosttest.ThreadSwitches()
		}
		out.SwitchesKnown = out.SwitchesKnown && ok
		t0 := time.Now()
		act := m.host.CallOnRequestHeaders(id, c.sets[c.seq[i]], true)
		t1 := time.Now()
		if !m.noSwitches {
			v1, i1, _ = hosttest.ThreadSwitches()
		}
		out.Samples[i] = float64(t1.Sub(t0).Nanoseconds())
		out.Starts[i] = float64(t0.Sub(hosttest.MonoBase).Nanoseconds())
		if i1 != i0 {
			out.Switches[i] |= 1
		}
		if v1 != v0 {
			out.Switches[i] |= 2
		}
		switch lr := m.host.GetSentLocalResponse(id); {
		case lr != nil:
			out.Status[i] = uint16(lr.StatusCode)
		case act == types.ActionContinue:
			out.Status[i] = hosttest.MixContinue
		default:
			out.Status[i] = hosttest.MixPaused
		}
		m.host.CompleteHttpContext(id)
	}
	return out, nil
}

// nativeSet writes w into the emulator's shared data, which (unlike Envoy) refuses cas 0 on
// a key that exists.
func nativeSet(w hosttest.SharedWrite) error {
	_, cas, _ := abiStore{}.GetSharedData(w.Key)
	return abiStore{}.SetSharedData(w.Key, w.Value, cas)
}

type hostMix struct {
	h          hosttest.Host
	noSwitches bool
}

func (m hostMix) name() string {
	if m.h.Engine() == hosttest.V8 {
		return "V8"
	}
	return "wazero"
}
func (m hostMix) close() { _ = m.h.Close(context.Background()) }
func (m hostMix) chunk(c mixChunk, gcCounter string) (hosttest.MixResult, error) {
	return hosttest.Mix(context.Background(), m.h, hosttest.MixSpec{VM: 0, HeaderSets: c.sets, Seq: c.seq, Publish: c.publish, GCCounter: gcCounter, NoSwitches: m.noSwitches})
}

const gcCounterExport = "jtiguard_test_gcpauses"

var (
	mixModuleOnce sync.Once
	mixModule     []byte
	mixModuleErr  error
)

// mixWasm is the module built as `make build` builds it (stubbed for Envoy's imports,
// data compacted), with -tags jtiguard_testexports: the same code plus test-only exports,
// one of which counts the collections' pauses. Built once per test binary.
func mixWasm(tb testing.TB) []byte {
	tb.Helper()
	mixModuleOnce.Do(func() {
		raw := moduletest.Build(tb, "jtiguard_testexports")
		b, err := wasmstub.StubImports(raw, wasmstub.EnvoyStubs)
		if err != nil {
			mixModuleErr = err
			return
		}
		mixModule, _, mixModuleErr = wasmstub.CompactData(b)
	})
	if mixModuleErr != nil {
		tb.Fatal(mixModuleErr)
	}
	return mixModule
}

type mixRun struct {
	plan  *mixPlan
	hosts []mixHostResult // the pass without switch counters
	split []mixHostResult // the pass with them (mixOpts.split)
	took  time.Duration
	wasm  []byte
	// engines names the engines' versions and V8's flags.
	engines []string
}

// runMix runs the plan of o on native Go (if o.native) and each engine of o, one host after
// the other (each alone on the machine's cores), and checks every answer.
func runMix(tb testing.TB, o mixOpts) mixRun {
	log.SetOutput(io.Discard) // the emulator prints every proxy_log line
	defer log.SetOutput(os.Stderr)
	started := time.Now()
	plan := newMixPlan(tb, o)
	cfg := benchPluginConfig(tb, newBenchKeys(tb))
	wasm := mixWasm(tb)
	run := mixRun{plan: plan, wasm: wasm}
	var runners []func(noSwitches bool) mixRunner
	if o.native {
		runners = append(runners, func(noSwitches bool) mixRunner {
			host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
				WithVMContext(filter.NewVMContext()).WithPluginConfiguration(cfg))
			for _, w := range plan.initial {
				if err := nativeSet(w); err != nil {
					tb.Fatal(err)
				}
			}
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				reset()
				tb.Fatalf("native start: %v %q", st, host.GetCriticalLogs())
			}
			return &nativeMix{host: host, reset: reset, noSwitches: noSwitches}
		})
	}
	for _, e := range o.engines {
		runners = append(runners, func(noSwitches bool) mixRunner {
			// One worker: requests and ticks of one Envoy worker thread. The list is written
			// by the driver, as another worker's syncer would write it.
			hcfg := harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false)
			if o.vmEnv != nil {
				hcfg = hcfg.WithEnv(o.vmEnv)
			}
			h, err := hosttest.Start(context.Background(), e, wasm, hcfg)
			if err != nil {
				tb.Fatalf("start %s: %v", e, err)
			}
			for _, w := range plan.initial {
				if err := (hosttest.Store{H: h}).SetSharedData(w.Key, w.Value, 0); err != nil {
					tb.Fatal(err)
				}
			}
			name := "wazero " + wazeroVersion()
			if v, ok := h.(interface{ Info() v8hostInfo }); ok {
				i := v.Info()
				name = fmt.Sprintf("V8 %s (node %s, %s)", i.V8, i.Node, strings.Join(i.Flags, " "))
			}
			if !slices.Contains(run.engines, name) {
				run.engines = append(run.engines, name)
			}
			return hostMix{h: h, noSwitches: noSwitches}
		})
	}
	passes := []bool{true}
	if o.split {
		passes = append(passes, false)
	}
	for _, noSwitches := range passes {
		var out []mixHostResult
		if o.native {
			out = append(out, machineNoise(o.n, noSwitches))
		}
		for _, start := range runners {
			r := start(noSwitches)
			res, err := runMixOn(r, plan)
			r.close()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, res)
		}
		if noSwitches {
			run.hosts = out
		} else {
			run.split = out
		}
	}
	run.took = time.Since(started)
	return run
}

func runMixOn(r mixRunner, plan *mixPlan) (mixHostResult, error) {
	gcCounter := ""
	if r.name() != "native" {
		gcCounter = gcCounterExport
	}
	out := mixHostResult{name: r.name(), gcCounted: gcCounter != "", switchesKnown: true}
	// The warm-up's answers are checked (its tokens are none of the updates').
	w, err := r.chunk(plan.warm, gcCounter)
	if err != nil {
		return out, fmt.Errorf("%s warm-up: %w", r.name(), err)
	}
	v := newMixVerifier(plan)
	if err := v.check(r.name(), -1, plan.warm, w); err != nil {
		return out, err
	}
	// seen counts, per token, the requests let through: only those go through the cache of
	// verified tokens (a revoked one is refused before any verification).
	seen := map[uint32]bool{}
	countSeen := func(c mixChunk, res hosttest.MixResult) {
		for i, id := range c.ids {
			if id == 0 || res.Status[i] != hosttest.MixContinue {
				continue
			}
			if seen[id] {
				out.seenAgain++
			}
			seen[id] = true
		}
	}
	countSeen(plan.warm, w)
	runtime.GC() // the driver's garbage, outside the timed chunks
	var samples, calm []float64
	type slow struct {
		ns    float64
		chunk int
		i     int
		since float64 // ns from the chunk's publish
	}
	var slowest []slow
	byClass := map[string][]float64{}
	stat0, statOK := cpuStat()
	started := time.Now()
	chunks := plan.chunks
	for ci := 0; ci < len(chunks); ci++ {
		c := chunks[ci]
		res, err := r.chunk(c, gcCounter)
		if err != nil {
			return out, fmt.Errorf("%s chunk %d: %w", r.name(), ci, err)
		}
		if err := v.check(r.name(), ci, c, res); err != nil {
			return out, err
		}
		countSeen(c, res)
		for i, s := range res.Samples {
			samples = append(samples, s)
			k := answerClass(plan.tok, c.ids[i], res.Status[i])
			byClass[k] = append(byClass[k], s)
			switch sw := res.Switches[i]; {
			case sw == 0:
				calm = append(calm, s)
				if len(slowest) < 5 || s > slowest[len(slowest)-1].ns {
					slowest = append(slowest, slow{s, ci, i, res.Starts[i] - res.Published})
					slices.SortFunc(slowest, func(a, b slow) int { return int(b.ns - a.ns) })
					slowest = slowest[:min(5, len(slowest))]
				}
			default:
				out.either++
				if sw&1 != 0 {
					out.invol++
				}
				if sw&2 != 0 {
					out.vol++
				}
				if sw&4 != 0 {
					out.unsplit++
				}
			}
		}
		out.switchesKnown = out.switchesKnown && res.SwitchesKnown
		out.ticks = append(out.ticks, res.Ticks...)
		out.gcTicks += res.GCInTicks
		out.gcOutside += res.GCOutsideTicks
		out.mem = res.MemoryBytes
		// A short run (the GC test) repeats its last chunk, without a new update, until it has
		// lasted long enough for the ticks to come.
		if ci == len(chunks)-1 && time.Since(started) < plan.o.minDuration {
			again := c
			again.publish = nil
			chunks = append(chunks, again)
		}
	}
	out.took = time.Since(started)
	out.steal = -1
	if stat1, ok := cpuStat(); ok && statOK && stat1[1] > stat0[1] {
		out.steal = 100 * float64(stat1[0]-stat0[0]) / float64(stat1[1]-stat0[1])
	}
	// Requests whose token had been seen before and was not found in the cache: verified again.
	hits, err := r.cacheHits()
	if err != nil {
		return out, fmt.Errorf("%s: cache hits: %w", r.name(), err)
	}
	out.reverified = out.seenAgain - int(hits)
	out.n = len(samples)
	out.all, out.p999 = summarise(samples), quantile(samples, 0.999)
	if len(calm) > 0 {
		out.calm, out.calmP999 = summarise(calm), quantile(calm, 0.999)
	}
	for _, s := range slowest {
		id := chunks[s.chunk].ids[s.i]
		out.slowest = append(out.slowest, fmt.Sprintf("%.0f µs (%s, %.1f ms after the chunk's start)", s.ns/1000, plan.tok.className(id), s.since/1e6))
	}
	out.classes = map[string]stats{}
	for k, xs := range byClass {
		out.classes[k] = summarise(xs)
	}
	out.vis = v.visibility()
	return out, nil
}

// machineNoise times a fixed computation (SHA-256 of 64 bytes, 16 times: no allocation, no
// call into anything) o.n times with the mix's timing loop and switch counters: what this
// machine does to the tail of work that never changes.
func machineNoise(n int, noSwitches bool) mixHostResult {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out := mixHostResult{name: "fixed work", machine: true, switchesKnown: true, n: n}
	var buf [32]byte
	samples := make([]float64, n)
	var calm []float64
	stat0, statOK := cpuStat()
	started := time.Now()
	for i := range n {
		var v0, i0, v1, i1 int64
		ok := false
		if !noSwitches {
			v0, i0, ok = hosttest.ThreadSwitches()
		}
		out.switchesKnown = out.switchesKnown && ok
		t0 := time.Now()
		for range 16 {
			buf = sha256.Sum256(buf[:])
		}
		t1 := time.Now()
		if !noSwitches {
			v1, i1, _ = hosttest.ThreadSwitches()
		}
		samples[i] = float64(t1.Sub(t0).Nanoseconds())
		if v1 == v0 && i1 == i0 {
			calm = append(calm, samples[i])
			continue
		}
		out.either++
		if i1 != i0 {
			out.invol++
		}
		if v1 != v0 {
			out.vol++
		}
	}
	out.took = time.Since(started)
	out.steal = -1
	if stat1, ok := cpuStat(); ok && statOK && stat1[1] > stat0[1] {
		out.steal = 100 * float64(stat1[0]-stat0[0]) / float64(stat1[1]-stat0[1])
	}
	out.all, out.p999 = summarise(samples), quantile(samples, 0.999)
	if len(calm) > 0 {
		out.calm, out.calmP999 = summarise(calm), quantile(calm, 0.999)
	}
	return out
}

// answerClass names what a request was: its token's kind, and for a working-set token whether
// it was refused (revoked by an update).
func answerClass(tok *mixTokens, id uint32, status uint16) string {
	if tok.isWorking(id) && status == 401 {
		return "revoked by an update"
	}
	return tok.className(id)
}

// mixClasses are answerClass's names, in table order.
var mixClasses = []string{"no token", "working set", "revoked", "revoked by an update", "new token"}

func quantile(samples []float64, q float64) float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// mixVerifier checks every answer against the plan: no token, a working-set token not yet
// revoked and a new token are let through; the tokens revoked from the start get 401; a token
// revoked by an update is let through before its publish, may still be let through until the
// VM next reads the generation record (at most listRecheck, 100 ms, after the publish), and
// is refused ever after.
type mixVerifier struct {
	plan      *mixPlan
	published map[int]float64 // chunk → publish time on the host's clock
	startReq  map[int]int     // chunk → index of its first request in the run
	refused   map[uint32]bool
	first     map[uint32][2]float64 // revoked id → (requests, ns) from its publish to its first refusal
	lastOK    map[uint32][2]float64 // revoked id → (requests, ns) from its publish to its last request let through
	reqs      int
	// allowedAfter counts requests of revoked tokens let through after their publish (allowed
	// until the VM rereads the generation record).
	allowedAfter int
}

// recheckSlack is what the driver allows beyond the module's 100 ms recheck: the module's
// clock is read inside the request, just after the host's timestamp.
const recheckSlack = 2 * time.Millisecond

func newMixVerifier(p *mixPlan) *mixVerifier {
	return &mixVerifier{plan: p, published: map[int]float64{}, startReq: map[int]int{}, refused: map[uint32]bool{}, first: map[uint32][2]float64{}, lastOK: map[uint32][2]float64{}}
}

func (v *mixVerifier) check(host string, ci int, c mixChunk, r hosttest.MixResult) error {
	if len(r.Status) != len(c.ids) {
		return fmt.Errorf("%s chunk %d: %d answers for %d requests", host, ci, len(r.Status), len(c.ids))
	}
	if ci >= 0 && c.publish != nil {
		if _, seen := v.published[ci]; !seen {
			v.published[ci] = r.Published
			v.startReq[ci] = v.reqs
		}
	}
	limit := float64((100*time.Millisecond + recheckSlack).Nanoseconds())
	tok := v.plan.tok
	for i, id := range c.ids {
		st := r.Status[i]
		fail := func(why string) error {
			return fmt.Errorf("%s chunk %d request %d (%s, token %d): answer %d; %s", host, ci, i, tok.className(id), id, st, why)
		}
		if st != hosttest.MixContinue && st != 401 {
			return fail("want 0 (let through) or 401")
		}
		at, revokedByUpdate := v.plan.revokedAt[id]
		switch {
		case tok.isRevoked(id):
			if st != 401 {
				return fail("revoked from the start: want 401")
			}
		case revokedByUpdate && ci >= at:
			since := r.Starts[i] - v.published[at]
			if st == 401 {
				if !v.refused[id] {
					v.refused[id] = true
					v.first[id] = [2]float64{float64(v.reqs + i - v.startReq[at]), since}
				}
				break
			}
			if v.refused[id] {
				return fail("let through after it was refused once")
			}
			if since >= limit {
				return fail(fmt.Sprintf("let through %.1f ms after the update that revoked it (the module rechecks every 100 ms)", since/1e6))
			}
			v.lastOK[id] = [2]float64{float64(v.reqs + i - v.startReq[at]), since}
			v.allowedAfter++
		default:
			if st != hosttest.MixContinue {
				return fail("want it let through")
			}
		}
	}
	if ci >= 0 {
		v.reqs += len(c.ids)
	}
	return nil
}

// mixVisibility is, over the updates that revoked a token, when that token was first refused
// and when it was last let through after the publish (requests of every kind, and ms).
type mixVisibility struct {
	updates            int
	firstReqs, firstMS []float64 // sorted
	lastReqs, lastMS   []float64 // sorted; updates whose token was never let through count 0
	letThrough         int       // requests of revoked tokens let through after their publish
	neverRefused       int       // revoked tokens not requested again after becoming visible
}

func (v *mixVerifier) visibility() mixVisibility {
	var out mixVisibility
	for id := range v.plan.revokedAt {
		out.updates++
		if f, ok := v.first[id]; ok {
			out.firstReqs = append(out.firstReqs, f[0])
			out.firstMS = append(out.firstMS, f[1]/1e6)
		} else {
			out.neverRefused++
		}
		l := v.lastOK[id]
		out.lastReqs = append(out.lastReqs, l[0])
		out.lastMS = append(out.lastMS, l[1]/1e6)
	}
	out.letThrough = v.allowedAfter
	for _, xs := range [][]float64{out.firstReqs, out.firstMS, out.lastReqs, out.lastMS} {
		slices.Sort(xs)
	}
	return out
}

// mixTable runs the mix and renders the markdown of docs/benchmarks.md's mix section.
func mixTable(tb testing.TB, o mixOpts) string {
	run := runMix(tb, o)
	var b strings.Builder
	us := func(ns float64) string { return strconv.FormatFloat(ns/1000, 'f', 2, 64) }
	ratio := func(a, n float64) string { return strconv.FormatFloat(a/n, 'f', 1, 64) + "×" }
	med := func(xs []float64) float64 { return xs[len(xs)/2] }
	updates := len(run.plan.chunks) - 1
	fmt.Fprintf(&b, "Module %d bytes (-tags jtiguard_testexports, stubbed and compacted); %s; %s; %d-core %s/%s; load average before the run %s; %s; took %s.\n\n",
		len(run.wasm), strings.Join(run.engines, "; "), runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, loadAverage(),
		time.Now().UTC().Format("2006-01-02"), run.took.Round(time.Second))
	fmt.Fprintf(&b, "The mix: %d requests after %d untimed; %.0f%% no token, %.0f%% revoked from the start (%d tokens), %.0f%% new HS256 tokens, the rest a working set of %d tokens; a list of %d entries taking %d updates (one every %d requests, each revoking a working-set token); one request in %d carries one of the last four tokens revoked.\n\n",
		o.n, o.warm, o.pctAnon, o.pctRevok, o.revoked, o.pctCold, o.working, run.plan.listSize, updates, o.every, o.probeEvery)
	nativeOf := func(rows []mixHostResult) *mixHostResult {
		for i := range rows {
			if rows[i].name == "native" {
				return &rows[i]
			}
		}
		return nil
	}
	b.WriteString("`proxy_on_request_headers`, µs, every request (the pass without switch counters); the first row is the fixed work (see the method).\n\n")
	b.WriteString("| host | requests | p50 | p99 | p99.9 | max | p99 ÷ p50 | p50, p99 ÷ native |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	nat := nativeOf(run.hosts)
	for _, h := range run.hosts {
		rat := "—"
		if nat != nil && h.name != "native" && !h.machine {
			rat = ratio(h.all.p50, nat.all.p50) + ", " + ratio(h.all.p99, nat.all.p99)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.1f | %s |\n", h.name, h.n, us(h.all.p50), us(h.all.p99), us(h.p999), us(h.all.max), h.all.p99/h.all.p50, rat)
	}
	if len(run.split) > 0 {
		b.WriteString("\nThe pass with the timing thread's switch counters read around every request, µs: every request, then only those during which the thread was not switched out.\n\n")
		b.WriteString("| host | requests | switched out (involuntary, voluntary) | all: p50 / p99 / p99.9 / max | not switched out: p50 / p99 / p99.9 / max |\n| --- | --- | --- | --- | --- |\n")
		for _, h := range run.split {
			sw := fmt.Sprintf("%d (%d, %d)", h.either, h.invol, h.vol)
			if h.unsplit > 0 {
				sw = fmt.Sprintf("%d (not told apart)", h.either)
			}
			if !h.switchesKnown {
				sw = "unknown"
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s / %s / %s / %s | %s / %s / %s / %s |\n", h.name, h.n, sw, us(h.all.p50), us(h.all.p99), us(h.p999), us(h.all.max),
				us(h.calm.p50), us(h.calm.p99), us(h.calmP999), us(h.calm.max))
		}
	}

	var hosts []mixHostResult // without the fixed-work row
	for _, h := range run.hosts {
		if !h.machine {
			hosts = append(hosts, h)
		}
	}
	b.WriteString("\nBy kind of request, all requests, µs (p50 / p99 / max) and share:\n\n| kind |")
	for _, h := range hosts {
		fmt.Fprintf(&b, " %s |", h.name)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" --- |", len(hosts)) + "\n")
	for _, k := range mixClasses {
		fmt.Fprintf(&b, "| %s |", k)
		for _, h := range hosts {
			st, ok := h.classes[k]
			if !ok {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(&b, " %s / %s / %s (%.1f%%) |", us(st.p50), us(st.p99), us(st.max), 100*float64(st.n)/float64(h.n))
		}
		b.WriteString("\n")
	}

	b.WriteString("\nTicks (`proxy_on_tick`, untimed above, on the same thread between requests; the pass with switch counters), ms: p50 / max of all, of those that collected, and of those that collected without the thread being switched out.\n\n| host | ticks | all | collecting: count, p50 / max | collecting, not switched out | GC pauses on ticks | GC pauses inside request callbacks | linear memory after |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	ms := func(ns float64) string { return strconv.FormatFloat(ns/1e6, 'f', 2, 64) }
	tickRows := hosts
	if len(run.split) > 0 {
		tickRows = nil
		for _, h := range run.split {
			if !h.machine {
				tickRows = append(tickRows, h)
			}
		}
	}
	for _, h := range tickRows {
		var all, gc, gcCalm []float64
		for _, t := range h.ticks {
			all = append(all, t.NS)
			if t.GC > 0 {
				gc = append(gc, t.NS)
				if !t.Switched {
					gcCalm = append(gcCalm, t.NS)
				}
			}
		}
		slices.Sort(gcCalm)
		slices.Sort(all)
		slices.Sort(gc)
		cell := func(xs []float64) string {
			if len(xs) == 0 {
				return "—"
			}
			return ms(med(xs)) + " / " + ms(xs[len(xs)-1])
		}
		gcCol, gcCalmCol, inReq, gcTicks, mem := "not counted", "not counted", "not counted", "not counted", "—"
		if h.gcCounted {
			gcCol = fmt.Sprintf("%d, %s", len(gc), cell(gc))
			gcCalmCol = fmt.Sprintf("%d, %s", len(gcCalm), cell(gcCalm))
			outside, onTicks := h.gcOutside, h.gcTicks
			if len(run.split) > 0 { // and the pass without switch counters
				for _, t := range run.hosts {
					if t.name == h.name {
						outside, onTicks = outside+t.gcOutside, onTicks+t.gcTicks
					}
				}
			}
			inReq, gcTicks = strconv.FormatUint(outside, 10), strconv.FormatUint(onTicks, 10)
			mem = fmt.Sprintf("%.1f MiB", float64(h.mem)/(1<<20))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", h.name, len(h.ticks), cell(all), gcCol, gcCalmCol, gcTicks, inReq, mem)
	}
	b.WriteString("\nGarbage collections in the module are counted as the stop-the-world pauses of its Go runtime (each collection makes at least two), over both passes.\n\n")

	b.WriteString("Revocations by an update (requests of every kind after the publish, and ms), median / max over the updates:\n\n| host | updates | first refused | last let through | let through after the publish, in all |\n| --- | --- | --- | --- | --- |\n")
	for _, h := range hosts {
		vis := h.vis
		first := "none seen"
		if len(vis.firstReqs) > 0 {
			first = fmt.Sprintf("%.0f / %.0f req, %.1f / %.1f ms", med(vis.firstReqs), vis.firstReqs[len(vis.firstReqs)-1], med(vis.firstMS), vis.firstMS[len(vis.firstMS)-1])
			if vis.neverRefused > 0 {
				first += fmt.Sprintf(" (%d not requested again)", vis.neverRefused)
			}
		}
		last := "—"
		if len(vis.lastReqs) > 0 {
			last = fmt.Sprintf("%.0f / %.0f req, %.1f / %.1f ms", med(vis.lastReqs), vis.lastReqs[len(vis.lastReqs)-1], med(vis.lastMS), vis.lastMS[len(vis.lastMS)-1])
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d |\n", h.name, vis.updates, first, last, vis.letThrough)
	}
	b.WriteString("\nNo revoked token was let through 100 ms after its publish (the run fails otherwise).\n\nRequests let through with a token let through before that the module verified again (no longer in its cache), warm-up included:")
	for _, h := range hosts {
		fmt.Fprintf(&b, " %s %d of %d (%.2f%%);", h.name, h.reverified, h.seenAgain, 100*float64(h.reverified)/float64(max(h.seenAgain, 1)))
	}
	b.WriteString("\n\nCPU time stolen by the hypervisor during each host's run (/proc/stat):")
	for _, h := range run.hosts {
		if h.steal < 0 {
			fmt.Fprintf(&b, " %s unknown;", h.name)
		} else {
			fmt.Fprintf(&b, " %s %.1f%%;", h.name, h.steal)
		}
	}
	b.WriteString(" no per-request counter sees it.\n\nSlowest requests not switched out (the pass with switch counters):\n\n")
	for _, h := range tickRows {
		fmt.Fprintf(&b, "- %s: %s\n", h.name, strings.Join(h.slowest, "; "))
	}
	return b.String()
}

// cpuStat returns the machine's stolen and total CPU time so far (/proc/stat's cpu line, in
// clock ticks): the time the hypervisor ran something else while a virtual CPU wanted to run,
// which no context-switch counter of the guest sees.
func cpuStat() ([2]uint64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return [2]uint64{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return [2]uint64{}, false
	}
	var total uint64
	for _, x := range f[1:] {
		v, _ := strconv.ParseUint(x, 10, 64)
		total += v
	}
	steal, _ := strconv.ParseUint(f[8], 10, 64)
	return [2]uint64{steal, total}, true
}

// loadAverage is /proc/loadavg's first three fields, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// TestMixDocCommand runs the shell block of docs/benchmarks.md's mix section from the
// repository root, as a reader would, with a few thousand requests (JTIGUARD_MIX_N), and checks
// that it printed the table.
func TestMixDocCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make bench-mix (a V8 host); -short skips it")
	}
	out := runDocSection(t, "The mix, with list updates", "JTIGUARD_MIX_N=2000", "JTIGUARD_MIX_EVERY=1000")
	for _, want := range []string{"| native | 2000 |", "| wazero | 2000 |", "| V8 | 2000 |", "inside request callbacks", "first refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("the mix section's commands printed no %q:\n%s", want, out)
		}
	}
}
