package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// BenchmarkFloor measures the floor under the request path (docs/benchmarks.md, "The floor
// under a request"): e2e/floormodule, a Go module on the same ABI binding that does one named
// thing per proxy_on_request_headers, beside the real module's no-token and cache-hit
// requests, in both engines, in interleaved blocks so that the machine's load falls on every
// row alike. JTIGUARD_BENCH_N sets the requests per block (default 30000), JTIGUARD_BENCH_BLOCKS
// the blocks (default 10), JTIGUARD_BENCH_MD a file for the markdown; JTIGUARD_WASM_B names a
// second module measured in the same blocks, for an A/B of a change (or several, separated
// as in $PATH, each row named by its file).
func BenchmarkFloor(b *testing.B) {
	o := floorOpts{n: 30_000, blocks: 10, b: os.Getenv("JTIGUARD_WASM_B")}
	for name, dst := range map[string]*int{"JTIGUARD_BENCH_N": &o.n, "JTIGUARD_BENCH_BLOCKS": &o.blocks} {
		if s := os.Getenv(name); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 {
				b.Fatalf("%s=%q: want a positive integer", name, s)
			}
			*dst = v
		}
	}
	for b.Loop() {
		md := floorTable(b, o)
		reportTable(b, "JTIGUARD_BENCH_MD", md)
	}
}

