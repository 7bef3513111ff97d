//go:build !wasip1 || tinygo

package abi

import (
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// This build forwards to the SDK: natively it talks to the SDK's proxytest emulator, and under
// TinyGo the SDK provides the real exports and imports.

// SetVMContext registers the plugin's VM context; call it from init().
func SetVMContext(ctx types.VMContext) { proxywasm.SetVMContext(ctx) }

// GetPluginConfiguration returns the plugin configuration; valid only in OnPluginStart.
func GetPluginConfiguration() ([]byte, error) { return proxywasm.GetPluginConfiguration() }

// SetTickPeriodMilliSeconds asks the host to call OnTick on this root context every ms.
func SetTickPeriodMilliSeconds(ms uint32) error { return proxywasm.SetTickPeriodMilliSeconds(ms) }

// GetHTTPRequestHeader returns the first value of a request header (names are lower case).
func GetHTTPRequestHeader(name string) (string, error) {
	return proxywasm.GetHttpRequestHeader(name)
}

// GetHTTPRequestHeaders returns every request header pair, repeated names included.
func GetHTTPRequestHeaders() ([][2]string, error) { return proxywasm.GetHttpRequestHeaders() }

// GetHTTPRequestBody returns up to maxSize bytes of the buffered request body from start.
func GetHTTPRequestBody(start, maxSize int) ([]byte, error) {
	return proxywasm.GetHttpRequestBody(start, maxSize)
}

// GetProperty reads a host property by path.
func GetProperty(path []string) ([]byte, error) { return proxywasm.GetProperty(path) }

// AddHTTPRequestHeader adds a request header pair.
func AddHTTPRequestHeader(name, value string) error {
	return proxywasm.AddHttpRequestHeader(name, value)
}

// RemoveHTTPRequestHeader removes a request header (the SDK's emulator: its first pair).
func RemoveHTTPRequestHeader(name string) error { return proxywasm.RemoveHttpRequestHeader(name) }

// SetProperty sets a host property of the current stream (one path segment).
func SetProperty(path, value string) error {
	return proxywasm.SetProperty([]string{path}, []byte(value))
}

// SendHTTPResponse sends a local reply; the stream callback must then return ActionPause.
// The SDK's emulator has no response code details, so details is dropped here.
func SendHTTPResponse(status uint32, details string, headers, body []byte) error {
	pairs, err := decodeHeaderMap(headers)
	if err != nil {
		return err
	}
	return proxywasm.SendHttpResponse(status, pairs, body, -1)
}

// DispatchHTTPCall sends an HTTP request to cluster; cb runs on this root context with the reply.
func DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeoutMillis uint32, cb HTTPCallCallback) (uint32, error) {
	return proxywasm.DispatchHttpCall(cluster, headers, body, nil, timeoutMillis, cb)
}

// GetHTTPCallResponseHeaders returns the reply headers (with :status); valid only inside the callback.
func GetHTTPCallResponseHeaders() ([][2]string, error) {
	return proxywasm.GetHttpCallResponseHeaders()
}

// GetHTTPCallResponseBody returns up to maxSize bytes of the reply body from start.
func GetHTTPCallResponseBody(start, maxSize int) ([]byte, error) {
	return proxywasm.GetHttpCallResponseBody(start, maxSize)
}

// GetSharedData returns a copy of key's value and its CAS token.
func GetSharedData(key string) ([]byte, uint32, error) { return proxywasm.GetSharedData(key) }

// GetSharedDataView is GetSharedData for a value used only during the current callback.
func GetSharedDataView(key string) ([]byte, uint32, error) { return proxywasm.GetSharedData(key) }

// GetSharedDataInto is GetSharedData; the SDK always copies into a new slice.
func GetSharedDataInto(key string, _ []byte) ([]byte, uint32, error) {
	return proxywasm.GetSharedData(key)
}

// SetSharedData stores value under key if cas still matches (0: unconditionally, on Envoy).
func SetSharedData(key string, value []byte, cas uint32) error {
	return proxywasm.SetSharedData(key, value, cas)
}

// Now is the wall clock (the SDK's emulator has no clock of its own).
func Now() time.Time { return time.Now() }

// RefreshLogLevel reads the host's current log level; the SDK has no such call, and its
// emulator records every level.
func RefreshLogLevel() {}

// LogEnabled reports whether a message at level would be logged: always, in this build.
func LogEnabled(LogLevel) bool { return true }

// Log writes msg at level through the host's logger.
func Log(level LogLevel, msg string) {
	switch level {
	case LogLevelTrace:
		proxywasm.LogTrace(msg)
	case LogLevelDebug:
		proxywasm.LogDebug(msg)
	case LogLevelInfo:
		proxywasm.LogInfo(msg)
	case LogLevelWarn:
		proxywasm.LogWarn(msg)
	case LogLevelError:
		proxywasm.LogError(msg)
	default:
		proxywasm.LogCritical(msg)
	}
}

type sdkCounter proxywasm.MetricCounter

func (c sdkCounter) Increment(delta uint64) { proxywasm.MetricCounter(c).Increment(delta) }

// sdkGauge sets by adding the difference: the SDK exposes no record call for gauges.
type sdkGauge proxywasm.MetricGauge

func (g sdkGauge) Set(v int64) {
	m := proxywasm.MetricGauge(g)
	m.Add(v - m.Value())
}

// DefineCounter defines (or finds) a counter by name.
func DefineCounter(name string) Counter { return sdkCounter(proxywasm.DefineCounterMetric(name)) }

// DefineGauge defines (or finds) a gauge by name.
func DefineGauge(name string) Gauge { return sdkGauge(proxywasm.DefineGaugeMetric(name)) }
