package v8host_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/v8host"
)

// The tests here drive testdata/guest, a small Go guest whose every ABI call is reachable
// from a request, through both hosts with the same expectations: what holds in the wazero
// harness must hold in V8, and the other way round. A missing node fails them (ErrNoNode);
// it is never a skip.

var (
	guestOnce  sync.Once
	guestWasm  []byte
	guestError error
)

// guest builds testdata/guest with the standard toolchain, once per test binary.
func guest(t *testing.T) []byte {
	t.Helper()
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "v8host-guest-")
		if err != nil {
			guestError = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "guest.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/guest")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			guestError = fmt.Errorf("build guest: %v\n%s", err, b)
			return
		}
		guestWasm, guestError = os.ReadFile(out)
	})
	if guestError != nil {
		t.Fatal(guestError)
	}
	return guestWasm
}

// cache keeps wazero's compilation of the guest across the tests (V8 has no such cache
// across node processes: each host compiles anew, as each Envoy process does).
var cache = wazero.NewCompilationCache()

func start(t *testing.T, e hosttest.Engine, cfg harness.Config) hosttest.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := hosttest.Start(ctx, e, guest(t), cfg.WithCompilationCache(cache))
	if err != nil {
		t.Fatalf("%s: start: %v", e, err)
	}
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func baseConfig() harness.Config {
	return harness.NewConfig().WithWorkers(2).WithWASI(harness.WASICurrent).WithTimers(false)
}

// op runs a request with the given headers on vm and returns the guest's reply body.
func op(t *testing.T, h hosttest.Host, vm int, kv ...string) string {
	t.Helper()
	var hs harness.Pairs
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, [2]string{kv[i], kv[i+1]})
	}
	res, err := h.Do(context.Background(), harness.Request{VM: vm, Headers: hs})
	if err != nil {
		t.Fatalf("%s: Do %v: %v", h.Engine(), kv, err)
	}
	if res.LocalResponse == nil {
		t.Fatalf("%s: Do %v: no reply (%v)", h.Engine(), kv, res)
	}
	return string(res.LocalResponse.Body)
}

func forEngines(t *testing.T, f func(t *testing.T, e hosttest.Engine)) {
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) { f(t, e) })
	}
}

