// Command guest is a small proxy-wasm guest for the host tests: every ABI call a test needs
// is reachable from a request header, and its answers come back in a local reply, so one
// test table drives it through both hosts. It is not an SDK.
//
// The environment variable GUEST_FAULT (read during _initialize, which may read the
// environment) plants a call that proxy-wasm-cpp-host forbids or allows:
//
//	init-call    proxy_set_tick_period_milliseconds during _initialize (forbidden)
//	init-log     proxy_log during _initialize (allowed)
//	malloc-call  proxy_set_tick_period_milliseconds inside proxy_on_memory_allocate (forbidden)
//	malloc-log   proxy_log inside proxy_on_memory_allocate (allowed)
//	malloc-poll  poll_oneoff inside proxy_on_memory_allocate (allowed since cpp-host 94091cd only)
//
// The malloc faults fire on requests carrying x-arm, so the VM starts first.
package main

import (
	"encoding/binary"
	"strconv"
	"syscall"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriod(ms uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(t, start, max uint32, ptr, size unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(t uint32, key unsafe.Pointer, keySize uint32, ptr, size unsafe.Pointer) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32, headers unsafe.Pointer, headersSize uint32, grpc int32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keySize uint32, ptr, size, cas unsafe.Pointer) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, val unsafe.Pointer, valSize uint32, cas uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, ptr, size unsafe.Pointer) uint32

//go:wasmimport env proxy_http_call
func proxyHTTPCall(up unsafe.Pointer, upSize uint32, hdrs unsafe.Pointer, hdrsSize uint32, body unsafe.Pointer, bodySize uint32, tr unsafe.Pointer, trSize uint32, timeout uint32, token unsafe.Pointer) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(t uint32, name unsafe.Pointer, size uint32, id unsafe.Pointer) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, v uint64) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, v int64) uint32

//go:wasmimport wasi_snapshot_preview1 poll_oneoff
func pollOneoff(in, out unsafe.Pointer, n uint32, nevents unsafe.Pointer) uint32

var (
	fault, _ = syscall.Getenv("GUEST_FAULT")
	armed    bool
	keep     [][]byte // memory handed to the host stays reachable
	config   string
)

func init() {
	switch fault {
	case "init-call":
		proxySetTickPeriod(1000)
	case "init-log":
		logInfo("guest: log during _initialize")
	}
}

