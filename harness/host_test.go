package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

var testCache = wazero.NewCompilationCache()

func testConfig() Config {
	return NewConfig().WithCompilationCache(testCache).WithTimers(false)
}

func newHarness(t *testing.T, m *wModule, cfg Config) *Harness {
	t.Helper()
	ctx := context.Background()
	h, err := New(ctx, m.bytes(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = h.Close(ctx) })
	return h
}

func TestModuleSurfaceCheck(t *testing.T) {
	pathLinkSpec := wImport{module: wasiModule, name: "path_link", params: ts(7), results: tI32}
	tests := []struct {
		name     string
		mod      wModule
		gen      WASIGeneration
		wantErr  error  // nil = starts
		wantText string // in the error message
	}{
		{name: "minimal 1.33", mod: wModule{funcs: proxyFuncs(nil)}, gen: WASIEnvoy133},
		{name: "go runtime imports 1.33", gen: WASIEnvoy133, mod: wModule{
			imports: []wImport{wasiImport("sched_yield"), wasiImport("poll_oneoff"), wasiImport("fd_fdstat_set_flags"), envImport("proxy_log")},
			funcs:   proxyFuncs(nil)}},
		{name: "wasi_unstable too", gen: WASIEnvoy133, mod: wModule{
			imports: []wImport{{module: wasiUnstableModule, name: "fd_write", params: ts(4), results: tI32}},
			funcs:   proxyFuncs(nil)}},
		{name: "fd_advise absent in 1.33", gen: WASIEnvoy133, mod: wModule{
			imports: []wImport{wasiImport("fd_advise")}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "wasi_snapshot_preview1.fd_advise"},
		{name: "fd_advise present in current", gen: WASICurrent, mod: wModule{
			imports: []wImport{wasiImport("fd_advise")}, funcs: proxyFuncs(nil)}},
		{name: "sock_open nowhere", gen: WASICurrent, mod: wModule{
			imports: []wImport{{module: wasiModule, name: "sock_open", params: ts(3), results: tI32}}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "wasi_snapshot_preview1.sock_open"},
		{name: "unknown proxy import", gen: WASICurrent, mod: wModule{
			imports: []wImport{{module: "env", name: "proxy_get_configuration", params: ts(2), results: tI32}}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "env.proxy_get_configuration"},
		{name: "wrong proxy_log signature", gen: WASICurrent, mod: wModule{
			imports: []wImport{{module: "env", name: "proxy_log", params: ts(2), results: tI32}}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "env.proxy_log has signature (i32,i32)->(i32)"},
		{name: "spec path_link signature", gen: WASICurrent, mod: wModule{
			imports: []wImport{pathLinkSpec}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "path_link"},
		{name: "memory import", gen: WASICurrent, mod: wModule{
			imports: []wImport{{module: "env", name: "memory", memory: true}}, funcs: proxyFuncs(nil), noMem: true},
			wantErr: ErrImportNotProvided, wantText: "memory env.memory"},
		{name: "other module", gen: WASICurrent, mod: wModule{
			imports: []wImport{{module: "gojs", name: "x", params: nil, results: nil}}, funcs: proxyFuncs(nil)},
			wantErr: ErrImportNotProvided, wantText: "gojs.x"},
		{name: "no abi version", gen: WASICurrent, mod: wModule{funcs: proxyFuncs(map[string][]byte{"proxy_abi_version_0_2_1": nil})},
			wantErr: ErrABIVersion, wantText: "proxy_abi_version_0_2_1 not found"},
		{name: "old abi version", gen: WASICurrent, mod: wModule{funcs: append(
			proxyFuncs(map[string][]byte{"proxy_abi_version_0_2_1": nil}), wFunc{export: "proxy_abi_version_0_1_0"})},
			wantErr: ErrABIVersion, wantText: "proxy_abi_version_0_1_0"},
		{name: "no allocator", gen: WASICurrent, mod: wModule{funcs: proxyFuncs(map[string][]byte{"proxy_on_memory_allocate": nil})},
			wantErr: ErrMissingExport, wantText: "proxy_on_memory_allocate"},
		{name: "no context create", gen: WASICurrent, mod: wModule{funcs: proxyFuncs(map[string][]byte{"proxy_on_context_create": nil})},
			wantErr: ErrMissingExport, wantText: "proxy_on_context_create"},
		{name: "no memory export", gen: WASICurrent, mod: wModule{funcs: proxyFuncs(nil), noMem: true},
			wantErr: ErrMissingExport, wantText: `memory "memory"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h, err := New(ctx, tc.mod.bytes(), testConfig().WithWASI(tc.gen).WithWorkers(1))
			if h != nil {
				defer h.Close(ctx)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("New = %v; want success", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrStartFailed) {
				t.Fatalf("New = %v; want %v wrapped in ErrStartFailed", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("New error %q does not mention %q", err, tc.wantText)
			}
		})
	}
}

func TestStartSequence(t *testing.T) {
	ret0 := i32c(0)
	tests := []struct {
		name     string
		override map[string][]byte
		imports  []wImport
		gen      WASIGeneration
		wantErr  error
		wantText string
	}{
		{name: "vm start false", override: map[string][]byte{"proxy_on_vm_start": ret0},
			wantErr: ErrStartFailed, wantText: "proxy_on_vm_start: returned false"},
		{name: "configure false", override: map[string][]byte{"proxy_on_configure": ret0},
			wantErr: ErrStartFailed, wantText: "proxy_on_configure: returned false"},
		{name: "initialize traps", override: map[string][]byte{"_initialize": {opUnreachable}},
			wantErr: ErrStartFailed, wantText: "_initialize"},
		{name: "poll_oneoff in _initialize is restricted in 1.33", gen: WASIEnvoy133,
			imports:  []wImport{wasiImport("poll_oneoff")},
			override: map[string][]byte{"_initialize": cat(i32c(0), i32c(0), i32c(0), i32c(64), call(0), []byte{opDrop})},
			wantErr:  ErrRestrictedCallback, wantText: "poll_oneoff called during _initialize"},
		{name: "poll_oneoff in _initialize allowed in current", gen: WASICurrent,
			imports:  []wImport{wasiImport("poll_oneoff")},
			override: map[string][]byte{"_initialize": cat(i32c(0), i32c(0), i32c(0), i32c(64), call(0), []byte{opDrop})}},
		{name: "proxy call in _initialize is restricted", gen: WASICurrent,
			imports:  []wImport{envImport("proxy_set_tick_period_milliseconds")},
			override: map[string][]byte{"_initialize": cat(i32c(10), call(0), []byte{opDrop})},
			wantErr:  ErrRestrictedCallback, wantText: "proxy_set_tick_period_milliseconds"},
		{name: "sched_yield in _initialize is restricted even now", gen: WASICurrent,
			imports:  []wImport{wasiImport("sched_yield")},
			override: map[string][]byte{"_initialize": cat(call(0), []byte{opDrop})},
			wantErr:  ErrRestrictedCallback, wantText: "sched_yield"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m := wModule{imports: tc.imports, funcs: proxyFuncs(tc.override)}
			h, err := New(ctx, m.bytes(), testConfig().WithWASI(tc.gen))
			if h != nil {
				defer h.Close(ctx)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("New = %v; want success", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()) {
				t.Fatalf("New = %v; want %v", err, tc.wantErr)
			}
			if !errors.Is(err, ErrStartFailed) || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("New = %v; want ErrStartFailed mentioning %q", err, tc.wantText)
			}
		})
	}
}

// configModule reads buffer type bt in the callback cb and stores the
// status of proxy_get_buffer_bytes in gauge "status" and the size in "size".
func TestConfigurationBuffers(t *testing.T) {
	// Memory: 1024 "status", 1040 "size", 2000 gauge id status, 2004 gauge id
	// size, 2008 returned ptr, 2012 returned size.
	imports := []wImport{envImport("proxy_get_buffer_bytes"), envImport("proxy_define_metric"), envImport("proxy_record_metric")}
	m := &wModule{imports: imports}
	getBuf, define, record := m.funcIndex("proxy_get_buffer_bytes"), m.funcIndex("proxy_define_metric"), m.funcIndex("proxy_record_metric")
	read := func(bt int32, prefix string) []byte {
		_ = prefix
		return cat(
			// status := get_buffer_bytes(bt, 0, 1000, 2008, 2012); record(gauge status, status)
			i32load(2000), i32c(bt), i32c(0), i32c(1000), i32c(2008), i32c(2012), call(getBuf), []byte{opI64ExtendU}, call(record), []byte{opDrop},
			i32load(2004), i32load(2012), []byte{opI64ExtendU}, call(record), []byte{opDrop},
		)
	}
	defs := cat(
		i32c(int32(MetricGauge)), i32c(1024), i32c(6), i32c(2000), call(define), []byte{opDrop},
		i32c(int32(MetricGauge)), i32c(1040), i32c(4), i32c(2004), call(define), []byte{opDrop},
	)
	tests := []struct {
		name       string
		callback   string
		bt         BufferType
		wantStatus Status
		wantSize   int64
	}{
		{"vm config in vm_start", "proxy_on_vm_start", BufferVMConfiguration, StatusOK, 7},
		{"plugin config in configure", "proxy_on_configure", BufferPluginConfig, StatusOK, 12},
		{"plugin config in vm_start", "proxy_on_vm_start", BufferPluginConfig, StatusNotFound, 0},
		{"vm config in configure", "proxy_on_configure", BufferVMConfiguration, StatusNotFound, 0},
		{"plugin config in tick", "proxy_on_tick", BufferPluginConfig, StatusNotFound, 0},
		{"callout body outside callout", "proxy_on_configure", BufferHTTPCallRespBody, StatusNotFound, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			over := map[string][]byte{"_initialize": {}}
			body := read(int32(tc.bt), "")
			switch tc.callback {
			case "proxy_on_vm_start":
				over["proxy_on_vm_start"] = cat(defs, body, i32c(1))
			case "proxy_on_configure":
				over["proxy_on_configure"] = cat(defs, body, i32c(1))
			case "proxy_on_tick":
				over["proxy_on_vm_start"] = cat(defs, i32c(1))
				over["proxy_on_tick"] = body
			}
			mod := &wModule{imports: imports, funcs: proxyFuncs(over),
				data: []wData{{1024, []byte("status")}, {1040, []byte("size")}, {2012, []byte{0xff, 0xff, 0xff, 0xff}}}}
			h := newHarness(t, mod, testConfig().WithWorkers(1).
				WithVMConfig([]byte("vm-conf")).WithPluginConfig([]byte(`{"plugin":1}`)))
			if tc.callback == "proxy_on_tick" {
				if err := h.VM(0).Tick(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if st, _ := h.Metrics().Gauge("status"); Status(st) != tc.wantStatus {
				t.Errorf("get_buffer_bytes(%d) in %s = %d; want %d", tc.bt, tc.callback, st, tc.wantStatus)
			}
			if tc.wantStatus == StatusOK {
				if sz, _ := h.Metrics().Gauge("size"); sz != tc.wantSize {
					t.Errorf("size = %d; want %d", sz, tc.wantSize)
				}
			}
		})
	}
}

// trapModule: proxy_on_request_headers traps when it gets more than 6
// headers (RequestHeadersFor gives 6 by default) and otherwise continues.
func trapModule() *wModule {
	return &wModule{funcs: proxyFuncs(map[string][]byte{
		"proxy_on_request_headers": cat(localGet(1), i32c(6), []byte{opI32GtU}, ifThen(opUnreachable), i32c(0)),
	})}
}

func TestTrapFailsVM(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		name := "fail closed"
		if failOpen {
			name = "fail open"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t, trapModule(), testConfig().WithWorkers(2).WithFailOpen(failOpen))
			ok := Request{Path: "/ok"}
			trap := Request{Path: "/trap", Headers: Pairs{{"x-extra", "1"}}}

			res, err := h.Do(ctx, ok)
			if err != nil || res.Action != ActionContinue || res.LocalResponse != nil {
				t.Fatalf("healthy Do = %v, %v; want Continue without local response", res, err)
			}
			res, err = h.Do(ctx, trap) // VM 0 traps
			if err != nil {
				t.Fatal(err)
			}
			if res.VMFailure == nil || h.VM(0).Failed() == nil {
				t.Fatalf("trap did not fail VM 0: %v", res)
			}
			checkFailed := func(res *Result) {
				t.Helper()
				if failOpen {
					if res.LocalResponse != nil || res.Action != ActionContinue {
						t.Fatalf("fail-open stream = %v; want Continue, no local response", res)
					}
					return
				}
				lr := res.LocalResponse
				if lr == nil || lr.Status != 503 || lr.Details != "wasm_fail_stream" {
					t.Fatalf("failed-VM stream local response = %+v; want 503 wasm_fail_stream", lr)
				}
			}
			checkFailed(res)
			// A later healthy request on the failed VM gets the same treatment.
			ok.VM = 0
			res, err = h.Do(ctx, ok)
			if err != nil {
				t.Fatal(err)
			}
			checkFailed(res)
			// VM 1 is unaffected.
			ok.VM = 1
			res, err = h.Do(ctx, ok)
			if err != nil || res.LocalResponse != nil || res.Action != ActionContinue || res.VMFailure != nil {
				t.Fatalf("VM 1 Do = %v, %v; want healthy Continue", res, err)
			}
			if !h.Logs().Contains(LogCritical, "wasm vm failed") {
				t.Fatalf("no critical log of the failure; logs:\n%s", h.Logs())
			}
		})
	}
}

func TestLocalResponseAndHeaders(t *testing.T) {
	imports := []wImport{envImport("proxy_send_local_response"), envImport("proxy_add_header_map_value"),
		envImport("proxy_replace_header_map_value"), envImport("proxy_remove_header_map_value"), envImport("proxy_log")}
	m := &wModule{imports: imports}
	send, add, repl, rem, logf := m.funcIndex("proxy_send_local_response"), m.funcIndex("proxy_add_header_map_value"),
		m.funcIndex("proxy_replace_header_map_value"), m.funcIndex("proxy_remove_header_map_value"), m.funcIndex("proxy_log")
	hdrs := encodePairs(Pairs{{"WWW-Authenticate", `Bearer error="invalid_token"`}})
	// More than 6 headers: reply 401; otherwise mutate headers and continue.
	onHeaders := cat(
		localGet(1), i32c(6), []byte{opI32GtU},
		ifThen(cat(
			i32c(401), i32c(1024), i32c(13), i32c(1040), i32c(7), i32c(1100), i32c(int32(len(hdrs))), i32c(-1), call(send), []byte{opDrop},
			i32c(1), []byte{0x0f}, // return Pause
		)...),
		// add x-a: 1, replace :path with /new, remove x-drop, log "hello"
		i32c(0), i32c(1050), i32c(3), i32c(1054), i32c(1), call(add), []byte{opDrop},
		i32c(0), i32c(1056), i32c(5), i32c(1062), i32c(4), call(repl), []byte{opDrop},
		i32c(0), i32c(1067), i32c(6), call(rem), []byte{opDrop},
		i32c(int32(LogWarn)), i32c(1074), i32c(5), call(logf), []byte{opDrop},
		i32c(0),
	)
	mod := &wModule{imports: imports, funcs: proxyFuncs(map[string][]byte{"proxy_on_request_headers": onHeaders}),
		data: []wData{
			{1024, []byte("jwt_revoked\x00\x00")}, {1040, []byte("revoked")},
			{1050, []byte("x-a")}, {1054, []byte("1")}, {1056, []byte(":path")}, {1062, []byte("/new")},
			{1067, []byte("x-drop")}, {1074, []byte("hello")},
			{1100, hdrs},
		}}
	h := newHarness(t, mod, testConfig().WithWorkers(1))
	ctx := context.Background()

	res, err := h.Do(ctx, Request{Path: "/p", Headers: Pairs{{"Authorization", "Bearer x"}}})
	if err != nil {
		t.Fatal(err)
	}
	lr := res.LocalResponse
	if lr == nil || lr.Status != 401 || string(lr.Body) != "revoked" || lr.Details != "jwt_revoked\x00\x00" || lr.GRPCStatus != -1 {
		t.Fatalf("local response = %+v; want 401 revoked", lr)
	}
	if v, _ := lr.Headers.Get("www-authenticate"); v != `Bearer error="invalid_token"` {
		t.Fatalf("local response headers = %q", lr.Headers)
	}
	if res.Action != ActionPause {
		t.Fatalf("Action = %v; want Pause", res.Action)
	}

	res, err = h.Do(ctx, Request{Path: "/old", Headers: nil})
	if err != nil || res.LocalResponse != nil {
		t.Fatalf("Do = %v, %v; want no local response", res, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := res.RequestHeaders
	if v, _ := got.Get(":path"); v != "/new" {
		t.Errorf(":path = %q; want /new", v)
	}
	if v, _ := got.Get("x-a"); v != "1" {
		t.Errorf("x-a = %q; want 1", v)
	}
	if !h.Logs().Contains(LogWarn, "hello") {
		t.Errorf("proxy_log not captured: %s", h.Logs())
	}
}

// calloutModule dispatches a callout from proxy_on_tick to cluster "svc"
// (or "nope") and records, in gauges, the proxy_http_call status and what
// proxy_on_http_call_response received.
func calloutModule(cluster string, timeoutMS int32) *wModule {
	imports := []wImport{envImport("proxy_http_call"), envImport("proxy_define_metric"), envImport("proxy_record_metric"),
		envImport("proxy_increment_metric")}
	m := &wModule{imports: imports}
	hc, define, record, incr := m.funcIndex("proxy_http_call"), m.funcIndex("proxy_define_metric"),
		m.funcIndex("proxy_record_metric"), m.funcIndex("proxy_increment_metric")
	hdrs := encodePairs(Pairs{{":method", "GET"}, {":path", "/feed?x=1"}, {":authority", "feed.local"}, {"x-k", "v"}})
	names := []string{"call_status", "resp_headers", "resp_body", "responses"}
	var data []wData
	var defs []byte
	for i, n := range names {
		off := int32(1200 + 32*i)
		data = append(data, wData{uint32(off), []byte(n)})
		typ := MetricGauge
		if n == "responses" {
			typ = MetricCounter
		}
		defs = cat(defs, i32c(int32(typ)), i32c(off), i32c(int32(len(n))), i32c(int32(2000+4*i)), call(define), []byte{opDrop})
	}
	data = append(data, wData{1024, []byte(cluster)}, wData{1100, hdrs})
	onTick := cat(
		i32load(2000),
		i32c(1024), i32c(int32(len(cluster))), i32c(1100), i32c(int32(len(hdrs))), i32c(0), i32c(0), i32c(0), i32c(0), i32c(timeoutMS), i32c(2100),
		call(hc), []byte{opI64ExtendU}, call(record), []byte{opDrop},
	)
	onResp := cat(
		i32load(2004), localGet(2), []byte{opI64ExtendU}, call(record), []byte{opDrop},
		i32load(2008), localGet(3), []byte{opI64ExtendU}, call(record), []byte{opDrop},
		i32load(2012), i64c(1), call(incr), []byte{opDrop},
	)
	m.funcs = proxyFuncs(map[string][]byte{
		"proxy_on_vm_start":           cat(defs, i32c(1)),
		"proxy_on_tick":               onTick,
		"proxy_on_http_call_response": onResp,
	})
	m.data = data
	return m
}

func TestHTTPCallDeliveredOnCallingVM(t *testing.T) {
	var gotHost, gotPath, gotHeader atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.RequestURI())
		gotHeader.Store(r.Header.Get("x-k"))
		w.Header().Set("X-Feed", "1")
		io.WriteString(w, "hello body")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	h := newHarness(t, calloutModule("svc", 0), testConfig().WithWorkers(2).WithCluster("svc", srv.Listener.Addr().String()))
	if err := h.VM(1).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.Metrics().Gauge("call_status"); Status(st) != StatusOK {
		t.Fatalf("proxy_http_call status = %d; want OK", st)
	}
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
	calls := h.HTTPCalls()
	if len(calls) != 1 {
		t.Fatalf("HTTPCalls = %v; want 1", calls)
	}
	c := calls[0]
	if c.VM != 1 || !c.Delivered || c.ResponseStatus != 200 || c.Token == 0 {
		t.Fatalf("call = %v; want delivered 200 on VM 1", c)
	}
	if gotHost.Load() != "feed.local" || gotPath.Load() != "/feed?x=1" || gotHeader.Load() != "v" {
		t.Fatalf("server saw host=%v path=%v x-k=%v", gotHost.Load(), gotPath.Load(), gotHeader.Load())
	}
	if n, _ := h.Metrics().Counter("responses"); n != 1 {
		t.Fatalf("responses = %d; want 1", n)
	}
	// :status, x-feed, content-length, content-type, date.
	if nh, _ := h.Metrics().Gauge("resp_headers"); nh < 2 {
		t.Fatalf("response header count = %d; want >= 2 (:status and x-feed at least)", nh)
	}
	if nb, _ := h.Metrics().Gauge("resp_body"); nb != int64(len("hello body")) {
		t.Fatalf("response body size = %d; want %d", nb, len("hello body"))
	}
}

func TestHTTPCallFailures(t *testing.T) {
	// A port with nothing listening: bind then close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()

	tests := []struct {
		name        string
		cluster     string
		addr        string
		timeoutMS   int32
		mode        CalloutFailure
		wantCall    Status
		wantHeaders int64
		wantBodyMin int64
	}{
		{name: "unknown cluster", cluster: "nope", addr: "", wantCall: StatusBadArgument},
		{name: "refused, reset mode", cluster: "svc", addr: dead, wantCall: StatusOK, wantHeaders: 0},
		{name: "timeout, reset mode", cluster: "svc", addr: slow.Listener.Addr().String(), timeoutMS: 50, wantCall: StatusOK, wantHeaders: 0},
		{name: "refused, router reply", cluster: "svc", addr: dead, mode: CalloutFailureRouterReply, wantCall: StatusOK, wantHeaders: 3, wantBodyMin: 10},
		{name: "timeout, router reply", cluster: "svc", addr: slow.Listener.Addr().String(), timeoutMS: 50, mode: CalloutFailureRouterReply, wantCall: StatusOK, wantHeaders: 3, wantBodyMin: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cfg := testConfig().WithWorkers(1).WithCalloutFailure(tc.mode)
			if tc.addr != "" {
				cfg = cfg.WithCluster("svc", tc.addr)
			}
			h := newHarness(t, calloutModule(tc.cluster, tc.timeoutMS), cfg)
			if err := h.VM(0).Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if st, _ := h.Metrics().Gauge("call_status"); Status(st) != tc.wantCall {
				t.Fatalf("proxy_http_call = %d; want %d", st, tc.wantCall)
			}
			if err := h.WaitHTTPCalls(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.wantCall != StatusOK {
				if n := len(h.HTTPCalls()); n != 0 {
					t.Fatalf("%d calls recorded for a refused dispatch", n)
				}
				return
			}
			if n, _ := h.Metrics().Counter("responses"); n != 1 {
				t.Fatalf("responses = %d; want 1 (failures are delivered too)", n)
			}
			if nh, _ := h.Metrics().Gauge("resp_headers"); nh != tc.wantHeaders {
				t.Fatalf("headers delivered = %d; want %d", nh, tc.wantHeaders)
			}
			if nb, _ := h.Metrics().Gauge("resp_body"); nb < tc.wantBodyMin || (tc.wantBodyMin == 0 && nb != 0) {
				t.Fatalf("body delivered = %d bytes; want >= %d", nb, tc.wantBodyMin)
			}
			if c := h.HTTPCalls()[0]; c.Err == nil || c.ResponseStatus != 0 {
				t.Fatalf("record = %v; want transport error, no status", c)
			}
		})
	}
}

func TestTickTimersAndSharedMetrics(t *testing.T) {
	imports := []wImport{envImport("proxy_set_tick_period_milliseconds"), envImport("proxy_define_metric"), envImport("proxy_increment_metric")}
	m := &wModule{imports: imports}
	setTick, define, incr := m.funcIndex("proxy_set_tick_period_milliseconds"), m.funcIndex("proxy_define_metric"), m.funcIndex("proxy_increment_metric")
	m.funcs = proxyFuncs(map[string][]byte{
		"proxy_on_vm_start": cat(
			i32c(int32(MetricCounter)), i32c(1024), i32c(5), i32c(2000), call(define), []byte{opDrop},
			i32c(int32(MetricCounter)), i32c(1040), i32c(6), i32c(2004), call(define), []byte{opDrop},
			i32load(2004), i64c(1), call(incr), []byte{opDrop},
			i32c(5), call(setTick), []byte{opDrop},
			i32c(1)),
		"proxy_on_tick": cat(i32load(2000), i64c(1), call(incr), []byte{opDrop}),
	})
	m.data = []wData{{1024, []byte("ticks")}, {1040, []byte("starts")}}

	t.Run("manual", func(t *testing.T) {
		h := newHarness(t, m, testConfig().WithWorkers(3))
		if n, _ := h.Metrics().Counter("starts"); n != 3 {
			t.Fatalf("starts = %d; want 3 (one registry for all VMs)", n)
		}
		if p := h.VM(2).TickPeriod(); p != 5*time.Millisecond {
			t.Fatalf("TickPeriod = %v; want 5ms", p)
		}
		time.Sleep(30 * time.Millisecond)
		if n, _ := h.Metrics().Counter("ticks"); n != 0 {
			t.Fatalf("ticks = %d with timers off; want 0", n)
		}
		if got := h.Tick(context.Background()); got != 3 {
			t.Fatalf("Tick() ticked %d VMs; want 3", got)
		}
		if n, _ := h.Metrics().Counter("ticks"); n != 3 {
			t.Fatalf("ticks = %d; want 3", n)
		}
	})
	t.Run("real timers", func(t *testing.T) {
		h := newHarness(t, m, testConfig().WithWorkers(2).WithTimers(true))
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, _ := h.Metrics().Counter("ticks")
			if n >= 10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ticks = %d after 5s with a 5ms period; want >= 10", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := h.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		n1, _ := h.Metrics().Counter("ticks")
		time.Sleep(30 * time.Millisecond)
		if n2, _ := h.Metrics().Counter("ticks"); n2 != n1 {
			t.Fatalf("ticks went on after Close: %d -> %d", n1, n2)
		}
	})
}

func TestWASIBehaviour(t *testing.T) {
	// _initialize writes "hi\n" to stdout and "oops" to stderr; on_vm_start
	// records environ_sizes_get's count and poll_oneoff's errno.
	imports := []wImport{wasiImport("fd_write"), wasiImport("environ_sizes_get"), wasiImport("poll_oneoff"),
		envImport("proxy_define_metric"), envImport("proxy_record_metric")}
	m := &wModule{imports: imports}
	fdw, envs, poll, define, record := m.funcIndex("fd_write"), m.funcIndex("environ_sizes_get"), m.funcIndex("poll_oneoff"),
		m.funcIndex("proxy_define_metric"), m.funcIndex("proxy_record_metric")
	iov := func(ptr, n uint32) []byte {
		return []byte{byte(ptr), byte(ptr >> 8), 0, 0, byte(n), 0, 0, 0}
	}
	m.funcs = proxyFuncs(map[string][]byte{
		"_initialize": cat(
			i32c(1), i32c(1500), i32c(1), i32c(1600), call(fdw), []byte{opDrop},
			i32c(2), i32c(1508), i32c(1), i32c(1600), call(fdw), []byte{opDrop},
		),
		"proxy_on_vm_start": cat(
			i32c(int32(MetricGauge)), i32c(1024), i32c(4), i32c(2000), call(define), []byte{opDrop},
			i32c(int32(MetricGauge)), i32c(1040), i32c(4), i32c(2004), call(define), []byte{opDrop},
			i32c(1700), i32c(1704), call(envs), []byte{opDrop},
			i32load(2000), i32load(1700), []byte{opI64ExtendU}, call(record), []byte{opDrop},
			i32load(2004), i32c(1800), i32c(1900), i32c(1), i32c(1708), call(poll), []byte{opI64ExtendU}, call(record), []byte{opDrop},
			i32c(1)),
	})
	m.data = []wData{{1024, []byte("envc")}, {1040, []byte("poll")}, {1400, []byte("hi\n")}, {1410, []byte("oops")},
		{1500, iov(1400, 3)}, {1508, iov(1410, 4)}}
	tests := []struct {
		gen      WASIGeneration
		wantPoll int64
	}{
		{WASIEnvoy133, errnoNosys},
		{WASICurrent, errnoSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.gen.String(), func(t *testing.T) {
			h := newHarness(t, m, testConfig().WithWorkers(1).WithWASI(tc.gen).WithEnv(map[string]string{"GOGC": "50", "A": "b"}))
			if got := h.Logs().AtLevel(LogInfo); len(got) != 1 || got[0] != "hi" {
				t.Errorf("stdout lines = %q; want [hi] (trailing newline trimmed)", got)
			}
			if got := h.Logs().AtLevel(LogError); len(got) != 1 || got[0] != "oops" {
				t.Errorf("stderr lines = %q; want [oops]", got)
			}
			if n, _ := h.Metrics().Gauge("envc"); n != 2 {
				t.Errorf("environ count = %d; want 2", n)
			}
			if p, _ := h.Metrics().Gauge("poll"); p != tc.wantPoll {
				t.Errorf("poll_oneoff errno = %d; want %d", p, tc.wantPoll)
			}
		})
	}
}

// Sanity: every WASI name of each generation has an implementation and an
// Envoy signature, and 1.33 is a subset of current.
func TestWASITables(t *testing.T) {
	for _, g := range []WASIGeneration{WASIEnvoy133, WASICurrent} {
		impl := wasiFunctions(g)
		for _, n := range wasiNames(g) {
			if impl[n] == nil {
				t.Errorf("%v: %s has no implementation", g, n)
			}
			if _, ok := wasiSigs[n]; !ok {
				t.Errorf("%v: %s has no signature", g, n)
			}
		}
	}
	if n := len(wasiNames(WASIEnvoy133)); n != 18 {
		t.Errorf("envoy-1.33 surface has %d functions; want 18", n)
	}
	if n := len(wasiNames(WASICurrent)); n != 45 {
		t.Errorf("current surface has %d functions; want 45", n)
	}
	var _ api.ValueType
}

// TestDeadlinesAbortRunawayGuest: with WithDeadlines a guest spinning in a loop is aborted
// when the call's context ends, and its VM fails; the other VM goes on. (Without it, which
// is the default, the context is not checked inside the guest at all.)
func TestDeadlinesAbortRunawayGuest(t *testing.T) {
	spin := []byte{0x03, 0x40, 0x0c, 0x00, 0x0b} // loop; br 0; end
	m := &wModule{funcs: proxyFuncs(map[string][]byte{
		"proxy_on_request_headers": cat(localGet(1), i32c(6), []byte{opI32GtU}, ifThen(spin...), i32c(0)),
	})}
	h := newHarness(t, m, testConfig().WithWorkers(2).WithDeadlines(true))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := h.Do(ctx, Request{VM: 0, Headers: Pairs{{"x-spin", "1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.VMFailure == nil || h.VM(0).Failed() == nil {
		t.Fatalf("runaway request = %v; want VM 0 failed", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("abort took %v", d)
	}
	res, err = h.Do(context.Background(), Request{VM: 1})
	if err != nil || res.VMFailure != nil || res.Action != ActionContinue {
		t.Fatalf("VM 1 after VM 0's abort: %v, %v", res, err)
	}
}
