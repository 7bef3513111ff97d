package filter

import (
	"fmt"
	"io"
	"log"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// BenchmarkRequestHeaders is the whole request-headers path natively, through the SDK's
// emulator: header map read, token extraction, cache or verification, generation read,
// revocation lookup. The list size must not change the cost.
func BenchmarkRequestHeaders(b *testing.B) {
	quietEmulator(b)
	const coldTokens = 2048
	for _, n := range []int{0, 10_000, 1_000_000} {
		t := &testing.T{}
		f := &fixture{t: t, now: testNow}
		opt := proxytest.NewEmulatorOption().
			WithVMContext(newVMContext(func() time.Time { return f.now })).
			WithPluginConfiguration([]byte(hsConfig(`,"cache":{"max_entries":1024}`)))
		host, reset := proxytest.NewHostEmulator(opt)
		f.host = host
		if host.StartPlugin() != types.OnPluginStartStatusOK {
			b.Fatal("start failed")
		}
		entries := make([]revokedEntry, 0, n+1)
		for i := 0; i < n; i++ {
			entries = append(entries, revokedEntry{jti: fmt.Sprintf("revoked-%d", i)})
		}
		entries = append(entries, revokedEntry{jti: "the-revoked-one"})
		f.publish("jtiguard.", testNow, entries, nil)

		allowed := bearer(hs256(b, claimsAt(testNow, "allowed")))
		revoked := bearer(hs256(b, claimsAt(testNow, "the-revoked-one")))
		cold := make([][][2]string, coldTokens)
		for i := range cold {
			cold[i] = bearer(hs256(b, claimsAt(testNow, fmt.Sprintf("cold-%d", i))))
		}
		cases := []struct {
			name    string
			headers func(i int) [][2]string
			want    uint32
		}{
			{"no-token", func(int) [][2]string { return nil }, 0},
			{"allowed-cache-hit", func(int) [][2]string { return allowed }, 0},
			// 2048 distinct tokens through a 1024-entry cache: every request verifies HS256.
			{"allowed-cache-miss", func(i int) [][2]string { return cold[i%coldTokens] }, 0},
			{"revoked", func(int) [][2]string { return revoked }, 401},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("entries=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_, resp := f.request(c.headers(i))
					i++
					if (resp == nil) != (c.want == 0) {
						b.Fatalf("unexpected decision %+v", resp)
					}
				}
			})
		}
		reset()
	}
}

// BenchmarkDecideCacheHit isolates the filter's own work on a cache hit (no emulator): the
// part that runs inside the wasm VM besides host calls.
func BenchmarkDecideCacheHit(b *testing.B) {
	quietEmulator(b)
	t := &testing.T{}
	f := &fixture{t: t, now: testNow}
	var p *pluginContext
	vm := newVMContext(func() time.Time { return f.now })
	opt := proxytest.NewEmulatorOption().WithVMContext(&capturingVM{vmContext: vm, got: &p}).
		WithPluginConfiguration([]byte(hsConfig("")))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	f.host = host
	host.StartPlugin()
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "x"}}, nil)
	headers := append([][2]string{{":method", "GET"}, {":path", "/"}}, bearer(hs256(b, claimsAt(testNow, "allowed")))...)
	b.ReportAllocs()
	for b.Loop() {
		if d := p.decide(headers, nil, true); !d.allow {
			b.Fatal("denied")
		}
	}
}

type capturingVM struct {
	*vmContext
	got **pluginContext
}

func (c *capturingVM) NewPluginContext(id uint32) types.PluginContext {
	p := c.vmContext.NewPluginContext(id).(*pluginContext)
	*c.got = p
	return p
}

// quietEmulator stops the emulator from echoing every host log line through the standard
// logger, which would otherwise dominate the timings.
func quietEmulator(b *testing.B) {
	prev := log.Writer()
	log.SetOutput(io.Discard)
	b.Cleanup(func() { log.SetOutput(prev) })
}