func ptr(s string) unsafe.Pointer {
	if s == "" {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func logInfo(s string) { proxyLog(2, ptr(s), uint32(len(s))) }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(n uint32) unsafe.Pointer {
	if armed {
		switch fault {
		case "malloc-call":
			proxySetTickPeriod(1000)
		case "malloc-log":
			logInfo("guest: log inside the allocator")
		case "malloc-poll":
			var nev uint32
			pollOneoff(nil, nil, 0, unsafe.Pointer(&nev))
		}
	}
	b := make([]byte, n)
	keep = append(keep, b)
	return unsafe.Pointer(&b[0])
}

// take returns the bytes the host copied out and lets the allocation go.
func take(p unsafe.Pointer, n uint32) string {
	if n == 0 {
		return ""
	}
	s := string(unsafe.Slice((*byte)(p), n))
	keep = keep[:0]
	return s
}

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_vm_start
func onVMStart(root, size uint32) uint32 { return 1 }

// onConfigure reads the plugin configuration: "tick=<ms>" sets the tick period.
//
//go:wasmexport proxy_on_configure
func onConfigure(root, size uint32) uint32 {
	var p unsafe.Pointer
	var n uint32
	if proxyGetBufferBytes(7, 0, size, unsafe.Pointer(&p), unsafe.Pointer(&n)) == 0 {
		config = take(p, n)
	}
	if len(config) > 5 && config[:5] == "tick=" {
		ms, _ := strconv.Atoi(config[5:])
		proxySetTickPeriod(uint32(ms))
	}
	return 1
}

var metricIDs = map[string]uint32{}

func metric(t uint32, name string) uint32 {
	if id, ok := metricIDs[name]; ok {
		return id
	}
	var id uint32
	proxyDefineMetric(t, ptr(name), uint32(len(name)), unsafe.Pointer(&id))
	metricIDs[name] = id
	return id
}

// onTick counts ticks and sends a callout to cluster "svc".
//
//go:wasmexport proxy_on_tick
func onTick(root uint32) {
	proxyIncrementMetric(metric(0, "ticks"), 1)
	hdrs := encodePairs([][2]string{{":method", "GET"}, {":path", "/feed"}, {":authority", "feed.local"}, {"x-k", "v"}})
	var token uint32
	cluster := "svc"
	st := proxyHTTPCall(ptr(cluster), uint32(len(cluster)), unsafe.Pointer(&hdrs[0]), uint32(len(hdrs)), nil, 0, nil, 0, 200, unsafe.Pointer(&token))
	proxyRecordMetric(metric(1, "call_status"), uint64(st))
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(root, token, nHeaders, bodySize, nTrailers uint32) {
	proxyIncrementMetric(metric(0, "responses"), 1)
	proxyRecordMetric(metric(1, "resp_headers"), uint64(nHeaders))
	proxyRecordMetric(metric(1, "resp_body"), uint64(bodySize))
	status := header(6, ":status")
	n, _ := strconv.Atoi(status)
	proxyRecordMetric(metric(1, "resp_status"), uint64(n))
}

func header(t uint32, key string) string {
	var p unsafe.Pointer
	var n uint32
	if proxyGetHeaderMapValue(t, ptr(key), uint32(len(key)), unsafe.Pointer(&p), unsafe.Pointer(&n)) != 0 {
		return ""
	}
	return take(p, n)
}

func reply(status uint32, body string) {
	proxySendLocalResponse(status, nil, 0, ptr(body), uint32(len(body)), nil, 0, -1)
}

// onRequestHeaders runs the operation the headers name and answers with a local reply
// whose body is "status=<abi status> value=<value> cas=<cas>".
//
//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	if fault != "" && header(0, "x-arm") != "" {
		armed = true
		defer func() { armed = false }()
		_ = header(0, ":path") // the host allocates through the armed allocator
		reply(200, "survived")
		return 1
	}
	switch op := header(0, "x-op"); op {
	case "get":
		key := header(0, "x-key")
		var p unsafe.Pointer
		var size, cas uint32
		st := proxyGetSharedData(ptr(key), uint32(len(key)), unsafe.Pointer(&p), unsafe.Pointer(&size), unsafe.Pointer(&cas))
		reply(200, "status="+itoa(st)+" value="+take(p, size)+" cas="+itoa(cas))
		return 1
	case "set":
		key, val := header(0, "x-key"), header(0, "x-value")
		cas, _ := strconv.ParseUint(header(0, "x-cas"), 10, 32)
		st := proxySetSharedData(ptr(key), uint32(len(key)), ptr(val), uint32(len(val)), uint32(cas))
		reply(200, "status="+itoa(st))
		return 1
	case "prop":
		path := header(0, "x-path")
		var p unsafe.Pointer
		var size uint32
		st := proxyGetProperty(ptr(path), uint32(len(path)), unsafe.Pointer(&p), unsafe.Pointer(&size))
		reply(200, "status="+itoa(st)+" value="+take(p, size))
		return 1
	case "config":
		reply(200, "value="+config)
		return 1
	}
	return 0
}

// onRequestBody buffers (Pause) until the end of the stream, then answers with the whole
// body as the host holds it.
//
//go:wasmexport proxy_on_request_body
func onRequestBody(id, size, eos uint32) uint32 {
	if eos == 0 {
		return 1
	}
	var p unsafe.Pointer
	var n uint32
	st := proxyGetBufferBytes(0, 0, size, unsafe.Pointer(&p), unsafe.Pointer(&n))
	reply(200, "status="+itoa(st)+" size="+itoa(size)+" value="+take(p, n))
	return 1
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func encodePairs(p [][2]string) []byte {
	size := 4
	for _, kv := range p {
		size += 8 + len(kv[0]) + len(kv[1]) + 2
	}
	b := make([]byte, 4, size)
	binary.LittleEndian.PutUint32(b, uint32(len(p)))
	for _, kv := range p {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[0])))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(kv[1])))
	}
	for _, kv := range p {
		b = append(append(append(append(b, kv[0]...), 0), kv[1]...), 0)
	}
	return b
}
