package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

const reqSecret = "request-benchmark-secret-of-at-least-32-bytes"

func reqToken(jti string) string {
	now := time.Now().Unix()
	return localproxytest.HS256(reqSecret, map[string]any{"jti": jti, "sub": "user-1", "type": "access",
		"fresh": false, "iat": now - 60, "nbf": now - 60, "exp": now + 3600})
}

// BenchmarkRequestPath compares the request path of module variants (WASM_SIZE_MODULES) in the
// harness (one VM, wazero's compiler, a 10 000-entry list): no token, a cached token (hit), a
// new HS256 token every request (cold). Each iteration runs a block of requests of each case on
// each module in turn, so that variants share the machine's load; medians of the blocks' mean
// time per proxy_on_request_headers are reported as <name>-<case>-µs, and of the thread's CPU
// time as <name>-<case>-cpu-µs (which includes two getrusage calls). It checks that every
// variant decides alike (continue for all three cases).
func BenchmarkRequestPath(b *testing.B) {
	runtime.LockOSThread() // the -cpu-µs metrics read this thread's CPU clock
	defer runtime.UnlockOSThread()
	const block = 200
	ctx := context.Background()
	cfg := []byte(`{"prefix":"jtiguard.","jwt":{"algorithms":["HS256"],"hmac_secrets":[{"secret":"` + reqSecret +
		`"}]},"missing_token":"allow","sync":{"cluster":""}}`)
	list := localproxytest.List{JTIs: make([]string, 10_000)}
	for i := range list.JTIs {
		list.JTIs[i] = "bench-filler-" + strconv.Itoa(i)
	}
	type variant struct {
		name    string
		h       *harness.Harness
		samples map[string][]time.Duration
		cpu     map[string][]time.Duration
	}
	var vs []*variant
	for _, m := range benchModules(b) {
		h, err := harness.New(ctx, m.wasm, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
			WithPluginConfig(cfg).WithTimers(false).WithLogLevel(harness.LogWarn))
		if err != nil {
			b.Fatalf("%s: %v", m.name, err)
		}
		defer h.Close(ctx)
		if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, "jtiguard.", list); err != nil {
			b.Fatal(err)
		}
		vs = append(vs, &variant{m.name, h, map[string][]time.Duration{}, map[string][]time.Duration{}})
	}
	base := harness.RequestHeadersFor(harness.Request{Path: "/bench"})
	headers := func(tok string) harness.Pairs {
		if tok == "" {
			return base
		}
		return append(base[:len(base):len(base)], [2]string{"authorization", "Bearer " + tok})
	}
	hit := reqToken("bench-allowed")
	seq := 0
	cases := []struct {
		name  string
		token func() string
	}{
		{"no-token", func() string { return "" }},
		{"hit", func() string { return hit }},
		{"cold", func() string { seq++; return reqToken(fmt.Sprintf("bench-cold-%d-%d", time.Now().UnixNano(), seq)) }},
	}
	run := func(v *variant, tok string) (wall, cpu time.Duration) {
		s, err := v.h.NewStream(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		hs := headers(tok)
		c0, t0 := threadCPU(), time.Now()
		act, err := s.RequestHeaders(ctx, hs, true)
		wall, cpu = time.Since(t0), threadCPU()-c0
		if err != nil || act != harness.ActionContinue {
			b.Fatalf("%s: action %v, err %v; want continue", v.name, act, err)
		}
		_ = s.End(ctx)
		return wall, cpu
	}
	for _, v := range vs { // warm: the hit token cached, every path run once
		for _, c := range cases {
			run(v, c.token())
		}
	}
	for iter := 0; b.Loop(); iter++ {
		for _, c := range cases {
			toks := make([]string, block)
			for i := range toks {
				toks[i] = c.token()
			}
			for k := range vs {
				v := vs[(k+iter)%len(vs)] // each variant in each position in turn: no order bias
				var total, cpu time.Duration
				for _, tok := range toks {
					w, c := run(v, tok)
					total += w
					cpu += c
				}
				v.samples[c.name] = append(v.samples[c.name], total/block)
				v.cpu[c.name] = append(v.cpu[c.name], cpu/block)
			}
		}
	}
	for _, v := range vs {
		for _, c := range cases {
			b.ReportMetric(median(v.samples[c.name], time.Microsecond), v.name+"-"+c.name+"-µs")
			b.ReportMetric(median(v.cpu[c.name], time.Microsecond), v.name+"-"+c.name+"-cpu-µs")
		}
	}
}
