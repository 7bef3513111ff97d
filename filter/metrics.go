package filter

import "github.com/jtiguard/jtiguard/internal/abi"

// metrics are the request-side counters. Envoy shows them as wasmcustom.<prefix><name>
// (for example wasmcustom.jtiguard.requests.revoked); every worker VM defines the same names
// and so adds to the same counters.
type metrics struct {
	checked, allowed, revoked, missing, invalid, failedClosed, failedOpen, cacheHits abi.Counter
}

func newMetrics(prefix string) *metrics {
	c := func(name string) abi.Counter { return abi.DefineCounter(prefix + name) }
	return &metrics{
		checked:      c("requests.checked"),
		allowed:      c("requests.allowed"),
		revoked:      c("requests.revoked"),
		missing:      c("requests.missing_token"),
		invalid:      c("requests.invalid_token"),
		failedClosed: c("requests.failed_closed"),
		failedOpen:   c("requests.failed_open"),
		cacheHits:    c("requests.cache_hits"),
	}
}
