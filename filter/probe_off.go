//go:build !reqprobe

package filter

// probe and probeEnd are the request path's timing points (probe_on.go, -tags reqprobe);
// without the tag they compile to nothing, as probeHot (probehot_on.go) does.
func probe(int)                          {}
func probeEnd()                          {}
func probeHot(*httpContext, [][2]string) {}
