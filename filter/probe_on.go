//go:build reqprobe

package filter

import (
	"runtime"
	"slices"
	"strconv"
	"strings"
	_ "unsafe" // for go:linkname

	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// A module built with -tags reqprobe times the phases of every request that verifies a
// token (a cache miss) with the runtime's monotonic clock, and every probeBatch such
// requests logs each phase's median in ns as a warning ("reqprobe ..."): where the time of a
// cold verification goes, measured inside the module in the engine that runs it
// (e2e's BenchmarkColdAB prints it). A reading costs one host call (clock_time_get), logged
// as "clock": each phase's median includes one. Without the tag, probe compiles to nothing.

//go:linkname nanotime runtime.nanotime
func nanotime() int64

var pointNames = [numPoints]string{"", "headers", "scan", "route", "list", "cache_get", "peek", "new_entry", "put",
	"keys", "revoked", "pre_verify", "verify", "put_verified", "decided", "responded"}

const probeBatch = 2000

var probes struct {
	t         [numPoints]int64
	phases    [numPoints + jwtverify.ProbePoints][probeBatch]int64
	n         int
	clockCost int64
}

func probe(i int) {
	if !hot.running {
		probes.t[i] = nanotime()
	}
}

// probeEnd ends a request's readings: kept when the request verified a token.
func probeEnd() {
	p := &probes
	defer func() { p.t = [numPoints]int64{} }()
	if p.t[ptVerify] == 0 {
		return
	}
	prev := p.t[ptStart]
	for i := ptStart + 1; i < numPoints; i++ {
		if p.t[i] != 0 {
			p.phases[i][p.n] = p.t[i] - prev
			prev = p.t[i]
		}
	}
	for i := 1; i < jwtverify.ProbePoints; i++ {
		p.phases[numPoints+i][p.n] = jwtverify.ProbeT[i] - jwtverify.ProbeT[i-1]
	}
	if p.n++; p.n < probeBatch {
		return
	}
	if p.clockCost == 0 {
		t0 := nanotime()
		for range 1000 {
			nanotime()
		}
		p.clockCost = (nanotime() - t0) / 1000
	}
	var b strings.Builder
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.WriteString("reqprobe cold n=" + strconv.Itoa(probeBatch) + " heap=" + strconv.FormatUint(ms.HeapAlloc>>20, 10) + "MiB gcs=" +
		strconv.FormatUint(uint64(ms.NumGC), 10) + " median ns: clock=" + strconv.FormatInt(p.clockCost, 10))
	median := func(s []int64) string {
		slices.Sort(s)
		return strconv.FormatInt(s[len(s)/2], 10)
	}
	for i := ptStart + 1; i < numPoints; i++ {
		b.WriteString(" " + pointNames[i] + "=" + median(p.phases[i][:]))
	}
	for i := 1; i < jwtverify.ProbePoints; i++ {
		b.WriteString(" verify." + jwtverify.ProbeNames[i] + "=" + median(p.phases[numPoints+i][:]))
	}
	abi.Log(abi.LogLevelWarn, b.String())
	p.phases, p.n = [numPoints + jwtverify.ProbePoints][probeBatch]int64{}, 0
}