// TestRestrictedCalls: cpp-host lets a guest call only a few host functions during
// _initialize and inside proxy_on_memory_allocate; anything else traps and fails the VM
// (V8 enforces this, with "restricted_callback"). What is allowed depends on the WASI
// generation: poll_oneoff in the allocator only since cpp-host 94091cd.
func TestRestrictedCalls(t *testing.T) {
	tests := []struct {
		fault     string
		gen       harness.WASIGeneration
		wantStart bool // the VMs start
		wantFail  bool // an armed request fails its VM
		wantLog   string
	}{
		{fault: "init-call", gen: harness.WASICurrent, wantStart: false, wantLog: "restricted capability: env.proxy_set_tick_period_milliseconds during _initialize"},
		{fault: "init-log", gen: harness.WASICurrent, wantStart: true, wantLog: "guest: log during _initialize"},
		{fault: "malloc-call", gen: harness.WASICurrent, wantStart: true, wantFail: true, wantLog: "restricted capability: env.proxy_set_tick_period_milliseconds during proxy_on_memory_allocate"},
		{fault: "malloc-log", gen: harness.WASIEnvoy133, wantStart: true, wantLog: "guest: log inside the allocator"},
		{fault: "malloc-poll", gen: harness.WASICurrent, wantStart: true},
		{fault: "malloc-poll", gen: harness.WASIEnvoy133, wantStart: true, wantFail: true, wantLog: "poll_oneoff during proxy_on_memory_allocate"},
	}
	guest(t)
	for _, tc := range tests {
		t.Run(tc.fault+"/"+tc.gen.String(), func(t *testing.T) {
			t.Parallel() // each case starts its own hosts; node compiles on one thread
			forEngines(t, func(t *testing.T, e hosttest.Engine) {
				ctx := context.Background()
				cfg := baseConfig().WithWASI(tc.gen).WithEnv(map[string]string{"GUEST_FAULT": tc.fault}).WithCompilationCache(cache)
				h, err := hosttest.Start(ctx, e, guest(t), cfg)
				if !tc.wantStart {
					if err == nil {
						h.Close(ctx)
						t.Fatal("started; want a start failure")
					}
					if !errors.Is(err, harness.ErrStartFailed) || !strings.Contains(err.Error(), "_initialize") {
						t.Fatalf("start error %v; want ErrStartFailed in _initialize", err)
					}
					if e == hosttest.V8 && !strings.Contains(err.Error(), "restricted_callback") {
						t.Errorf("start error %v; want V8's restricted_callback trap", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				defer h.Close(ctx)
				res, err := h.Do(ctx, harness.Request{Headers: harness.Pairs{{"x-arm", "1"}}})
				if err != nil {
					t.Fatal(err)
				}
				if got := res.VMFailure != nil; got != tc.wantFail {
					t.Fatalf("armed request: VM failure %v; want failure %v", res.VMFailure, tc.wantFail)
				}
				if tc.wantFail {
					if res.LocalResponse == nil || res.LocalResponse.Status != 503 {
						t.Fatalf("armed request answered %v; want 503", res)
					}
					again, err := h.Do(ctx, harness.Request{})
					if err != nil || again.LocalResponse == nil || again.LocalResponse.Details != "wasm_fail_stream" {
						t.Fatalf("request after the failure: %v, %v; want 503 wasm_fail_stream", again, err)
					}
					vms, err := h.VMs()
					if err != nil || vms[0].Failed == nil || !errors.Is(vms[0].Failed, harness.ErrVMFailed) || vms[1].Failed != nil {
						t.Fatalf("VM states %v, %v; want VM 0 failed only", vms, err)
					}
				} else if res.LocalResponse == nil || string(res.LocalResponse.Body) != "survived" {
					t.Fatalf("armed request answered %v; want the guest's reply", res)
				}
				if tc.wantLog != "" && !logged(t, h, tc.wantLog) {
					t.Errorf("no log line containing %q", tc.wantLog)
				}
			})
		})
	}
}

func logged(t *testing.T, h hosttest.Host, s string) bool {
	t.Helper()
	logs, err := h.Logs()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		if strings.Contains(l.Message, s) {
			return true
		}
	}
	t.Logf("%s logs: %v", h.Engine(), logs)
	return false
}

// testSharedDataCAS: one store for every VM of the process, one CAS counter,
// Envoy's rules: a stale cas is refused and changes nothing, cas 0 sets unconditionally,
// an absent key is created whatever the cas. The driver's view is the same store.
func testSharedDataCAS(t *testing.T, h hosttest.Host) {
	if got := op(t, h, 1, "x-op", "get", "x-key", "k"); got != "status=1 value= cas=0" {
		t.Fatalf("get absent = %q; want NOT_FOUND", got)
	}
	if got := op(t, h, 0, "x-op", "set", "x-key", "k", "x-value", "v1", "x-cas", "0"); got != "status=0" {
		t.Fatalf("set v1 = %q", got)
	}
	got := op(t, h, 1, "x-op", "get", "x-key", "k")
	var cas1 uint32
	if _, err := fmt.Sscanf(got, "status=0 value=v1 cas=%d", &cas1); err != nil || cas1 == 0 {
		t.Fatalf("VM 1 get = %q; want v1 with a cas", got)
	}
	if got := op(t, h, 0, "x-op", "set", "x-key", "k", "x-value", "v2", "x-cas", fmt.Sprint(cas1)); got != "status=0" {
		t.Fatalf("VM 0 set with the current cas = %q; want OK", got)
	}
	if got := op(t, h, 1, "x-op", "set", "x-key", "k", "x-value", "v3", "x-cas", fmt.Sprint(cas1)); got != "status=8" {
		t.Fatalf("VM 1 set with a stale cas = %q; want CAS_MISMATCH (8)", got)
	}
	v, cas2, st, err := h.GetSharedData("k")
	if err != nil || st != harness.StatusOK || string(v) != "v2" || cas2 <= cas1 {
		t.Fatalf("driver get = %q cas %d status %d err %v; want v2 with a newer cas than %d", v, cas2, st, err, cas1)
	}
	if got := op(t, h, 1, "x-op", "set", "x-key", "fresh", "x-value", "x", "x-cas", "12345"); got != "status=0" {
		t.Fatalf("set of an absent key with any cas = %q; want OK", got)
	}
	if st, err := h.SetSharedData("k", []byte("v4"), 0); err != nil || st != harness.StatusOK {
		t.Fatalf("driver set with cas 0 = %d, %v", st, err)
	}
	if got := op(t, h, 0, "x-op", "get", "x-key", "k"); !strings.HasPrefix(got, "status=0 value=v4 ") {
		t.Fatalf("VM 0 get after the driver's set = %q", got)
	}
}

// TestTicksAndCallouts: real tick timers per VM, and callouts sent over real HTTP to an
// httptest server, each reply delivered to proxy_on_http_call_response of the VM that sent
// it; a refused connection arrives as a reset (0 headers, empty body).
func TestTicksAndCallouts(t *testing.T) {
	forEngines(t, func(t *testing.T, e hosttest.Engine) {
		var hits atomic.Int64
		var sawHost, sawHeader atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			sawHost.Store(r.Host)
			sawHeader.Store(r.Header.Get("x-k"))
			w.Header().Set("x-feed", "1")
			fmt.Fprint(w, "hello body")
		}))
		defer srv.Close()
		h := start(t, e, baseConfig().WithTimers(true).WithPluginConfig([]byte("tick=20")).
			WithCluster("svc", srv.Listener.Addr().String()))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for {
			n, _, err := h.Metric(harness.MetricCounter, "responses")
			if err != nil {
				t.Fatal(err)
			}
			if n >= 6 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%d callout replies delivered in 20s; want 6 (server hits %d)", n, hits.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		vms, err := h.VMs()
		if err != nil || vms[0].TickPeriod != 20*time.Millisecond || vms[1].TickPeriod != 20*time.Millisecond {
			t.Fatalf("tick periods %v, %v; want 20ms on both VMs", vms, err)
		}
		if st, _, _ := h.Metric(harness.MetricGauge, "resp_status"); st != 200 {
			t.Errorf("resp_status = %d; want 200", st)
		}
		if b, _, _ := h.Metric(harness.MetricGauge, "resp_body"); b != int64(len("hello body")) {
			t.Errorf("resp_body = %d; want %d", b, len("hello body"))
		}
		if sawHost.Load() != "feed.local" || sawHeader.Load() != "v" {
			t.Errorf("server saw host %v x-k %v; want feed.local and v", sawHost.Load(), sawHeader.Load())
		}
		calls, err := h.HTTPCalls()
		if err != nil {
			t.Fatal(err)
		}
		perVM := map[int]int{}
		for _, c := range calls {
			if c.Delivered && c.ResponseStatus == 200 {
				perVM[c.VM]++
			}
		}
		if perVM[0] == 0 || perVM[1] == 0 {
			t.Errorf("delivered callouts per VM %v; want both VMs ticking and calling", perVM)
		}
	})
}

