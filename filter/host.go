package filter

import "github.com/jtiguard/jtiguard/internal/abi"

// hostCalls gives blocklistsync the host's callouts, logs and metrics through internal/abi.
type hostCalls struct{}

func (hostCalls) DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeoutMillis uint32, cb func(int, int, int)) (uint32, error) {
	return abi.DispatchHTTPCall(cluster, headers, body, timeoutMillis, cb)
}
func (hostCalls) GetHTTPCallResponseHeaders() ([][2]string, error) {
	return abi.GetHTTPCallResponseHeaders()
}
func (hostCalls) GetHTTPCallResponseBody(start, maxSize int) ([]byte, error) {
	return abi.GetHTTPCallResponseBody(start, maxSize)
}
func (hostCalls) Log(level abi.LogLevel, msg string)    { abi.Log(level, msg) }
func (hostCalls) DefineCounter(name string) abi.Counter { return abi.DefineCounter(name) }
func (hostCalls) DefineGauge(name string) abi.Gauge     { return abi.DefineGauge(name) }
