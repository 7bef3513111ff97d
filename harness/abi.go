package harness

// Status is a proxy-wasm ABI v0.2.1 result code, returned by every env.proxy_*
// host function.
//
// See https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1#proxy_status_t
type Status uint32

// Status values, numbered as in the spec and proxy-wasm-cpp-host.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCASMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

// Action is what a stream callback asks the host to do next.
type Action uint32

const (
	// ActionContinue lets the stream proceed to the next filter.
	ActionContinue Action = 0
	// ActionPause stops iteration until proxy_continue_stream.
	ActionPause Action = 1
)

func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "Continue"
	case ActionPause:
		return "Pause"
	}
	return "Action(" + itoa(uint64(a)) + ")"
}

// MapType selects a header map in the proxy_*_header_map_* functions.
type MapType uint32

// Map types of ABI v0.2.1.
const (
	MapRequestHeaders       MapType = 0
	MapRequestTrailers      MapType = 1
	MapResponseHeaders      MapType = 2
	MapResponseTrailers     MapType = 3
	MapGRPCReceiveInitial   MapType = 4
	MapGRPCReceiveTrailing  MapType = 5
	MapHTTPCallRespHeaders  MapType = 6
	MapHTTPCallRespTrailers MapType = 7
	mapTypeMax                      = MapHTTPCallRespTrailers
)

// BufferType selects a buffer in proxy_get_buffer_bytes and friends.
type BufferType uint32

// Buffer types of ABI v0.2.1.
const (
	BufferRequestBody      BufferType = 0
	BufferResponseBody     BufferType = 1
	BufferDownstreamData   BufferType = 2
	BufferUpstreamData     BufferType = 3
	BufferHTTPCallRespBody BufferType = 4
	BufferGRPCReceive      BufferType = 5
	BufferVMConfiguration  BufferType = 6
	BufferPluginConfig     BufferType = 7
	BufferForeignArgs      BufferType = 8
	bufferTypeMax                     = BufferForeignArgs
)

// MetricType is the kind of a metric defined with proxy_define_metric.
type MetricType uint32

// Metric types of ABI v0.2.1.
const (
	MetricCounter   MetricType = 0
	MetricGauge     MetricType = 1
	MetricHistogram MetricType = 2
)

func (t MetricType) String() string {
	switch t {
	case MetricCounter:
		return "counter"
	case MetricGauge:
		return "gauge"
	case MetricHistogram:
		return "histogram"
	}
	return "MetricType(" + itoa(uint64(t)) + ")"
}

// LogLevel is a proxy-wasm log level (trace 0 .. critical 5).
type LogLevel uint32

// Log levels of ABI v0.2.1; Envoy maps them onto its own logger levels.
const (
	LogTrace    LogLevel = 0
	LogDebug    LogLevel = 1
	LogInfo     LogLevel = 2
	LogWarn     LogLevel = 3
	LogError    LogLevel = 4
	LogCritical LogLevel = 5
)

func (l LogLevel) String() string {
	switch l {
	case LogTrace:
		return "trace"
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogCritical:
		return "critical"
	}
	return "LogLevel(" + itoa(uint64(l)) + ")"
}

// StreamType is the argument of proxy_continue_stream / proxy_close_stream.
type StreamType uint32

// Stream types of ABI v0.2.1.
const (
	StreamRequest    StreamType = 0
	StreamResponse   StreamType = 1
	StreamDownstream StreamType = 2
	StreamUpstream   StreamType = 3
	streamTypeMax               = StreamUpstream
)

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
