package harness

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// envFunctions returns the env.proxy_* implementations. Functions of
// envSigs missing here answer StatusUnimplemented (gRPC, shared queues,
// set_property): Envoy has them, a JWT revocation filter does not use them.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
func envFunctions() map[string]hostFunc {
	return map[string]hostFunc{
		"pthread_equal": func(_ context.Context, _ *VM, _ api.Module, stack []uint64) {
			if u32(stack[0]) == u32(stack[1]) {
				stack[0] = 1
			} else {
				stack[0] = 0
			}
		},
		"emscripten_notify_memory_growth": func(context.Context, *VM, api.Module, []uint64) {},

		"proxy_log":                          proxyLog,
		"proxy_get_log_level":                proxyGetLogLevel,
		"proxy_get_current_time_nanoseconds": proxyGetCurrentTime,
		"proxy_set_tick_period_milliseconds": proxySetTickPeriod,
		"proxy_get_buffer_bytes":             proxyGetBufferBytes,
		"proxy_get_buffer_status":            proxyGetBufferStatus,
		"proxy_set_buffer_bytes":             proxySetBufferBytes,
		"proxy_get_header_map_pairs":         proxyGetHeaderMapPairs,
		"proxy_set_header_map_pairs":         proxySetHeaderMapPairs,
		"proxy_get_header_map_size":          proxyGetHeaderMapSize,
		"proxy_get_header_map_value":         proxyGetHeaderMapValue,
		"proxy_add_header_map_value":         headerMapMutation(Pairs.add),
		"proxy_replace_header_map_value":     headerMapMutation(Pairs.replace),
		"proxy_remove_header_map_value":      proxyRemoveHeaderMapValue,
		"proxy_send_local_response":          proxySendLocalResponse,
		"proxy_http_call":                    proxyHTTPCall,
		"proxy_get_shared_data":              proxyGetSharedData,
		"proxy_set_shared_data":              proxySetSharedData,
		"proxy_define_metric":                proxyDefineMetric,
		"proxy_increment_metric":             proxyIncrementMetric,
		"proxy_record_metric":                proxyRecordMetric,
		"proxy_get_metric":                   proxyGetMetric,
		"proxy_get_property":                 proxyGetProperty,
		"proxy_continue_stream":              proxyContinueStream,
		"proxy_close_stream":                 proxyCloseStream,
		"proxy_set_effective_context":        proxySetEffectiveContext,
		"proxy_done":                         proxyDone,
		"proxy_get_status":                   proxyGetStatus,
		"proxy_call_foreign_function":        proxyCallForeignFunction,
	}
}

// proxyLog is proxy_log(level, message_data, message_size) -> status.
// The message is captured (and optionally echoed) if level is at or above
// the configured log level. BAD_ARGUMENT for a level above critical.
//
//	message_data ──► message_size bytes of UTF-8
func proxyLog(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	level := LogLevel(u32(stack[0]))
	msg, ok := readString(mod, u32(stack[1]), u32(stack[2]))
	switch {
	case !ok:
		ret(stack, StatusInvalidMemoryAccess)
	case level > LogCritical:
		ret(stack, StatusBadArgument)
	default:
		v.h.logs.add(v.index, level, msg)
		ret(stack, StatusOK)
	}
}

