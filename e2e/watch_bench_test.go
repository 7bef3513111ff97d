package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
)

// BenchmarkRevokeToEveryVM makes the latency table of docs/feed.md ("Revocation latency"):
// the time from a revocation at the real revocation source (its admin API, over SQLite) to
// the moment every worker VM of the real module answers 401 for the token, with the VMs'
// timers running as in Envoy, one revocation at a time. It measures the long poll
// (sync.watch.wait 25s) with revocations at random moments 0-1 s after the previous one was
// seen everywhere, the long poll with each revocation right after the previous one (a storm,
// above the rate of polls sent at once), and in the same run the plain poll it replaces (the
// long poll off) with revocations at random moments within an interval, all at sync.interval
// 5s, in the wazero harness and in the V8 host. JTIGUARD_WATCH_N (200), JTIGUARD_WATCH_STORM_N
// (100) and JTIGUARD_WATCH_BASELINE_N (20) set the revocations of each, JTIGUARD_WATCH_WORKERS
// (4) the worker VMs, and JTIGUARD_WATCH_MD names a file for the markdown.
func BenchmarkRevokeToEveryVM(b *testing.B) {
	o := latencyOpts{n: envInt(b, "JTIGUARD_WATCH_N", 200), storm: envInt(b, "JTIGUARD_WATCH_STORM_N", 100),
		baseline: envInt(b, "JTIGUARD_WATCH_BASELINE_N", 20),
		workers:  envInt(b, "JTIGUARD_WATCH_WORKERS", 4), interval: 5 * time.Second, engines: hosttest.Engines}
	for b.Loop() {
		md := latencyTable(b, o)
		reportTable(b, "JTIGUARD_WATCH_MD", md)
	}
}

// TestLatencyTableRuns runs the benchmark's code with a few revocations and a short interval,
// so the command in docs/feed.md is known to work.
func TestLatencyTableRuns(t *testing.T) {
	md := latencyTable(t, latencyOpts{n: 5, storm: 3, baseline: 2, workers: 2, interval: time.Second, engines: []hosttest.Engine{hosttest.Wazero}})
	for _, want := range []string{"| wazero | long poll (wait 25s) | 0-1s | 5 |", "| wazero | long poll (wait 25s) | none | 3 |",
		"| wazero | plain poll (interval 1s) | 0-1s | 2 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	t.Log("\n" + md)
}

func envInt(tb testing.TB, name string, def int) int {
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

type latencyOpts struct {
	n, storm, baseline, workers int
	interval                    time.Duration
	engines                     []hosttest.Engine
}

func latencyTable(tb testing.TB, o latencyOpts) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| engine | sync | gap | revocations | p50 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	ms := func(ns float64) string { return fmt.Sprintf("%.0f ms", ns/1e6) }
	for _, e := range o.engines {
		for _, mode := range []struct {
			name  string
			watch time.Duration
			gap   time.Duration // revocations at random moments up to gap after the previous one was seen
			n     int
		}{
			{"long poll (wait 25s)", 25 * time.Second, time.Second, o.n},
			{"long poll (wait 25s)", 25 * time.Second, 0, o.storm},
			{fmt.Sprintf("plain poll (interval %s)", o.interval), 0, o.interval, o.baseline},
		} {
			st := summarise(revokeLatencies(tb, e, o, mode.watch, mode.gap, mode.n))
			gap := "none"
			if mode.gap > 0 {
				gap = "0-" + mode.gap.String()
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s |\n", e, mode.name, gap, st.n, ms(st.p50), ms(st.p99), ms(st.max))
		}
	}
	return b.String()
}

// revokeLatencies starts the real source and the real module on o.workers VMs with their
// timers on, then revokes n tokens one at a time, each at a random moment up to gap after the
// previous one was seen on every VM, and returns for each the time (ns) from the admin call to
// the last VM answering 401. Every VM is asked about once a millisecond.
func revokeLatencies(tb testing.TB, e hosttest.Engine, o latencyOpts, watch, gap time.Duration, n int) []float64 {
	src := startSourceWith(tb, 0)
	cfg := harness.NewConfig().WithWorkers(o.workers).WithWASI(harness.WASICurrent).
		WithPluginConfig(pluginConfig(cfgOpts{interval: o.interval, watch: watch})).
		WithTimers(true).WithLogLevel(harness.LogWarn).WithCluster(cluster, src.addr)
	h := startHost(tb, e, cfg)
	defer h.Close(tb.Context())
	rng := rand.New(rand.NewPCG(uint64(n), uint64(gap)))
	measure := func(jti string) time.Duration {
		tok := token(jti)
		start := time.Now()
		if err := src.revoke(jti); err != nil {
			tb.Fatal(err)
		}
		done := make([]bool, h.Workers())
		left := h.Workers()
		for left > 0 {
			if time.Since(start) > 2*o.interval+10*time.Second {
				tb.Fatalf("%s: %s not revoked on every VM after %s", e, jti, time.Since(start))
			}
			for vm := range done {
				if !done[vm] && doHost(tb, h, vm, tok) == revoked {
					done[vm] = true
					left--
				}
			}
			if left > 0 {
				time.Sleep(time.Millisecond)
			}
		}
		return time.Since(start)
	}
	measure("e2e-latency-warmup") // the first list, and the long poll open
	out := make([]float64, 0, n)
	for i := range n {
		if gap > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(gap))))
		}
		out = append(out, float64(measure(fmt.Sprintf("e2e-latency-%d", i))))
	}
	return out
}
