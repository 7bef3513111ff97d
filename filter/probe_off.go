//go:build !reqprobe

package filter

// probe and probeEnd are the request path's timing points (probe_on.go, -tags reqprobe);
// without the tag they compile to nothing.
func probe(int) {}
func probeEnd() {}