// proxyGetLogLevel is proxy_get_log_level(return_level) -> status; writes
// the configured level as a u32.
func proxyGetLogLevel(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	if !writeU32(mod, u32(stack[0]), uint32(v.h.cfg.logLevel)) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxyGetCurrentTime is proxy_get_current_time_nanoseconds(return_time) ->
// status; writes the wall clock as u64 nanoseconds since the epoch.
func proxyGetCurrentTime(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU64(mod, u32(stack[0]), uint64(time.Now().UnixNano())) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxySetTickPeriod is proxy_set_tick_period_milliseconds(period) ->
// status. The period applies to the VM's root context, whichever context
// calls; 0 stops ticking.
func proxySetTickPeriod(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	v.setTick(time.Duration(u32(stack[0])) * time.Millisecond)
	ret(stack, StatusOK)
}

// buffer returns the buffer of type t visible to the current callback, or
// nil (NOT_FOUND): request/response body on a stream once delivered, the
// callout body inside proxy_on_http_call_response, the VM configuration
// inside proxy_on_vm_start, the plugin configuration inside
// proxy_on_configure.
func (v *VM) buffer(t BufferType) *[]byte {
	_, s := v.current()
	switch t {
	case BufferRequestBody:
		if s != nil && s.hasReqBody {
			return &s.reqBody
		}
	case BufferResponseBody:
		if s != nil && s.hasRespBody {
			return &s.respBody
		}
	case BufferHTTPCallRespBody:
		if v.callout != nil {
			return &v.callout.body
		}
	case BufferVMConfiguration:
		if v.vmConfigReadable {
			b := v.h.cfg.vmConfig
			return &b
		}
	case BufferPluginConfig:
		if v.pluginConfigReadable {
			b := v.h.cfg.pluginConfig
			return &b
		}
	}
	return nil
}

// proxyGetBufferBytes is proxy_get_buffer_bytes(buffer_type, start,
// max_size, return_buffer_data, return_buffer_size) -> status.
// Reads at most max_size bytes from start; past the end yields (0, 0).
// NOT_FOUND if the buffer is not available in this callback.
//
//	return_buffer_data ──► [u32 addr] ──► bytes allocated by proxy_on_memory_allocate
//	return_buffer_size ──► [u32 len]
func proxyGetBufferBytes(ctx context.Context, v *VM, mod api.Module, stack []uint64) {
	t, start, length := BufferType(u32(stack[0])), u32(stack[1]), u32(stack[2])
	if t > bufferTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	b := v.buffer(t)
	if b == nil {
		ret(stack, StatusNotFound)
		return
	}
	if uint64(start)+uint64(length) > 0xffffffff {
		ret(stack, StatusBadArgument)
		return
	}
	size := uint32(len(*b))
	if start > size {
		length = 0
	} else if start+length > size {
		length = size - start
	}
	var data []byte
	if length > 0 {
		data = (*b)[start : start+length]
	}
	ret(stack, v.copyOut(ctx, mod, data, u32(stack[3]), u32(stack[4])))
}

// proxyGetBufferStatus is proxy_get_buffer_status(buffer_type,
// return_length, return_flags) -> status.
func proxyGetBufferStatus(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	t := BufferType(u32(stack[0]))
	if t > bufferTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	b := v.buffer(t)
	if b == nil {
		ret(stack, StatusNotFound)
		return
	}
	if !writeU32(mod, u32(stack[1]), uint32(len(*b))) || !writeU32(mod, u32(stack[2]), 0) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxySetBufferBytes is proxy_set_buffer_bytes(buffer_type, start, size,
// data, data_size) -> status, with Envoy's Buffer::copyFrom rules: start 0
// and size 0 prepends, start 0 and size >= length replaces, start >= length
// appends; anything else is BAD_ARGUMENT.
func proxySetBufferBytes(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	t, start, length := BufferType(u32(stack[0])), u32(stack[1]), u32(stack[2])
	if t > bufferTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	b := v.buffer(t)
	if b == nil {
		ret(stack, StatusNotFound)
		return
	}
	data, ok := read(mod, u32(stack[3]), u32(stack[4]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	size := uint32(len(*b))
	switch {
	case start == 0 && length == 0:
		*b = append(data, *b...)
	case start == 0 && length >= size:
		*b = data
	case start >= size:
		*b = append(*b, data...)
	default:
		ret(stack, StatusBadArgument)
		return
	}
	ret(stack, StatusOK)
}

// headerMap returns the map of type t visible to the current callback, or
// nil: the stream's maps once delivered, the callout's headers and trailers
// inside proxy_on_http_call_response.
func (v *VM) headerMap(t MapType) *Pairs {
	_, s := v.current()
	switch t {
	case MapRequestHeaders:
		if s != nil && s.hasReqHeaders {
			return &s.reqHeaders
		}
	case MapRequestTrailers:
		if s != nil && s.hasReqTrailers {
			return &s.reqTrailers
		}
	case MapResponseHeaders:
		if s != nil && s.hasRespHdrs {
			return &s.respHeaders
		}
	case MapResponseTrailers:
		if s != nil && s.hasRespTrail {
			return &s.respTrailers
		}
	case MapHTTPCallRespHeaders:
		if v.callout != nil {
			return &v.callout.headers
		}
	case MapHTTPCallRespTrailers:
		if v.callout != nil {
			return &v.callout.trailers
		}
	}
	return nil
}

// proxyGetHeaderMapPairs is proxy_get_header_map_pairs(map_type,
// return_map_data, return_map_size) -> status. The map is serialised in the
// wire format of encodePairs straight into guest-allocated memory, as
// cpp-host's exportPairs does; an empty map is (0, 0).
func proxyGetHeaderMapPairs(ctx context.Context, v *VM, mod api.Module, stack []uint64) {
	t := MapType(u32(stack[0]))
	if t > mapTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	m := v.headerMap(t)
	if m == nil {
		ret(stack, StatusNotFound)
		return
	}
	ret(stack, v.copyOutPairs(ctx, mod, *m, u32(stack[1]), u32(stack[2])))
}

// proxySetHeaderMapPairs is proxy_set_header_map_pairs(map_type, map_data,
// map_size) -> status: replaces the whole map. A malformed map counts as
// empty, as in Envoy.
func proxySetHeaderMapPairs(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	t := MapType(u32(stack[0]))
	if t > mapTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	m := v.headerMap(t)
	if m == nil {
		ret(stack, StatusBadArgument)
		return
	}
	data, ok := read(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	p, _ := decodePairs(data)
	*m = lowerKeys(p)
	ret(stack, StatusOK)
}

// proxyGetHeaderMapSize is proxy_get_header_map_size(map_type,
// return_size) -> status; like Envoy it reports the map's byte size (sum of
// key and value lengths), not its number of entries.
func proxyGetHeaderMapSize(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	t := MapType(u32(stack[0]))
	if t > mapTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	m := v.headerMap(t)
	if m == nil {
		ret(stack, StatusNotFound)
		return
	}
	n := 0
	for _, kv := range *m {
		n += len(kv[0]) + len(kv[1])
	}
	if !writeU32(mod, u32(stack[1]), uint32(n)) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxyGetHeaderMapValue is proxy_get_header_map_value(map_type, key_data,
// key_size, return_value_data, return_value_size) -> status. The first value
// of a repeated header; NOT_FOUND if absent or the map is unavailable.
func proxyGetHeaderMapValue(ctx context.Context, v *VM, mod api.Module, stack []uint64) {
	t := MapType(u32(stack[0]))
	if t > mapTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	key, ok := readString(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	m := v.headerMap(t)
	if m == nil {
		ret(stack, StatusNotFound)
		return
	}
	val, found := m.Get(key)
	if !found {
		ret(stack, StatusNotFound)
		return
	}
	ret(stack, v.copyOut(ctx, mod, []byte(val), u32(stack[3]), u32(stack[4])))
}

// headerMapMutation builds proxy_add_header_map_value and
// proxy_replace_header_map_value(map_type, key_data, key_size, value_data,
// value_size) -> status. BAD_ARGUMENT if the map is unavailable.
func headerMapMutation(op func(Pairs, string, string) Pairs) hostFunc {
	return func(_ context.Context, v *VM, mod api.Module, stack []uint64) {
		t := MapType(u32(stack[0]))
		if t > mapTypeMax {
			ret(stack, StatusBadArgument)
			return
		}
		key, ok1 := readString(mod, u32(stack[1]), u32(stack[2]))
		val, ok2 := readString(mod, u32(stack[3]), u32(stack[4]))
		if !ok1 || !ok2 {
			ret(stack, StatusInvalidMemoryAccess)
			return
		}
		m := v.headerMap(t)
		if m == nil {
			ret(stack, StatusBadArgument)
			return
		}
		*m = op(*m, key, val)
		ret(stack, StatusOK)
	}
}

// proxyRemoveHeaderMapValue is proxy_remove_header_map_value(map_type,
// key_data, key_size) -> status; removes every value of the key.
func proxyRemoveHeaderMapValue(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	t := MapType(u32(stack[0]))
	if t > mapTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	key, ok := readString(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	m := v.headerMap(t)
	if m == nil {
		ret(stack, StatusBadArgument)
		return
	}
	*m = m.remove(key)
	ret(stack, StatusOK)
}

// proxySendLocalResponse is proxy_send_local_response(status_code,
// status_code_details_data, status_code_details_size, body_data, body_size,
// headers_data, headers_size, grpc_status) -> status.
//
// The reply takes effect when the running callback returns (Envoy defers
// it and stops the filter chain). Only a stream context can reply: on the
// root context Envoy has no stream and the call does nothing but succeed.
// headers_data is a serialised header map; grpc_status -1 means none.
func proxySendLocalResponse(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	details, ok1 := readString(mod, u32(stack[1]), u32(stack[2]))
	body, ok2 := read(mod, u32(stack[3]), u32(stack[4]))
	hdrs, ok3 := read(mod, u32(stack[5]), u32(stack[6]))
	if !ok1 || !ok2 || !ok3 {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	p, _ := decodePairs(hdrs)
	_, s := v.current()
	if s == nil {
		v.h.hostLog(v.index, LogDebug, "proxy_send_local_response on a root context ignored")
		ret(stack, StatusOK)
		return
	}
	if s.pendingLocal == nil && s.local == nil {
		s.pendingLocal = &LocalResponse{
			Status: u32(stack[0]), Details: details, Body: body,
			Headers: lowerKeys(p), GRPCStatus: int32(u32(stack[7])),
		}
	}
	ret(stack, StatusOK)
}

// proxyGetSharedData is proxy_get_shared_data(key_data, key_size,
// return_value_data, return_value_size, return_cas) -> status. NOT_FOUND
// if the key was never set. The whole value is copied into the calling VM.
//
//	return_value_data ──► [u32 addr] ──► value bytes (guest-allocated)
//	return_value_size ──► [u32 len]    return_cas ──► [u32 cas]
func proxyGetSharedData(ctx context.Context, v *VM, mod api.Module, stack []uint64) {
	key, ok := readString(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	val, cas, st := v.h.shared.Get(v.h.cfg.vmID, key)
	if st != StatusOK {
		ret(stack, st)
		return
	}
	if st := v.copyOut(ctx, mod, val, u32(stack[2]), u32(stack[3])); st != StatusOK {
		ret(stack, st)
		return
	}
	if !writeU32(mod, u32(stack[4]), cas) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxySetSharedData is proxy_set_shared_data(key_data, key_size,
// value_data, value_size, cas) -> status: OK or CAS_MISMATCH (see
// SharedData for the rules).
func proxySetSharedData(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	key, ok1 := readString(mod, u32(stack[0]), u32(stack[1]))
	val, ok2 := read(mod, u32(stack[2]), u32(stack[3]))
	if !ok1 || !ok2 {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, v.h.shared.Set(v.h.cfg.vmID, key, val, u32(stack[4])))
}

// metricRef is what a per-VM metric id refers to.
type metricRef struct {
	typ MetricType
	m   *metric
}

// proxyDefineMetric is proxy_define_metric(metric_type, name_data,
// name_size, return_metric_id) -> status. Ids are per VM (the low two bits
// carry the type, as in Envoy); the metric itself is shared by name.
func proxyDefineMetric(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	typ := MetricType(u32(stack[0]))
	name, ok := readString(mod, u32(stack[1]), u32(stack[2]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	if typ > MetricHistogram {
		ret(stack, StatusBadArgument)
		return
	}
	m := v.h.metrics.define(typ, name)
	if v.metricIDs == nil {
		v.metricIDs = map[uint32]metricRef{}
		v.nextMetric = [3]uint32{uint32(MetricCounter), uint32(MetricGauge), uint32(MetricHistogram)}
	}
	id := v.nextMetric[typ]
	v.nextMetric[typ] += 4
	v.metricIDs[id] = metricRef{typ: typ, m: m}
	if !writeU32(mod, u32(stack[3]), id) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxyIncrementMetric is proxy_increment_metric(metric_id, offset i64) ->
// status. Counters take positive offsets only; histograms none.
func proxyIncrementMetric(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	ref, ok := v.metricIDs[u32(stack[0])]
	if !ok {
		ret(stack, StatusNotFound)
		return
	}
	ret(stack, v.h.metrics.increment(ref.typ, ref.m, int64(stack[1])))
}

// proxyRecordMetric is proxy_record_metric(metric_id, value u64) -> status:
// counter adds, gauge sets, histogram records.
func proxyRecordMetric(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	ref, ok := v.metricIDs[u32(stack[0])]
	if !ok {
		ret(stack, StatusNotFound)
		return
	}
	ret(stack, v.h.metrics.record(ref.typ, ref.m, stack[1]))
}

// proxyGetMetric is proxy_get_metric(metric_id, return_value u64) -> status;
// BAD_ARGUMENT for a histogram.
func proxyGetMetric(_ context.Context, v *VM, mod api.Module, stack []uint64) {
	ref, ok := v.metricIDs[u32(stack[0])]
	if !ok {
		ret(stack, StatusNotFound)
		return
	}
	val, st := v.h.metrics.get(ref.typ, ref.m)
	if st != StatusOK {
		ret(stack, st)
		return
	}
	if !writeU64(mod, u32(stack[1]), val) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxyGetProperty is proxy_get_property(path_data, path_size,
// return_value_data, return_value_size) -> status. The path is a list of
// NUL-separated segments; the harness knows plugin_name, plugin_root_id,
// plugin_vm_id and whatever WithProperty set; NOT_FOUND otherwise.
func proxyGetProperty(ctx context.Context, v *VM, mod api.Module, stack []uint64) {
	path, ok := readString(mod, u32(stack[0]), u32(stack[1]))
	if !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	val, found := v.h.props[path]
	if !found {
		ret(stack, StatusNotFound)
		return
	}
	ret(stack, v.copyOut(ctx, mod, val, u32(stack[2]), u32(stack[3])))
}

// proxyContinueStream is proxy_continue_stream(stream_type) -> status.
// On a stream it records the resumption (Envoy continues after the callback
// returns); on the root context it does nothing, as Envoy.
func proxyContinueStream(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	t := StreamType(u32(stack[0]))
	if t > streamTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	if _, s := v.current(); s != nil {
		s.continued = append(s.continued, t)
	}
	ret(stack, StatusOK)
}

// proxyCloseStream is proxy_close_stream(stream_type) -> status; records
// that the module reset the stream.
func proxyCloseStream(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	t := StreamType(u32(stack[0]))
	if t > streamTypeMax {
		ret(stack, StatusBadArgument)
		return
	}
	if _, s := v.current(); s != nil {
		s.closedByModule = true
	}
	ret(stack, StatusOK)
}

// proxySetEffectiveContext is proxy_set_effective_context(context_id) ->
// status: later host calls in this callback act on that context.
// BAD_ARGUMENT for an unknown id.
func proxySetEffectiveContext(_ context.Context, v *VM, _ api.Module, stack []uint64) {
	id := u32(stack[0])
	if !v.contextExists(id) {
		ret(stack, StatusBadArgument)
		return
	}
	v.effective = id
	ret(stack, StatusOK)
}

// proxyDone is proxy_done() -> status. Envoy answers NOT_FOUND unless the
// context is in its pending-done set (a VM shutting down after
// proxy_on_done returned false), which the harness never builds.
func proxyDone(_ context.Context, _ *VM, _ api.Module, stack []uint64) {
	ret(stack, StatusNotFound)
}

// proxyGetStatus is proxy_get_status(return_code, return_message_data,
// return_message_size) -> status; the harness has no gRPC status, so code 0
// and an empty message.
func proxyGetStatus(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if !writeU32(mod, u32(stack[0]), 0) || !writeU32(mod, u32(stack[1]), 0) || !writeU32(mod, u32(stack[2]), 0) {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusOK)
}

// proxyCallForeignFunction is proxy_call_foreign_function(...) -> status;
// no foreign function is registered, so NOT_FOUND as Envoy for an unknown
// name.
func proxyCallForeignFunction(_ context.Context, _ *VM, mod api.Module, stack []uint64) {
	if _, ok := read(mod, u32(stack[0]), u32(stack[1])); !ok {
		ret(stack, StatusInvalidMemoryAccess)
		return
	}
	ret(stack, StatusNotFound)
}
