//go:build reqprobe

package filter

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/internal/words"
)

// With -tags reqprobe, every hotEvery'th request that verified nothing (no token, or a cache
// hit) also times the pieces of its own path by repetition, hotReps times each, reading the
// runtime's clock twice per piece: what a piece costs, without a clock call inside every
// reading. Every hotBatch samples of a path, the medians (ns per repetition) are logged as a
// warning ("reqprobe hot ..."), which e2e's BenchmarkFloor writes under its table. The pieces
// run the real code on the request's own headers: the repetitions find what the request
// itself found (the same cache entry). A piece timed alone runs warm; the "lean-X" pieces
// (the hit's calls in order, less X) say what X adds among the others. docs/benchmarks.md,
// "The floor under a request", has the numbers.
const (
	hotEvery = 200
	hotReps  = 100
	hotBatch = 25
)

var hotNames = [...]string{"decide", "scan", "route", "clock", "list", "identity", "validate", "cache_verified",
	"decide+respond", "discover", "select", "runs(token)", "scanRun(token)", "hash(payload)", "cache_get", "revoked",
	"verified", "decideRequest", "scan+route", "forgetLast", "lean", "scan2", "route2", "cold_decide", "cold_scan", "clock_pair",
	"lean-clock", "lean-scan", "lean-identity", "lean-validate", "lean-list", "time.Sub", "refresh"}

var hot struct {
	seen    int
	running bool                      // the cold probe's points are not read meanwhile
	samples [2][len(hotNames)][]int64 // [no token, cache hit], tenths of ns
}

