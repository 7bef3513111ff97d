//go:build reqprobe

package jwtverify

import _ "unsafe" // for go:linkname

// With -tags reqprobe, Verify records the instants of its phases for the filter's probe
// (filter/probe_on.go): ProbeT[i] is when phase ProbeNames[i] ended, ProbeT[0] its start.

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// ProbePoints is the number of points in ProbeT.
const ProbePoints = 7

// ProbeNames names the phase that ends at each point.
var ProbeNames = [ProbePoints]string{"", "b64_header", "header", "b64_rest", "claims", "signature", "checks"}

// ProbeT holds the last Verify's instants.
var ProbeT [ProbePoints]int64

func probe(i int) { ProbeT[i] = nanotime() }
