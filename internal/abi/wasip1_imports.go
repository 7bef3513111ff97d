//go:build wasip1 && !tinygo

package abi

import "unsafe"

// Host functions of the proxy-wasm ABI v0.2.1, module "env". Every one returns a status
// (see statusError). Pointers are addresses in this module's linear memory; a "ret" pointer
// names a 32-bit slot the host writes into. Buffers the host returns are allocated through
// proxy_on_memory_allocate and found again by address in takeAllocation.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1

// proxy_log(level, message_data, message_size) writes a message to the host's log.
//
//go:noescape
//go:wasmimport env proxy_log
func proxyLog(level uint32, msg unsafe.Pointer, size uint32) uint32

// proxy_set_tick_period_milliseconds(period) starts (or with 0 stops) proxy_on_tick calls on
// the calling root context.
//
//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(period uint32) uint32

// proxy_get_buffer_bytes(buffer_type, start, max_size, ret_data, ret_size) copies part of a
// host buffer (request body 0, HTTP call response body 4, VM config 6, plugin config 7, …).
//
//go:noescape
//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType, start, maxSize uint32, retData, retSize unsafe.Pointer) uint32

// proxy_get_header_map_pairs(map_type, ret_data, ret_size) copies a whole header map in the
// wire format of encodeHeaderMap.
//
//go:noescape
//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mapType uint32, retData, retSize unsafe.Pointer) uint32

// proxy_get_header_map_value(map_type, key_data, key_size, ret_data, ret_size) copies the first
// value of one header.
//
//go:noescape
//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, retData, retSize unsafe.Pointer) uint32

// proxy_send_local_response(status, details, details_size, body, body_size, headers,
// headers_size, grpc_status) replaces the upstream with a reply of our own; it takes effect
// when the current callback returns.
//
//go:noescape
//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32,
	headers unsafe.Pointer, headersSize uint32, grpcStatus int32) uint32

// proxy_http_call(cluster, cluster_size, headers, headers_size, body, body_size, trailers,
// trailers_size, timeout_ms, ret_call_id) sends a request to a configured cluster; the reply
// arrives in proxy_on_http_call_response.
//
//go:noescape
//go:wasmimport env proxy_http_call
func proxyHTTPCall(cluster unsafe.Pointer, clusterSize uint32, headers unsafe.Pointer, headersSize uint32,
	body unsafe.Pointer, bodySize uint32, trailers unsafe.Pointer, trailersSize uint32, timeoutMillis uint32, retCallID unsafe.Pointer) uint32

// proxy_get_shared_data(key, key_size, ret_value, ret_size, ret_cas) copies a shared value and
// its CAS token.
//
//go:noescape
//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key unsafe.Pointer, keySize uint32, retValue, retSize, retCas unsafe.Pointer) uint32

// proxy_set_shared_data(key, key_size, value, value_size, cas) stores a shared value if cas
// still matches (0: unconditionally).
//
//go:noescape
//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32, cas uint32) uint32

// proxy_define_metric(type, name, name_size, ret_id): counter 0, gauge 1, histogram 2.
//
//go:noescape
//go:wasmimport env proxy_define_metric
func proxyDefineMetric(metricType uint32, name unsafe.Pointer, nameSize uint32, retID unsafe.Pointer) uint32

// proxy_increment_metric(id, offset) adds to a counter or gauge.
//
//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, offset int64) uint32

// proxy_record_metric(id, value) sets a gauge or records a histogram sample.
//
//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

// proxy_get_property(path, path_size, ret_value, ret_size) copies a host property; path is
// the '\0'-separated segments.
//
//go:noescape
//go:wasmimport env proxy_get_property
func proxyGetProperty(path unsafe.Pointer, pathSize uint32, retValue, retSize unsafe.Pointer) uint32

// proxy_get_log_level(ret_level) reports the host's current log level.
//
//go:noescape
//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(retLevel unsafe.Pointer) uint32

// proxy_get_current_time_nanoseconds(ret_time) writes the host's wall clock, Unix nanoseconds:
// one host call, where Go's time.Now makes two WASI calls (wall and monotonic clocks).
//
//go:noescape
//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(retTime unsafe.Pointer) uint32

// proxy_add_header_map_value(map_type, key_data, key_size, value_data, value_size) adds one
// header pair (Envoy: a new entry, beside any of that name).
//
//go:noescape
//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

// proxy_remove_header_map_value(map_type, key_data, key_size) removes every pair of a name.
//
//go:noescape
//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32) uint32

// proxy_set_property(path_data, path_size, value_data, value_size) sets a host property
// (Envoy: filter state "wasm.<path>" of the current stream).
//
//go:noescape
//go:wasmimport env proxy_set_property
func proxySetProperty(path unsafe.Pointer, pathSize uint32, value unsafe.Pointer, valueSize uint32) uint32