// TestFloorTableRuns runs BenchmarkFloor's code with a few requests, so its command is known
// to work.
func TestFloorTableRuns(t *testing.T) {
	t.Parallel() // no timing asserted, heavy on the CPU (doc.go)
	if testing.Short() {
		t.Skip("starts a V8 host; -short skips it")
	}
	md := floorTable(t, floorOpts{n: 200, blocks: 1})
	for _, want := range []string{"| `proxy_abi_version_0_2_1` |", "| floor: headers+clock |", "| jtiguard: cache hit |", "| floor: copies100 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

type floorOpts struct {
	n, blocks int
	b         string // more modules' files, separated as in $PATH ("": none)
}

// floorTarget is one row: a host, and the headers its requests carry.
type floorTarget struct {
	row     string
	engine  hosttest.Engine
	h       hosttest.Host
	headers []harness.Pairs
	p50s    []float64
	p99s    []float64
}

func floorTable(tb testing.TB, o floorOpts) string {
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	ctx := context.Background()
	floor := moduletest.BuildPackage(tb, "e2e/floormodule")
	module := localproxytest.Module(tb)
	cfg := benchPluginConfig(tb, newBenchKeys(tb))
	base := harness.RequestHeadersFor(harness.Request{Path: "/bench"})
	withToken := headerSets(base, []string{token("bench-allowed")})
	var targets []*floorTarget
	entries := map[hosttest.Engine]string{}
	cache := wazero.NewCompilationCache() // the floor module is compiled once, not per mode
	tb.Cleanup(func() { _ = cache.Close(ctx) })
	for _, e := range hosttest.Engines {
		start := func(wasm, config []byte) hosttest.Host {
			h, err := hosttest.Start(ctx, e, wasm, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
				WithPluginConfig(config).WithTimers(false).WithCompilationCache(cache))
			if err != nil {
				tb.Fatalf("start %s: %v", e, err)
			}
			tb.Cleanup(func() { _ = h.Close(ctx) })
			return h
		}
		for i, mode := range []string{"empty", "clock", "headers", "headers+clock", "calls100", "copies100"} {
			h := start(floor, []byte(mode))
			targets = append(targets, &floorTarget{row: "floor: " + mode, engine: e, h: h, headers: withToken})
			if i == 0 {
				entries[e] = exportCost(tb, h)
			}
		}
		modules := []struct {
			name string
			wasm []byte
		}{{"jtiguard", module}}
		for i, f := range filepath.SplitList(o.b) {
			b, err := os.ReadFile(f)
			if err != nil {
				tb.Fatal(err)
			}
			name := "B"
			if i > 0 || strings.Contains(o.b, string(filepath.ListSeparator)) {
				name = strings.TrimSuffix(filepath.Base(f), ".wasm")
			}
			modules = append(modules, struct {
				name string
				wasm []byte
			}{name, b})
		}
		for _, m := range modules {
			h := start(m.wasm, cfg)
			if err := localproxytest.Publish(hosttest.Store{H: h}, prefix, localproxytest.List{JTIs: []string{"bench-revoked"}}); err != nil {
				tb.Fatal(err)
			}
			targets = append(targets,
				&floorTarget{row: m.name + ": no token", engine: e, h: h, headers: headerSets(base, []string{""})},
				&floorTarget{row: m.name + ": cache hit", engine: e, h: h, headers: withToken})
		}
	}
	started := time.Now()
	for block := range o.blocks {
		for _, t := range targets {
			spec := hosttest.BenchSpec{VM: 0, N: o.n, HeaderSets: t.headers, WantContinue: true}
			if block == 0 { // warm up: V8 compiles each function at its first call
				w := spec
				w.N = min(o.n, 2000)
				if _, err := t.h.Bench(ctx, w); err != nil {
					tb.Fatalf("%s %s: %v", t.engine, t.row, err)
				}
			}
			r, err := t.h.Bench(ctx, spec)
			if err != nil {
				tb.Fatalf("%s %s: %v", t.engine, t.row, err)
			}
			st := summarise(r.Samples)
			t.p50s, t.p99s = append(t.p50s, st.p50), append(t.p99s, st.p99)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Floor under `proxy_on_request_headers`, µs (p50 / p99, medians over %d interleaved blocks of %d requests; %s).\n\n",
		o.blocks, o.n, time.Since(started).Round(time.Second))
	b.WriteString("| row | wazero | V8 |\n| --- | --- | --- |\n")
	fmt.Fprintf(&b, "| `proxy_abi_version_0_2_1` | %s | %s |\n", entries[hosttest.Wazero], entries[hosttest.V8])
	for i := 0; i < len(targets)/2; i++ {
		w, v := targets[i], targets[i+len(targets)/2]
		fmt.Fprintf(&b, "| %s | %.2f / %.2f | %.2f / %.2f |\n", w.row, median(w.p50s)/1000, median(w.p99s)/1000, median(v.p50s)/1000, median(v.p99s)/1000)
	}
	// A module built with -tags reqprobe logs where its request path's time goes
	// (filter/probehot_on.go): the last reading of each path, per module and engine.
	seen := map[hosttest.Host]bool{}
	for _, t := range targets {
		if seen[t.h] || strings.HasPrefix(t.row, "floor") {
			continue
		}
		seen[t.h] = true
		logs, err := t.h.Logs()
		if err != nil {
			tb.Fatal(err)
		}
		last := map[string]string{}
		for _, l := range logs {
			if f := strings.Fields(l.Message); len(f) > 2 && f[0] == "reqprobe" && f[1] == "hot" {
				last[f[2]] = l.Message
			}
		}
		for _, path := range []string{"no_token", "cache_hit"} {
			if m := last[path]; m != "" {
				fmt.Fprintf(&b, "\n%s %s: %s", t.engine, strings.TrimSuffix(t.row, ": no token"), m)
			}
		}
	}
	return b.String()
}

// exportCost is what one call of an export that does nothing costs (Go's runtime entered and
// left through //go:wasmexport), with the host's bookkeeping of a callback.
func exportCost(tb testing.TB, h hosttest.Host) string {
	type exporter interface {
		BenchExport(ctx context.Context, vm int, name string, args []uint32, n, per int) ([]float64, error)
	}
	var s []float64
	var err error
	if x, ok := h.(exporter); ok {
		s, err = x.BenchExport(context.Background(), 0, "proxy_abi_version_0_2_1", nil, 2000, 100)
	} else {
		s, err = hosttest.Harness(h).VM(0).BenchExport(context.Background(), "proxy_abi_version_0_2_1", nil, 2000, 100)
	}
	if err != nil {
		tb.Fatal(err)
	}
	st := summarise(s)
	return fmt.Sprintf("%.0f ns a call", st.p50)
}
