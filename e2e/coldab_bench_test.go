package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// BenchmarkColdAB compares builds of the module on cold verifications, in one process and
// interleaved, so that the load of a shared machine falls on every build alike: rounds of
// new tokens (each round's tokens the same for every build) go to each build in turn, and
// each build's samples are summarised over all rounds. For A/B runs of a change to the cold
// path; a build made with -tags reqprobe also logs where its time goes, which is printed.
//
//	JTIGUARD_AB_WASM     comma-separated module paths (default: the module the tests use)
//	JTIGUARD_AB_ENGINES  wazero, v8 or both (default wazero)
//	JTIGUARD_AB_ALG      HS256, RS256 or ES256 (default HS256)
//	JTIGUARD_AB_LIST     filler entries in the list (default 10000)
//	JTIGUARD_AB_WORKERS  worker VMs per host (default 1; requests go to VM 0)
//	JTIGUARD_AB_ROUNDS, JTIGUARD_AB_PER  rounds, and tokens per round (default 10, 500)
//	JTIGUARD_AB_VERBOSE  set: print each round's p50 too
func BenchmarkColdAB(b *testing.B) {
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	num := func(name string, def int) int {
		n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil || n < 0 {
			b.Fatalf("%s: want a number", name)
		}
		return n
	}
	size, rounds, per := num("JTIGUARD_AB_LIST", 10_000), num("JTIGUARD_AB_ROUNDS", 10), num("JTIGUARD_AB_PER", 500)
	alg := env("JTIGUARD_AB_ALG", "HS256")
	type build struct {
		name string
		wasm []byte
	}
	var builds []build
	if paths := os.Getenv("JTIGUARD_AB_WASM"); paths != "" {
		for _, p := range strings.Split(paths, ",") {
			w, err := os.ReadFile(p)
			if err != nil {
				b.Fatal(err)
			}
			builds = append(builds, build{p, w})
		}
	} else {
		builds = []build{{"module", localproxytest.Module(b)}}
	}
	keys := newBenchKeys(b)
	cfg := benchPluginConfig(b, keys)
	list := localproxytest.List{JTIs: make([]string, size+1)}
	for i := range size {
		list.JTIs[i] = "bench-filler-" + strconv.Itoa(i)
	}
	list.JTIs[size] = "bench-revoked"
	hcfg := harness.NewConfig().WithWorkers(num("JTIGUARD_AB_WORKERS", 1)).WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false)
	type target struct {
		name    string
		t       *hostTarget
		samples []float64
	}
	var targets []*target
	for _, e := range strings.Split(env("JTIGUARD_AB_ENGINES", "wazero"), ",") {
		for _, bd := range builds {
			h, err := hosttest.Start(context.Background(), hosttest.Engine(e), bd.wasm, hcfg)
			if err != nil {
				b.Fatal(err)
			}
			t := &hostTarget{h: h}
			defer t.close()
			if err := t.publish(list); err != nil {
				b.Fatal(err)
			}
			targets = append(targets, &target{name: e + " " + bd.name, t: t})
		}
	}
	pool := func(tag string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = keys.signJWT(b, alg, claims(fmt.Sprintf("cold-%s-%s-%d", alg, tag, i), "user-1"))
		}
		return out
	}
	base := harness.RequestHeadersFor(harness.Request{Path: "/bench"})
	run := func(t *hostTarget, tokens []string) []float64 {
		spec := hosttest.BenchSpec{VM: 0, N: len(tokens), HeaderSets: headerSets(base, tokens), WantContinue: true}
		r, err := t.h.Bench(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		return r.Samples
	}
	for b.Loop() {
		for _, t := range targets {
			run(t.t, pool("warm "+t.name, 200))
		}
		for r := range rounds {
			tokens := pool("round"+strconv.Itoa(r), per)
			for _, t := range targets {
				// A tick before each round (JTIGUARD_AB_PER tokens), so that the module collects
				// between rounds as it does on Envoy's timer (see benchTickEvery).
				if err := t.t.h.TickVM(context.Background(), 0); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				s := run(t.t, tokens)
				if os.Getenv("JTIGUARD_AB_VERBOSE") != "" {
					fmt.Printf("round %d %s p50 %.2f µs\n", r, t.name, summarise(s).p50/1000)
				}
				t.samples = append(t.samples, s...)
			}
		}
	}
	fmt.Printf("cold %s, list %d, %d rounds of %d tokens\n", alg, size, rounds, per)
	for _, t := range targets {
		st := summarise(t.samples)
		fmt.Printf("%-50s p50 %7.2f µs  p99 %8.2f µs  (%d)\n", t.name, st.p50/1000, st.p99/1000, st.n)
		logs, err := t.t.h.Logs()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range logs {
			if strings.HasPrefix(l.Message, "reqprobe") {
				fmt.Println("    " + l.Message)
			}
		}
	}
}