// probeHot times the pieces of the request just decided (see above).
func probeHot(h *httpContext, headers [][2]string) {
	if probes.t[ptVerify] != 0 {
		return
	}
	if hot.seen++; hot.seen%hotEvery != 0 {
		return
	}
	p := h.plugin
	hot.running = true
	defer func() { hot.running = false }()
	path := 0
	timed := func(i int, f func()) {
		t0 := nanotime()
		for range hotReps {
			f()
		}
		hot.samples[path][i] = append(hot.samples[path][i], (nanotime()-t0)*10/hotReps)
	}
	// Once, first: a decide and a scan as the request met them, after the host's own code
	// ran, less a pair of clock readings.
	t0 := nanotime()
	p.decide(headers, nil, true)
	t1 := nanotime()
	res := p.scanner.Scan(headers, nil)
	t2 := nanotime()
	t3 := nanotime()
	if len(res.Candidates) > 0 {
		path = 1
	}
	hot.samples[path][23] = append(hot.samples[path][23], 10*(t1-t0-(t3-t2)))
	hot.samples[path][24] = append(hot.samples[path][24], 10*(t2-t1-(t3-t2)))
	hot.samples[path][25] = append(hot.samples[path][25], 10*(t3-t2))
	timed(0, func() { p.decide(headers, nil, true) })
	timed(1, func() { res = p.scanner.Scan(headers, nil) })
	pol, _ := p.routePolicy(headers)
	timed(2, func() {
		p.upstreamClaims(headers)
		pol, _ = p.routePolicy(headers)
		p.anySelected(res)
	})
	now := p.now()
	timed(3, func() { now = p.now() })
	p.reqNow = now
	snap, ok := p.usableList(now)
	timed(4, func() { snap, ok = p.usableList(now) })
	then := now.Add(-50 * time.Millisecond)
	var sink time.Duration
	timed(31, func() { sink += now.Sub(then) })
	timed(32, func() { p.reader.Refresh() })
	_ = sink
	if ok && path == 1 {
		notBefore := clampUnix(now.Unix() - p.leewaySeconds())
		timed(5, func() {
			for _, c := range res.Candidates {
				p.cache.identity(c, snap, p.scanner, p.cfg.KeyedByIssuer(), res.KnownOf(c)).revoked(snap, notBefore)
			}
		})
		timed(6, func() { p.validateSelected(res, now, pol, &p.val) })
		sel := &res.Selected[0]
		timed(7, func() { p.cache.verified(sel.Token, sel.Payload, now.UnixNano(), sel.Known) })
		timed(11, func() { p.scanner.ProbeRuns(sel.Token) })
		timed(12, func() { credentials.ProbeScanRun(sel.Token) })
		c := res.Candidates[0]
		timed(13, func() { words.Hash(c, p.cache.seed) })
		timed(14, func() { p.cache.get(c) })
		e := p.cache.get(c)
		timed(15, func() { e.id.revoked(snap, notBefore) })
		timed(16, func() { p.verified(sel, now) })
	}
	timed(17, func() { p.decideRequest(headers, nil, true) })
	timed(18, func() {
		res = p.scanner.Scan(headers, nil)
		p.upstreamClaims(headers)
		pol, _ = p.routePolicy(headers)
		p.anySelected(res)
	})
	timed(19, func() { p.cache.forgetLast() })
	timed(21, func() { res = p.scanner.Scan(headers, nil) })
	timed(22, func() {
		p.upstreamClaims(headers)
		pol, _ = p.routePolicy(headers)
		p.anySelected(res)
	})
	if path == 1 {
		timed(20, func() {
			p.cache.forgetLast()
			res = p.scanner.Scan(headers, nil)
			p.upstreamClaims(headers)
			pol, _ = p.routePolicy(headers)
			p.anySelected(res)
			now = p.now()
			p.reqNow = now
			snap, ok = p.usableList(now)
			notBefore := clampUnix(now.Unix() - p.leewaySeconds())
			for _, c := range res.Candidates {
				p.cache.identity(c, snap, p.scanner, p.cfg.KeyedByIssuer(), res.KnownOf(c)).revoked(snap, notBefore)
			}
			p.validateSelected(res, now, pol, &p.val)
			p.reqNow = time.Time{}
		})
		// lean less one piece each: what the piece adds among the others
		for j := range 5 {
			timed(26+j, func() {
				p.cache.forgetLast()
				if j != 1 {
					res = p.scanner.Scan(headers, nil)
				}
				p.upstreamClaims(headers)
				pol, _ = p.routePolicy(headers)
				p.anySelected(res)
				if j != 0 {
					now = p.now()
				}
				p.reqNow = now
				if j != 4 {
					snap, ok = p.usableList(now)
				}
				notBefore := clampUnix(now.Unix() - p.leewaySeconds())
				if j != 2 {
					for _, c := range res.Candidates {
						p.cache.identity(c, snap, p.scanner, p.cfg.KeyedByIssuer(), res.KnownOf(c)).revoked(snap, notBefore)
					}
				}
				if j != 3 {
					p.validateSelected(res, now, pol, &p.val)
				}
				p.reqNow = time.Time{}
			})
		}
	}
	timed(9, func() { p.scanner.ProbeDiscover(headers) })
	timed(10, func() { p.scanner.ProbeSelect(headers) })
	res = p.scanner.Scan(headers, nil)
	p.reqNow = time.Time{}
	timed(8, func() { h.respondTo(p.decide(headers, nil, true), headers) })
	if len(hot.samples[path][0]) < hotBatch {
		return
	}
	var b strings.Builder
	b.WriteString("reqprobe hot " + [2]string{"no_token", "cache_hit"}[path] + " n=" + strconv.Itoa(hotBatch) + " median ns:")
	for i, name := range hotNames {
		s := hot.samples[path][i]
		if len(s) == 0 {
			continue
		}
		slices.Sort(s)
		m := s[len(s)/2]
		b.WriteString(" " + name + "=" + strconv.FormatInt(m/10, 10) + "." + strconv.FormatInt(m%10, 10))
		hot.samples[path][i] = s[:0]
	}
	abi.Log(abi.LogLevelWarn, b.String())
}
