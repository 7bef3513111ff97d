//go:build wasip1 && !tinygo

package abi

import (
	"unsafe"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// ABI enumerations this package uses.
const (
	statusOK            = 0
	statusNotFound      = 1
	statusBadArgument   = 2
	statusEmpty         = 7
	statusCasMismatch   = 8
	statusUnimplemented = 12

	mapRequestHeaders      = 0
	mapHTTPCallRespHeaders = 6

	bufferHTTPCallRespBody = 4
	bufferVMConfig         = 6
	bufferPluginConfig     = 7

	metricCounter = 0
	metricGauge   = 1
)

// statusError maps an ABI status to the SDK's sentinels, so both builds fail alike.
func statusError(st uint32) error {
	switch st {
	case statusOK:
		return nil
	case statusNotFound:
		return types.ErrorStatusNotFound
	case statusBadArgument:
		return types.ErrorStatusBadArgument
	case statusEmpty:
		return types.ErrorStatusEmpty
	case statusCasMismatch:
		return types.ErrorStatusCasMismatch
	case statusUnimplemented:
		return types.ErrorUnimplemented
	default:
		return types.ErrorInternalFailure
	}
}

// allocations pins the buffers handed to the host by proxy_on_memory_allocate until the
// host call that asked for them returns: the host stores only a 32-bit address, which the
// garbage collector cannot see. takeAllocation finds a buffer again by that address, so no
// integer ever turns back into a pointer.
var allocations [][]byte

const maxPinned = 8

func allocate(size uint32) unsafe.Pointer {
	if len(allocations) >= maxPinned {
		// A host call hands back one buffer; a longer list means buffers nobody took (a host
		// allocating on its own). Let them go rather than pin memory forever.
		clearAllocations()
	}
	buf := make([]byte, size+1) // never zero-sized: every allocation needs its own address
	allocations = append(allocations, buf)
	return unsafe.Pointer(&buf[0])
}

// takeAllocation returns the host-written buffer at addr, cut to size, and unpins every
// allocation: callers take at most one buffer per host call and keep their own reference.
func takeAllocation(addr, size uint32) []byte {
	defer clearAllocations()
	if addr == 0 || size == 0 {
		return nil
	}
	for _, buf := range allocations {
		if uint32(uintptr(unsafe.Pointer(&buf[0]))) == addr && int(size) < len(buf) {
			return buf[:size:size]
		}
	}
	return nil
}

func clearAllocations() {
	clear(allocations)
	allocations = allocations[:0]
}

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// SetVMContext registers the plugin's VM context; call it from init().
func SetVMContext(ctx types.VMContext) { state.vm = ctx }

func getBuffer(bufferType, start, maxSize uint32) ([]byte, error) {
	var addr, size uint32
	st := proxyGetBufferBytes(bufferType, start, maxSize, unsafe.Pointer(&addr), unsafe.Pointer(&size))
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, err
	}
	return buf, nil
}

// GetPluginConfiguration returns the plugin configuration; valid only in OnPluginStart.
func GetPluginConfiguration() ([]byte, error) {
	return getBuffer(bufferPluginConfig, 0, uint32(state.configSize))
}

// SetTickPeriodMilliSeconds asks the host to call OnTick on this root context every ms.
func SetTickPeriodMilliSeconds(ms uint32) error {
	return statusError(proxySetTickPeriodMilliseconds(ms))
}

// GetHTTPRequestHeader returns the first value of a request header (names are lower case).
func GetHTTPRequestHeader(name string) (string, error) {
	var addr, size uint32
	st := proxyGetHeaderMapValue(mapRequestHeaders, stringPtr(name), uint32(len(name)), unsafe.Pointer(&addr), unsafe.Pointer(&size))
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return "", err
	}
	return string(buf), nil
}

func getHeaderMap(mapType uint32) ([][2]string, error) {
	var addr, size uint32
	st := proxyGetHeaderMapPairs(mapType, unsafe.Pointer(&addr), unsafe.Pointer(&size))
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, err
	}
	return decodeHeaderMap(buf)
}

// GetHTTPRequestHeaders returns every request header pair, repeated names included.
func GetHTTPRequestHeaders() ([][2]string, error) { return getHeaderMap(mapRequestHeaders) }

// SendHTTPResponse sends a local reply; the stream callback must then return ActionPause.
func SendHTTPResponse(status uint32, headers [][2]string, body []byte) error {
	hs := encodeHeaderMap(headers)
	return statusError(proxySendLocalResponse(status, nil, 0, bytesPtr(body), uint32(len(body)),
		bytesPtr(hs), uint32(len(hs)), -1))
}

// DispatchHTTPCall sends an HTTP request to cluster; cb runs on this root context with the reply.
func DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeoutMillis uint32, cb HTTPCallCallback) (uint32, error) {
	hs := encodeHeaderMap(headers)
	ts := encodeHeaderMap(nil)
	var id uint32
	st := proxyHTTPCall(stringPtr(cluster), uint32(len(cluster)), bytesPtr(hs), uint32(len(hs)),
		bytesPtr(body), uint32(len(body)), bytesPtr(ts), uint32(len(ts)), timeoutMillis, unsafe.Pointer(&id))
	if err := statusError(st); err != nil {
		return 0, err
	}
	state.callouts[calloutKey{state.activeRoot, id}] = cb
	return id, nil
}

// GetHTTPCallResponseHeaders returns the reply headers (with :status); valid only inside the callback.
func GetHTTPCallResponseHeaders() ([][2]string, error) { return getHeaderMap(mapHTTPCallRespHeaders) }

// GetHTTPCallResponseBody returns up to maxSize bytes of the reply body from start.
func GetHTTPCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufferHTTPCallRespBody, uint32(start), uint32(maxSize))
}

// GetSharedData returns a copy of key's value and its CAS token.
func GetSharedData(key string) ([]byte, uint32, error) {
	var addr, size, cas uint32
	st := proxyGetSharedData(stringPtr(key), uint32(len(key)), unsafe.Pointer(&addr), unsafe.Pointer(&size), unsafe.Pointer(&cas))
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, 0, err
	}
	return buf, cas, nil
}

// SetSharedData stores value under key if cas still matches (0: unconditionally, on Envoy).
func SetSharedData(key string, value []byte, cas uint32) error {
	return statusError(proxySetSharedData(stringPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// Log writes msg at level through the host's logger.
func Log(level LogLevel, msg string) {
	proxyLog(uint32(level), stringPtr(msg), uint32(len(msg)))
}

type hostCounter uint32

func (c hostCounter) Increment(delta uint64) { proxyIncrementMetric(uint32(c), int64(delta)) }

type hostGauge uint32

func (g hostGauge) Set(v int64) { proxyRecordMetric(uint32(g), uint64(v)) }

func defineMetric(kind uint32, name string) uint32 {
	var id uint32
	if err := statusError(proxyDefineMetric(kind, stringPtr(name), uint32(len(name)), unsafe.Pointer(&id))); err != nil {
		Log(LogLevelError, "abi: define metric "+name+": "+err.Error())
	}
	return id
}

// DefineCounter defines (or finds) a counter by name.
func DefineCounter(name string) Counter { return hostCounter(defineMetric(metricCounter, name)) }

// DefineGauge defines (or finds) a gauge by name.
func DefineGauge(name string) Gauge { return hostGauge(defineMetric(metricGauge, name)) }
