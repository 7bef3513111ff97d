//go:build wasip1 && !tinygo

package abi

import (
	"time"
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

	bufferRequestBody      = 0
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

// Memory the host writes into. The host copies every value it returns (headers, bodies,
// shared data) into memory it asks the module for through proxy_on_memory_allocate, and keeps
// only a 32-bit address, which the garbage collector cannot see. Two kinds of memory answer:
//
//   - views: for values used only during the current callback (request headers, the request
//     body, the generation record read on every request), a bump allocator over one reused
//     buffer. It is rewound when the next top-level callback starts, so the request path
//     allocates nothing once the buffer has grown to the largest request seen;
//   - owned: for values kept after the callback (a snapshot, a feed body, the configuration),
//     a fresh slice the caller owns.
//
// A host call that wants a view sets viewMode around the call. takeAllocation finds the
// buffer the host wrote by its address, so no integer ever turns back into a pointer.
var (
	viewMode bool
	arena    struct {
		buf  []byte
		off  int
		want int // the largest use seen in one callback: the next rewind grows buf to it
	}
	// owned pins the owned buffers handed out during one host call until it returns.
	owned [][]byte
	// into is the caller's buffer for the one host call GetSharedDataInto makes (intoMode):
	// the host writes there when it fits; got is the buffer the host was given, at its full
	// capacity.
	intoMode  bool
	into, got []byte
)

const (
	maxPinned = 8
	// maxArena bounds the reused buffer: a larger view (an odd request) is allocated once and
	// left to the collector rather than keeping that much memory for every later request.
	maxArena = 1 << 20
)

func allocate(size uint32) unsafe.Pointer {
	n := int(size) + 1 // never zero-sized: every allocation needs its own address
	if intoMode {
		buf := into
		intoMode, into = false, nil
		if n > cap(buf) {
			// Room to grow by an eighth: a list that grows a little at every generation
			// does not need a new buffer each time.
			buf = make([]byte, n, n+n/8)
		}
		got = buf[:cap(buf)]
		buf = buf[:n]
		owned = append(owned, buf)
		return unsafe.Pointer(&buf[0])
	}
	if viewMode && n <= maxArena {
		if arena.off+n <= len(arena.buf) {
			p := unsafe.Pointer(&arena.buf[arena.off])
			arena.off += (n + 7) &^ 7
			return p
		}
		arena.want = max(arena.want, arena.off+n)
	}
	if len(owned) >= maxPinned {
		// A host call hands back one buffer; a longer list means buffers nobody took (a host
		// allocating on its own). Let them go rather than pin memory forever.
		clearAllocations()
	}
	buf := make([]byte, n)
	owned = append(owned, buf)
	return unsafe.Pointer(&buf[0])
}

// rewindArena makes the view buffer reusable; every top-level callback calls it first, so a
// view never outlives the callback that took it.
func rewindArena() {
	if arena.want > len(arena.buf) {
		arena.buf = make([]byte, min(max(arena.want, 2*len(arena.buf), 4096), maxArena))
	}
	arena.off, arena.want = 0, 0
}

// takeAllocation returns the host-written buffer at addr, cut to size, and unpins the owned
// ones: callers take at most one buffer per host call and keep their own reference.
func takeAllocation(addr, size uint32) []byte {
	buf := findAllocation(addr, size)
	clearAllocations() // not deferred: a defer costs more than the call in wasm
	return buf
}

// findAllocation is the buffer the host wrote at addr, cut to size, or nil.
func findAllocation(addr, size uint32) []byte {
	if addr == 0 || size == 0 {
		return nil
	}
	if len(arena.buf) > 0 {
		base := uint32(uintptr(unsafe.Pointer(&arena.buf[0])))
		if addr >= base && uint64(addr-base)+uint64(size) < uint64(len(arena.buf)) {
			off := addr - base
			return arena.buf[off : off+size : off+size]
		}
	}
	for _, buf := range owned {
		if uint32(uintptr(unsafe.Pointer(&buf[0]))) == addr && int(size) < len(buf) {
			return buf[:size:size]
		}
	}
	return nil
}

func clearAllocations() {
	clear(owned)
	owned = owned[:0]
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

func getBuffer(bufferType, start, maxSize uint32, view bool) ([]byte, error) {
	var addr, size uint32
	viewMode = view
	st := proxyGetBufferBytes(bufferType, start, maxSize, unsafe.Pointer(&addr), unsafe.Pointer(&size))
	viewMode = false
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, err
	}
	return buf, nil
}

// GetPluginConfiguration returns the plugin configuration; valid only in OnPluginStart.
func GetPluginConfiguration() ([]byte, error) {
	return getBuffer(bufferPluginConfig, 0, uint32(state.configSize), false)
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

func getHeaderMap(mapType uint32, view bool) ([]byte, error) {
	var addr, size uint32
	viewMode = view
	st := proxyGetHeaderMapPairs(mapType, unsafe.Pointer(&addr), unsafe.Pointer(&size))
	viewMode = false
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, err
	}
	return buf, nil
}

// requestHeaders is reused by every GetHTTPRequestHeaders.
var requestHeaders [][2]string

// GetHTTPRequestHeaders returns every request header pair, repeated names included. The
// strings are views valid only until the current callback returns: clone what you keep.
func GetHTTPRequestHeaders() ([][2]string, error) {
	buf, err := getHeaderMap(mapRequestHeaders, true)
	if err != nil {
		return nil, err
	}
	requestHeaders, err = decodeHeaderMapInto(requestHeaders, buf, true)
	return requestHeaders, err
}

// GetHTTPRequestBody returns up to maxSize bytes of the buffered request body from start, as
// a view valid only until the current callback returns.
func GetHTTPRequestBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufferRequestBody, uint32(start), uint32(maxSize), true)
}

