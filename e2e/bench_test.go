package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// BenchmarkRequestHeaders times proxy_on_request_headers of the real module in the harness
// (one worker VM, current WASI surface, wazero's compiler) and the same decision made by the
// filter compiled natively under the SDK's proxytest emulator, in the same run:
//
//	module-ns/headers   the module's proxy_on_request_headers call alone
//	native-ns/headers   CallOnRequestHeaders in the emulator alone
//	module/native       their ratio
//
// ns/op covers one module request and one native request with their stream set-up and
// tear-down, so read the custom metrics. Cases: no token; an allowed token already in the
// VM's token cache (hit); allowed tokens never seen before (cold: a distinct token per op,
// so every op verifies the HS256 signature); a revoked token (cache hit, found in the list).
// List sizes 0, 10k and 1M entries (the revoked case needs its entry, so it has no size 0).
func BenchmarkRequestHeaders(b *testing.B) {
	log.SetOutput(io.Discard) // the emulator prints every proxy_log line
	defer log.SetOutput(nil)
	for _, size := range []int{0, 10_000, 1_000_000} {
		list := localproxytest.List{JTIs: make([]string, size)}
		for i := range list.JTIs {
			list.JTIs[i] = "bench-filler-" + strconv.Itoa(i)
		}
		if size > 0 {
			list.JTIs[0] = "bench-revoked"
		}
		env := newBenchEnv(b, list)
		cases := []struct {
			name   string
			tokens func(n int) []string
		}{
			{"no-token", func(int) []string { return []string{""} }},
			{"hit", func(int) []string { return []string{token("bench-allowed")} }},
			{"cold", func(n int) []string {
				out := make([]string, n)
				for i := range out {
					out[i] = token(fmt.Sprintf("bench-cold-%d-%d", time.Now().UnixNano(), i))
				}
				return out
			}},
			{"revoked", func(int) []string { return []string{token("bench-revoked")} }},
		}
		for _, c := range cases {
			if c.name == "revoked" && size == 0 {
				continue
			}
			b.Run(fmt.Sprintf("%s/list=%d", c.name, size), func(b *testing.B) {
				moduleToks, nativeToks := c.tokens(b.N), c.tokens(b.N)
				want := env.check(b, moduleToks[0], nativeToks[0])
				b.ReportAllocs()
				b.ResetTimer()
				mod := env.module(b, moduleToks, want)
				nat := env.native(b, nativeToks, want)
				b.StopTimer()
				b.ReportMetric(float64(mod.Nanoseconds())/float64(b.N), "module-ns/headers")
				b.ReportMetric(float64(nat.Nanoseconds())/float64(b.N), "native-ns/headers")
				b.ReportMetric(float64(mod)/float64(nat), "module/native")
			})
		}
		env.close()
	}
}

// benchEnv holds one module harness and one native emulator holding the same list.
type benchEnv struct {
	h      *harness.Harness
	host   proxytest.HostEmulator
	reset  func()
	ctx    context.Context
	header harness.Pairs
}

func newBenchEnv(b *testing.B, list localproxytest.List) *benchEnv {
	cfg := pluginConfig(cfgOpts{noSync: true})
	e := &benchEnv{ctx: context.Background(), header: harness.RequestHeadersFor(harness.Request{Path: "/bench"})}
	var err error
	e.h, err = harness.New(e.ctx, localproxytest.Module(b), harness.NewConfig().WithWorkers(1).
		WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false).
		WithLogLevel(harness.LogInfo).WithCompilationCache(compiled()))
	if err != nil {
		b.Fatal(err)
	}
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: e.h}, prefix, list); err != nil {
		b.Fatal(err)
	}
	e.host, e.reset = proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(filter.NewVMContext()).WithPluginConfiguration(cfg))
	if st := e.host.StartPlugin(); st != types.OnPluginStartStatusOK {
		b.Fatalf("native start: %v", st)
	}
	if err := localproxytest.Publish(abiStore{}, prefix, list); err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *benchEnv) close() {
	e.reset()
	_ = e.h.Close(e.ctx)
}

func (e *benchEnv) headers(tok string) harness.Pairs {
	if tok == "" {
		return e.header
	}
	return append(e.header[:len(e.header):len(e.header)], [2]string{"authorization", "Bearer " + tok})
}

// check makes sure both hosts decide alike (and warms the list in, outside the timing).
func (e *benchEnv) check(b *testing.B, moduleTok, nativeTok string) outcome {
	m := do(b, e.h, 0, moduleTok)
	if n := nativeDo(e.host, nativeTok); n != m {
		b.Fatalf("module %v; native %v", m, n)
	}
	return m
}

func (e *benchEnv) module(b *testing.B, toks []string, want outcome) time.Duration {
	var total time.Duration
	for i := range b.N {
		s, err := e.h.NewStream(e.ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		hs := e.headers(toks[i%len(toks)])
		t0 := time.Now()
		act, err := s.RequestHeaders(e.ctx, hs, true)
		total += time.Since(t0)
		if err != nil || (act == harness.ActionContinue) != want.Continue {
			b.Fatalf("module: action %v err %v; want %v", act, err, want)
		}
		_ = s.End(e.ctx)
	}
	return total
}

func (e *benchEnv) native(b *testing.B, toks []string, want outcome) time.Duration {
	var total time.Duration
	for i := range b.N {
		id := e.host.InitializeHttpContext()
		hs := e.headers(toks[i%len(toks)])
		t0 := time.Now()
		act := e.host.CallOnRequestHeaders(id, hs, true)
		total += time.Since(t0)
		if (act == types.ActionContinue) != want.Continue {
			b.Fatalf("native: action %v; want %v", act, want)
		}
		e.host.CompleteHttpContext(id)
	}
	return total
}
