package filter

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// metrics are the request-side counters. Envoy shows them as wasmcustom.<prefix><name>
// (for example wasmcustom.jtiguard.requests.revoked); every worker VM defines the same names
// and so adds to the same counters. The request path only adds to fields here; flush hands
// the sums to the host on each tick, so a request costs no host call for its metrics and a
// metric lags by at most one tick.
type metrics struct {
	checked, allowed, revoked, missing, invalid, ambiguous, tooLarge, failedClosed, failedOpen, cacheHits, skipped uint64

	host [11]abi.Counter
}

var metricNames = [11]string{
	"requests.checked", "requests.allowed", "requests.revoked", "requests.missing_token",
	"requests.invalid_token", "requests.ambiguous", "requests.body_too_large",
	"requests.failed_closed", "requests.failed_open", "requests.cache_hits", "requests.skipped",
}

func newMetrics(prefix string) *metrics {
	m := &metrics{}
	for i, name := range metricNames {
		m.host[i] = abi.DefineCounter(prefix + name)
	}
	return m
}

// flush adds what was counted since the last flush to the host's counters.
func (m *metrics) flush() {
	for i, v := range [11]*uint64{&m.checked, &m.allowed, &m.revoked, &m.missing, &m.invalid,
		&m.ambiguous, &m.tooLarge, &m.failedClosed, &m.failedOpen, &m.cacheHits, &m.skipped} {
		if *v != 0 {
			m.host[i].Increment(*v)
			*v = 0
		}
	}
}

// jsonMessage builds {key: message} as flask's jsonify does: no HTML escaping of <, > or &.
func jsonMessage(key, message string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{key: message})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// quote renders a claim for a log line.
func quote(s string) string { return strconv.Quote(s) }