// GetProperty reads a host property by path (Envoy: segments such as "metadata",
// "filter_metadata", ...). The value's encoding depends on its type: see the host's docs.
func GetProperty(path []string) ([]byte, error) {
	var enc []byte
	for _, p := range path {
		enc = append(enc, p...)
		enc = append(enc, 0)
	}
	var addr, size uint32
	st := proxyGetProperty(bytesPtr(enc), uint32(len(enc)), unsafe.Pointer(&addr), unsafe.Pointer(&size))
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, err
	}
	return buf, nil
}

// AddHTTPRequestHeader adds a request header pair; valid in a request callback before the
// headers have gone upstream.
func AddHTTPRequestHeader(name, value string) error {
	return statusError(proxyAddHeaderMapValue(mapRequestHeaders, stringPtr(name), uint32(len(name)), stringPtr(value), uint32(len(value))))
}

// RemoveHTTPRequestHeader removes every request header named name (lower case).
func RemoveHTTPRequestHeader(name string) error {
	return statusError(proxyRemoveHeaderMapValue(mapRequestHeaders, stringPtr(name), uint32(len(name))))
}

// SetProperty sets a host property of the current stream. path is one segment here (no
// '\0' inside): Envoy keeps the value as filter state "wasm.<path>".
func SetProperty(path, value string) error {
	return statusError(proxySetProperty(stringPtr(path), uint32(len(path)), stringPtr(value), uint32(len(value))))
}

// SendHTTPResponse sends a local reply; the stream callback must then return ActionPause.
// details is what Envoy logs as %RESPONSE_CODE_DETAILS%; headers are in the wire format of
// EncodeHeaders.
func SendHTTPResponse(status uint32, details string, headers, body []byte) error {
	return statusError(proxySendLocalResponse(status, stringPtr(details), uint32(len(details)), bytesPtr(body), uint32(len(body)),
		bytesPtr(headers), uint32(len(headers)), -1))
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
func GetHTTPCallResponseHeaders() ([][2]string, error) {
	buf, err := getHeaderMap(mapHTTPCallRespHeaders, false)
	if err != nil {
		return nil, err
	}
	return decodeHeaderMap(buf)
}

// GetHTTPCallResponseBody returns up to maxSize bytes of the reply body from start.
func GetHTTPCallResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(bufferHTTPCallRespBody, uint32(start), uint32(maxSize), false)
}

// GetSharedData returns a copy of key's value and its CAS token.
func GetSharedData(key string) ([]byte, uint32, error) { return getSharedData(key, false) }

// GetSharedDataView is GetSharedData for a value used only during the current callback (the
// small records read on every request): it allocates nothing.
func GetSharedDataView(key string) ([]byte, uint32, error) { return getSharedData(key, true) }

func getSharedData(key string, view bool) ([]byte, uint32, error) {
	var addr, size, cas uint32
	viewMode = view
	st := proxyGetSharedData(stringPtr(key), uint32(len(key)), unsafe.Pointer(&addr), unsafe.Pointer(&size), unsafe.Pointer(&cas))
	viewMode = false
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, 0, err
	}
	return buf, cas, nil
}

// GetSharedDataInto is GetSharedData into the caller's buffer dst when the value fits its
// capacity (the host's copy is written there, nothing is allocated), or else into a new one with
// room to grow. The result has the value's length and the buffer's whole capacity, so the caller
// can hand it back for the next read. It is for large values read again and again (a blocklist
// snapshot): the caller must know that nothing still uses dst's contents.
func GetSharedDataInto(key string, dst []byte) ([]byte, uint32, error) {
	var addr, size, cas uint32
	intoMode, into, got = true, dst, nil
	st := proxyGetSharedData(stringPtr(key), uint32(len(key)), unsafe.Pointer(&addr), unsafe.Pointer(&size), unsafe.Pointer(&cas))
	intoMode, into = false, nil
	full := got
	got = nil
	buf := takeAllocation(addr, size)
	if err := statusError(st); err != nil {
		return nil, 0, err
	}
	if len(buf) > 0 && len(full) >= len(buf) && &full[0] == &buf[0] {
		return full[:len(buf)], cas, nil
	}
	return buf, cas, nil
}

// SetSharedData stores value under key if cas still matches (0: unconditionally, on Envoy).
func SetSharedData(key string, value []byte, cas uint32) error {
	return statusError(proxySetSharedData(stringPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// Now is the host's wall clock, in one host call (the request path's clock). It falls back to
// time.Now if the host does not answer.
func Now() time.Time {
	var ns uint64
	if proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&ns)) != statusOK {
		return time.Now()
	}
	return time.Unix(0, int64(ns))
}

// logLevel is the host's log level as last read by RefreshLogLevel.
var logLevel = LogLevelTrace

// RefreshLogLevel reads the host's current log level (Envoy can change it at run time); call
// it now and then, not per request.
func RefreshLogLevel() {
	var l uint32
	if proxyGetLogLevel(unsafe.Pointer(&l)) == statusOK {
		logLevel = LogLevel(l)
	}
}

// LogEnabled reports whether a message at level would be logged, as of RefreshLogLevel: the
// request path asks before it formats anything.
func LogEnabled(level LogLevel) bool { return level >= logLevel }

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
