package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
	"github.com/jtiguard/jtiguard/v8host"
)

// BenchmarkModule makes the module benchmark table of docs/benchmarks.md (`make
// bench-module`): the real module's proxy_on_request_headers in V8 (Node.js, timed inside
// node) and in wazero (the harness, timed in Go), and the filter compiled natively under the
// SDK's proxytest emulator, in the same run, with per-request samples reported as p50, p99
// and max and as ratios to native. Also the module's size, each engine's VM start by phase,
// and each VM's linear memory after the run. JTIGUARD_BENCH_MD names a file for the markdown;
// JTIGUARD_BENCH_N, JTIGUARD_BENCH_COLD_HS and JTIGUARD_BENCH_COLD_PK set the request counts.
func BenchmarkModule(b *testing.B) {
	o := benchOptsFromEnv(b)
	for b.Loop() {
		md := moduleTable(b, o)
		reportTable(b, "JTIGUARD_BENCH_MD", md)
	}
}

// TestModuleTableRuns runs the benchmark's code with a few requests, so `make bench-module`
// is known to work without spending its ten minutes.
func TestModuleTableRuns(t *testing.T) {
	t.Parallel() // no timing asserted, heavy on the CPU (doc.go); the only parallel one with the native emulator
	if testing.Short() {
		t.Skip("starts a V8 host; -short skips it")
	}
	md := moduleTable(t, benchOpts{sizes: []int{0, 100}, n: 300, nHS: 20, nPK: 4, warm: 10})
	for _, want := range []string{"| no token | 0 | 300 |", "| revoked | 100 |", "| cold RS256 | 100 | 4 |", "| cold ES256 |",
		"| V8 | VM 0 |", "| wazero | VM 1 |", "linear memory", "module size"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

type benchOpts struct {
	sizes []int // filler entries in the list (the revoked entry comes on top)
	n     int   // requests per case without a signature check (no token, hit, revoked)
	nHS   int   // requests (distinct tokens) of the cold HS256 case
	nPK   int   // requests (distinct tokens) of each cold RS256 and ES256 case
	warm  int   // untimed requests before each case (V8 compiles a function at its first call)
}

func benchOptsFromEnv(tb testing.TB) benchOpts {
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
	return benchOpts{sizes: []int{0, 10_000, 1_000_000}, n: env("JTIGUARD_BENCH_N", 1_000_000),
		nHS: env("JTIGUARD_BENCH_COLD_HS", 10_000), nPK: env("JTIGUARD_BENCH_COLD_PK", 1_000), warm: 1000}
}

// benchCase is one row kind: the tokens its requests carry (cycled) and the answer.
type benchCase struct {
	name   string
	tokens []string // "" for no token
	want   outcome
}

// stats summarises per-request samples in nanoseconds.
type stats struct {
	n             int
	p50, p99, max float64
}

func summarise(samples []float64) stats {
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return stats{n: len(s), p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}

// benchKeys are the signing keys of the benchmark's tokens.
type benchKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func newBenchKeys(tb testing.TB) benchKeys {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return benchKeys{rsa: rk, ec: ek}
}

func pemOf(tb testing.TB, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// benchPluginConfig accepts HS256, RS256 and ES256, keeps the default token cache (1024),
// reads the list from shared data only, and never calls it stale (a run takes minutes).
func benchPluginConfig(tb testing.TB, k benchKeys) []byte {
	b, err := json.Marshal(map[string]any{
		"prefix": prefix,
		"token":  map[string]any{"locations": []string{"headers"}},
		"jwt": map[string]any{"algorithms": []string{"HS256", "RS256", "ES256"},
			"hmac_secrets": []map[string]string{{"secret": secret}},
			"public_keys":  []map[string]string{{"pem": pemOf(tb, &k.rsa.PublicKey)}, {"pem": pemOf(tb, &k.ec.PublicKey)}}},
		"max_staleness": "0s",
		"sync":          map[string]any{"cluster": ""},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signJWT signs claims with alg: HS256 with the tests' secret, RS256 or ES256 with k.
func (k benchKeys) signJWT(tb testing.TB, alg string, c map[string]any) string {
	if alg == "HS256" {
		return localproxytest.HS256(secret, c)
	}
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": alg, "typ": "JWT"})
	p, _ := json.Marshal(c)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	var sig []byte
	switch alg {
	case "RS256":
		s, err := rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, sum[:])
		if err != nil {
			tb.Fatal(err)
		}
		sig = s
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, sum[:])
		if err != nil {
			tb.Fatal(err)
		}
		sig = append(pad32(r), pad32(s)...)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func pad32(x *big.Int) []byte {
	b := make([]byte, 32)
	return x.FillBytes(b)
}

// benchTarget is one of the three ways the filter runs.
type benchTarget interface {
	name() string
	publish(l localproxytest.List) error
	run(c benchCase, n int) (stats, error)
	close()
}

// nativeTarget is the filter compiled natively, under the SDK's emulator (one at a time).
type nativeTarget struct {
	host      proxytest.HostEmulator
	reset     func()
	sinceTick int // requests since the last tick, across runs (benchTickEvery)
}

func newNativeTarget(tb testing.TB, cfg []byte) *nativeTarget {
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(filter.NewVMContext()).WithPluginConfiguration(cfg))
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		reset()
		tb.Fatalf("native start: %v %q", st, host.GetCriticalLogs())
	}
	return &nativeTarget{host: host, reset: reset}
}

func (*nativeTarget) name() string { return "native" }
func (n *nativeTarget) close()     { n.reset() }
func (n *nativeTarget) publish(l localproxytest.List) error {
	return localproxytest.Publish(abiStore{}, prefix, l)
}

func (n *nativeTarget) run(c benchCase, count int) (stats, error) {
	base := harness.RequestHeadersFor(harness.Request{Path: "/bench"})
	sets := headerSets(base, c.tokens)
	samples := make([]float64, count)
	for i := range count {
		if n.sinceTick == benchTickEvery {
			n.host.Tick()
			n.sinceTick = 0
		}
		n.sinceTick++
		id := n.host.InitializeHttpContext()
		t0 := time.Now()
		act := n.host.CallOnRequestHeaders(id, sets[i%len(sets)], true)
		samples[i] = float64(time.Since(t0).Nanoseconds())
		var status uint32
		if lr := n.host.GetSentLocalResponse(id); lr != nil {
			status = lr.StatusCode
		}
		n.host.CompleteHttpContext(id)
		if (act == types.ActionContinue) != c.want.Continue || status != c.want.Status {
			return stats{}, fmt.Errorf("native %s request %d: action %v status %d; want %v", c.name, i, act, status, c.want)
		}
	}
	return summarise(samples), nil
}

// hostTarget is the module in one engine; requests run on VM 0.
type hostTarget struct {
	h         hosttest.Host
	mem       uint64 // VM 0's linear memory after the last run
	sinceTick int    // requests to VM 0 since its last tick, across runs (benchTickEvery)
}

func (t *hostTarget) name() string { return string(t.h.Engine()) }
func (t *hostTarget) close()       { _ = t.h.Close(context.Background()) }
func (t *hostTarget) publish(l localproxytest.List) error {
	return localproxytest.Publish(hosttest.Store{H: t.h}, prefix, l)
}

func (t *hostTarget) run(c benchCase, n int) (stats, error) {
	ctx := context.Background()
	base := harness.RequestHeadersFor(harness.Request{Path: "/bench"})
	sets := headerSets(base, c.tokens)
	samples := make([]float64, 0, n)
	for done := 0; done < n; {
		if t.sinceTick == benchTickEvery {
			if err := t.h.TickVM(ctx, 0); err != nil {
				return stats{}, fmt.Errorf("%s %s: tick: %w", t.name(), c.name, err)
			}
			t.sinceTick = 0
		}
		block := min(benchTickEvery-t.sinceTick, n-done)
		blockSets := sets
		if len(sets) > 1 { // request i of the row takes sets[i%len(sets)], as in one run
			blockSets = make([]harness.Pairs, block)
			for j := range blockSets {
				blockSets[j] = sets[(done+j)%len(sets)]
			}
		}
		spec := hosttest.BenchSpec{VM: 0, N: block, HeaderSets: blockSets, WantContinue: c.want.Continue, WantStatus: c.want.Status}
		r, err := t.h.Bench(ctx, spec)
		if err != nil {
			return stats{}, fmt.Errorf("%s %s: %w", t.name(), c.name, err)
		}
		samples = append(samples, r.Samples...)
		t.mem = r.MemoryBytes
		done += block
		t.sinceTick += block
	}
	return summarise(samples), nil
}

// benchTickEvery is how many requests a benchmark target runs between two ticks of its VM
// (untimed), counted across rows and their warm-ups, so that every row, however short, runs
// under the same cadence. Envoy ticks each worker on the period the module sets, and the module collects
// its garbage on the tick (filter/gcpace_wasip1.go): without ticks, the cold rows measured a
// heap that only grew, each request paying for pages the VM touched for the first time (13 µs a
// page on this project's machine) and for collections at the memory limit, which the module
// never has in steady state. One tick per 1000 requests is a 12–30 ms period at the module's
// cold HS256 rates, and costs the other rows nothing (their requests allocate nothing to collect).
const benchTickEvery = 1000

func headerSets(base harness.Pairs, tokens []string) []harness.Pairs {
	out := make([]harness.Pairs, len(tokens))
	for i, tok := range tokens {
		out[i] = base
		if tok != "" {
			out[i] = append(base[:len(base):len(base)], [2]string{"authorization", "Bearer " + tok})
		}
	}
	return out
}

// moduleTable runs every case on every list size in native Go, wazero and V8, and renders
// the markdown of docs/benchmarks.md.
func moduleTable(tb testing.TB, o benchOpts) string {
	log.SetOutput(io.Discard) // the emulator prints every proxy_log line
	defer log.SetOutput(os.Stderr)
	started := time.Now()
	keys := newBenchKeys(tb)
	cfg := benchPluginConfig(tb, keys)
	wasm := localproxytest.Module(tb)

	ctx := context.Background()
	// Two workers, as a small Envoy; wazero without a compilation cache, so its compile
	// time is real. Timers off: nothing else runs in the VMs during a case.
	hcfg := harness.NewConfig().WithWorkers(2).WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false)
	var hosts []*hostTarget
	for _, e := range []hosttest.Engine{hosttest.Wazero, hosttest.V8} {
		h, err := hosttest.Start(ctx, e, wasm, hcfg)
		if err != nil {
			tb.Fatalf("start %s: %v", e, err)
		}
		hosts = append(hosts, &hostTarget{h: h})
	}
	defer func() {
		for _, h := range hosts {
			h.close()
		}
	}()

	type row struct {
		c     string
		size  int
		n     int
		stats map[string]stats
	}
	var rows []row
	claimsFor := func(jti string) map[string]any { return claims(jti, "user-1") }
	for si, size := range o.sizes {
		list := localproxytest.List{JTIs: make([]string, size+1)}
		for i := range size {
			list.JTIs[i] = "bench-filler-" + strconv.Itoa(i)
		}
		list.JTIs[size] = "bench-revoked"
		// Cold tokens are new on each list size (the hosts live on and their caches remember)
		// and the same in every engine (each has its own cache).
		pool := func(alg string, n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = keys.signJWT(tb, alg, claimsFor(fmt.Sprintf("cold-%s-%d-%d", alg, si, i)))
			}
			return out
		}
		cases := []struct {
			c    benchCase
			n    int
			warm []string
		}{
			{benchCase{"no token", []string{""}, allowed}, o.n, nil},
			{benchCase{"cache hit", []string{token("bench-allowed")}, allowed}, o.n, nil},
			{benchCase{"cold HS256", pool("HS256", o.nHS), allowed}, o.nHS, pool("HS256", min(o.warm, 100))},
			{benchCase{"cold RS256", pool("RS256", o.nPK), allowed}, o.nPK, pool("RS256", min(o.warm, 20))},
			{benchCase{"cold ES256", pool("ES256", o.nPK), allowed}, o.nPK, pool("ES256", min(o.warm, 20))},
			{benchCase{"revoked", []string{token("bench-revoked")}, revoked}, o.n, nil},
		}
		native := newNativeTarget(tb, cfg)
		targets := []benchTarget{native}
		for _, h := range hosts {
			targets = append(targets, h)
		}
		for _, t := range targets {
			if err := t.publish(list); err != nil {
				tb.Fatalf("%s: publish %d entries: %v", t.name(), size+1, err)
			}
		}
		for _, c := range cases {
			r := row{c: c.c.name, size: size, n: c.n, stats: map[string]stats{}}
			for _, t := range targets {
				warm := c.c
				if c.warm != nil {
					warm.tokens = c.warm
				}
				if _, err := t.run(warm, o.warm); err != nil {
					tb.Fatal(err)
				}
				runtime.GC() // the Go side's garbage (samples, emulator) outside the timing
				st, err := t.run(c.c, c.n)
				if err != nil {
					tb.Fatal(err)
				}
				r.stats[t.name()] = st
			}
			rows = append(rows, r)
		}
		native.close()
	}

	var b strings.Builder
	us := func(ns float64) string { return strconv.FormatFloat(ns/1000, 'f', 2, 64) }
	ratio := func(a, n float64) string { return strconv.FormatFloat(a/n, 'f', 1, 64) + "×" }
	fmt.Fprintf(&b, "Module %d bytes; %s; %s; %d-core %s/%s; %s; took %s.\n\n", len(wasm), engineLine(hosts),
		runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"), time.Since(started).Round(time.Second))
	b.WriteString("Request path: `proxy_on_request_headers`, µs per request (p50 / p99 / max) and the module's ratio to native Go (p50, p99).\n\n")
	b.WriteString("| case | list | requests | native | wazero | wazero ÷ native | V8 | V8 ÷ native |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		nat := r.stats["native"]
		fmt.Fprintf(&b, "| %s | %d | %d | %s / %s / %s |", r.c, r.size, r.n, us(nat.p50), us(nat.p99), us(nat.max))
		for _, e := range []string{"wazero", "v8"} {
			s := r.stats[e]
			fmt.Fprintf(&b, " %s / %s / %s | %s, %s |", us(s.p50), us(s.p99), us(s.max), ratio(s.p50, nat.p50), ratio(s.p99, nat.p99))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nlinear memory of the benchmark VM after the run (list of %d entries): ", o.sizes[len(o.sizes)-1]+1)
	for i, h := range hosts {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.1f MiB", engineName(h), float64(h.mem)/(1<<20))
	}
	fmt.Fprintf(&b, "; module size %d bytes (%.1f MiB).\n\n", len(wasm), float64(len(wasm))/(1<<20))
	b.WriteString("VM start (2 workers, ms): compile once, then per VM.\n\n| engine | VM | compile | instantiate | `_initialize` | configure |\n| --- | --- | --- | --- | --- | --- |\n")
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
	for _, h := range hosts {
		st := h.h.StartTimings()
		for i, v := range st.VMs {
			c := "—"
			if i == 0 {
				c = ms(st.Compile)
			}
			fmt.Fprintf(&b, "| %s | VM %d | %s | %s | %s | %s |\n", engineName(h), i, c, ms(v.Instantiate), ms(v.Initialize), ms(v.Configure))
		}
	}
	return b.String()
}

func engineName(h *hostTarget) string {
	if h.h.Engine() == hosttest.V8 {
		return "V8"
	}
	return "wazero"
}

// engineLine names the engines' versions and V8's flags.
func engineLine(hosts []*hostTarget) string {
	parts := []string{"wazero " + wazeroVersion()}
	for _, h := range hosts {
		if v, ok := h.h.(interface{ Info() v8hostInfo }); ok {
			i := v.Info()
			parts = append(parts, fmt.Sprintf("V8 %s (node %s, %s)", i.V8, i.Node, strings.Join(i.Flags, " ")))
		}
	}
	return strings.Join(parts, "; ")
}

type v8hostInfo = v8host.Info

// wazeroVersion is the wazero version go.mod requires.
func wazeroVersion() string {
	root, err := moduletest.RepoRoot()
	if err != nil {
		return "(unknown version)"
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "(unknown version)"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/tetratelabs/wazero" {
			return f[1]
		}
	}
	return "(unknown version)"
}

// TestHarnessDocCommand runs the commands of docs/benchmarks.md's section on the harness's
// memory and ticks (a memory's grows, the harness's own cost per request), as a reader would.
func TestHarnessDocCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark of the harness on the real module; -short skips it")
	}
	out := runDocSection(t, "The harness's memory and the ticks")
	for _, want := range []string{"BenchmarkMemoryGrow/harness", "max-grow-ms", "BenchmarkStreamWithoutToken", "allocs/op"} {
		if !strings.Contains(out, want) {
			t.Errorf("the section's command printed no %q:\n%s", want, out)
		}
	}
}