func testCalloutReset(t *testing.T, h hosttest.Host) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.TickVM(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := h.Metric(harness.MetricCounter, "responses"); n != 1 {
		t.Fatalf("responses = %d; want 1 (the reset is delivered)", n)
	}
	hs, _, _ := h.Metric(harness.MetricGauge, "resp_headers")
	body, _, _ := h.Metric(harness.MetricGauge, "resp_body")
	if hs != 0 || body != 0 {
		t.Fatalf("reset delivered with %d headers and %d body bytes; want 0 and 0", hs, body)
	}
	calls, err := h.HTTPCalls()
	if err != nil || len(calls) != 1 || calls[0].VM != 1 || !calls[0].Delivered || calls[0].Err == nil {
		t.Fatalf("calls %v, %v; want one delivered failure on VM 1", calls, err)
	}
}

// testRequestBodyBuffered: while proxy_on_request_body answers Pause, the host buffers, so
// at the end of the stream the module reads every chunk as one body of the total size.
func testRequestBodyBuffered(t *testing.T, h hosttest.Host) {
	res, err := h.Do(context.Background(), harness.Request{Method: "POST",
		BodyChunks: [][]byte{[]byte(`{"to`), []byte(`ken":`), []byte(`"abc"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LocalResponse == nil || string(res.LocalResponse.Body) != `status=0 size=15 value={"token":"abc"}` {
		t.Fatalf("reply %v %q; want the whole body of 15 bytes", res, res.LocalResponse.Body)
	}
}

// testPropertiesAndConfig: configured properties, the plugin's own, and the plugin
// configuration readable in proxy_on_configure.
func testPropertiesAndConfig(t *testing.T, h hosttest.Host) {
	for _, c := range []struct{ path, want string }{
		{"plugin_name", "status=0 value=guest-plugin"},
		{"node\x00id", "status=0 value=node-7"},
		{"node\x00cluster", "status=1 value="},
	} {
		if got := op(t, h, 0, "x-op", "prop", "x-path", c.path); got != c.want {
			t.Errorf("property %q = %q; want %q", c.path, got, c.want)
		}
	}
	if got := op(t, h, 1, "x-op", "config"); got != "value=hello config" {
		t.Errorf("configuration = %q", got)
	}
}

// TestGuestABI runs the guest's ABI checks in one host per engine (a V8 host takes seconds
// to start: V8 compiles the guest with TurboFan, lazily, as cpp-host configures it).
func TestGuestABI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String() // nothing listens there: connections are refused
	ln.Close()
	forEngines(t, func(t *testing.T, e hosttest.Engine) {
		h := start(t, e, baseConfig().WithCluster("svc", dead).WithPluginName("guest-plugin").
			WithPluginConfig([]byte("hello config")).WithProperty("node\x00id", []byte("node-7")))
		t.Run("shared data CAS across VMs", func(t *testing.T) { testSharedDataCAS(t, h) })
		t.Run("callout reset", func(t *testing.T) { testCalloutReset(t, h) })
		t.Run("request body buffered", func(t *testing.T) { testRequestBodyBuffered(t, h) })
		t.Run("properties and config", func(t *testing.T) { testPropertiesAndConfig(t, h) })
		if v, ok := h.(interface{ Info() v8host.Info }); ok {
			// node runs with the V8 flags proxy-wasm-cpp-host sets.
			info := v.Info()
			if want := v8host.V8Flags(16384); strings.Join(info.Flags, " ") != strings.Join(want, " ") || info.V8 == "" {
				t.Errorf("node %s V8 %s flags %v; want %v", info.Node, info.V8, info.Flags, want)
			}
		} else if e == hosttest.V8 {
			t.Error("the V8 host does not report its engine")
		}
	})
}
