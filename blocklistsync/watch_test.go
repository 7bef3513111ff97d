package blocklistsync

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// watchRig is a rig with the long poll on at its default wait.
func watchRig(t *testing.T) *rig {
	r := newRig(t)
	r.cfg.Watch.Wait = Duration(defaultWatchWait)
	return r
}

// query returns a query parameter of the call's :path.
func (c *call) query(name string) string {
	_, q, _ := strings.Cut(c.header(":path"), "?")
	v, _ := url.ParseQuery(q)
	return v.Get(name)
}

// open returns the VM's callouts not answered yet.
func (v *vm) open() []*call {
	var out []*call
	for _, c := range v.host.calls {
		if !c.done {
			out = append(out, c)
		}
	}
	return out
}

// answerCall delivers a reply to a given callout (not necessarily the last).
func (h *fakeHost) answerCall(c *call, status int, headers [][2]string, body string) {
	h.resp = response{headers: append([][2]string{{":status", strconv.Itoa(status)}}, headers...), body: []byte(body)}
	c.done = true
	c.cb(len(h.resp.headers), len(body), 0)
}

func deltaBody(base, version string, added ...string) string {
	var items []string
	for _, j := range added {
		items = append(items, fmt.Sprintf(`{"jti":%q,"exp":1800000000}`, j))
	}
	return fmt.Sprintf(`{"kind":"delta","base":%q,"version":%q,"added":[%s],"removed":[]}`, base, version, strings.Join(items, ","))
}

// TestWatchAnsweredEarlyWithAChange: once a versioned list is held, the poll asks the source
// to hold it (since= and wait=, the callout's timeout covering the wait plus sync.timeout);
// the source answers it with a change seconds later; the change is published, and the next
// long poll goes out at once from the reply, without waiting for a tick.
func TestWatchAnsweredEarlyWithAChange(t *testing.T) {
	r := watchRig(t)
	a, b := r.vm(1, "jtiguard."), r.vm(2, "jtiguard.")
	a.sync.Tick()
	first := a.host.pending()
	if first.query("wait") != "" || first.query("since") != "" || first.timeout != 2000 {
		t.Fatalf("first poll %q timeout %d: want a plain poll (no list to wait on) with the 2s timeout", first.header(":path"), first.timeout)
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a"))
	if len(a.host.calls) != 2 {
		t.Fatalf("%d callouts after the first list; want the long poll sent at once from the reply", len(a.host.calls))
	}
	w := a.host.pending()
	if w.query("since") != "v1" || w.query("wait") != "25s" || w.header("if-none-match") != `"v1"` || w.timeout != 27000 {
		t.Fatalf("long poll %q if-none-match %q timeout %d; want since=v1&wait=25s, \"v1\", 27000 ms", w.header(":path"), w.header("if-none-match"), w.timeout)
	}
	if got := r.metrics.get("sync.watches"); got != 1 {
		t.Fatalf("sync.watches = %d; want 1", got)
	}
	// Held for 3 s, ticking: nothing more is sent.
	for range 30 {
		r.advance(100 * time.Millisecond)
		a.sync.Tick()
		b.sync.Tick()
	}
	if len(a.host.calls) != 2 || len(b.host.calls) != 0 {
		t.Fatalf("callouts while the long poll is held: %d on the holder, %d on the other VM; want 2, 0", len(a.host.calls), len(b.host.calls))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v2"`}}, deltaBody("v1", "v2", "b"))
	if !b.has(t, "b", r.now) {
		t.Fatal("the change is not in shared data right after the long poll's answer")
	}
	next := a.host.pending()
	if len(a.host.calls) != 3 || next.query("since") != "v2" || next.query("wait") != "25s" {
		t.Fatalf("after the change: %d callouts, last %q; want the next long poll from v2 at once", len(a.host.calls), next.header(":path"))
	}
}

// TestWatchNotModifiedAfterTheWait: a long poll held for its whole wait (longer than the
// lease TTL) ends in a 304: the list's age is refreshed and the next long poll goes out at
// once. Throughout, the holder renews its lease on every tick, so the other VMs, ticking,
// never take the lease or poll.
func TestWatchNotModifiedAfterTheWait(t *testing.T) {
	r := watchRig(t)
	vms := []*vm{r.vm(1, "jtiguard."), r.vm(2, "jtiguard."), r.vm(3, "jtiguard.")}
	vms[0].sync.Tick()
	vms[0].host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	if r.cfg.Watch.Wait.D() <= r.cfg.LeaseTTL.D() {
		t.Fatalf("wait %s not longer than lease_ttl %s: the test proves nothing", r.cfg.Watch.Wait.D(), r.cfg.LeaseTTL.D())
	}
	period := vms[0].sync.TickPeriod()
	for round := range 4 {
		start := r.now
		for r.now.Sub(start) < 24*time.Second {
			r.advance(period)
			for _, v := range vms {
				v.sync.Tick()
			}
		}
		for i, v := range vms[1:] {
			if len(v.host.calls) != 0 {
				t.Fatalf("round %d: VM %d polled while the holder's long poll was held", round, i+2)
			}
		}
		if n := len(vms[0].open()); n != 1 {
			t.Fatalf("round %d: the holder has %d callouts open; want its one long poll", round, n)
		}
		vms[0].host.answer(304, [][2]string{{"etag", `"v1"`}}, "")
		g, _ := ParseGeneration(mustGet(t, r.store, KeysFor("jtiguard.").Generation))
		if !g.LastSuccess.Equal(r.now) {
			t.Fatalf("round %d: last success %v after the 304; want %v", round, g.LastSuccess, r.now)
		}
		if c := vms[0].host.pending(); c.query("wait") != "25s" {
			t.Fatalf("round %d: after the 304 the next poll is %q; want a long poll at once", round, c.header(":path"))
		}
	}
	if got, want := r.metrics.get("sync.not_modified"), int64(4); got != want {
		t.Fatalf("not_modified = %d; want %d", got, want)
	}
}

// TestWatchSourceCappingTheWait: a source that holds polls for less than the wait asked for
// (its own cap, 8 s of 25 s) but longer than the interval is watched without a gap: each 304
// is followed at once by the next long poll.
func TestWatchSourceCappingTheWait(t *testing.T) {
	r := watchRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	for round := range 5 {
		for range 80 {
			r.advance(100 * time.Millisecond)
			a.sync.Tick()
		}
		a.host.answer(304, nil, "")
		if len(a.open()) != 1 {
			t.Fatalf("round %d: no long poll at once after a 304 held for 8s", round)
		}
	}
}

// TestWatchSourceIgnoringWait: a source that answers at once whatever the wait costs what a
// plain poll costs: after a 304 or an unchanged 200 the next poll is due one interval later;
// only a change is followed at once, and even when every answer is a change at most
// watchBurst polls start at once, then one per interval / watchBurst.
func TestWatchSourceIgnoringWait(t *testing.T) {
	r := watchRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	interval := r.cfg.Interval.D()
	period := a.sync.TickPeriod()

	// Answered at once: 304, then an empty delta (same version).
	sent := r.now
	for _, answer := range []func(){
		func() { a.host.answer(304, nil, "") },
		func() { a.host.answer(200, jsonHeaders, deltaBody("v1", "v1")) },
	} {
		r.advance(10 * time.Millisecond)
		answer()
		if n := len(a.open()); n != 0 {
			t.Fatalf("a poll went out at once after an answer without a change")
		}
		for len(a.open()) == 0 {
			r.advance(period)
			a.sync.Tick()
		}
		if gap := r.now.Sub(sent); gap < interval || gap > interval+period {
			t.Fatalf("next poll %s after the start of one answered at once without a change; want one interval (%s) to one tick more", gap, interval)
		}
		sent = r.now
	}

	// A change on every answer, at once: bounded to watchBurst polls per interval.
	starts := []time.Time{}
	version := 1
	for end := r.now.Add(10 * interval); r.now.Before(end); {
		if len(a.open()) == 1 {
			if len(starts) > 20*watchBurst {
				t.Fatalf("%d polls by %s: the burst is not bounded", len(starts), r.now.Sub(end.Add(-10*interval)))
			}
			starts = append(starts, r.now)
			version++
			a.host.answer(200, jsonHeaders, deltaBody("v"+strconv.Itoa(version-1), "v"+strconv.Itoa(version), "j"+strconv.Itoa(version)))
			continue
		}
		r.advance(period)
		a.sync.Tick()
	}
	// A burst of watchBurst, then watchBurst per interval: never more than 2 × watchBurst
	// in one interval.
	for i := 2 * watchBurst; i < len(starts); i++ {
		if d := starts[i].Sub(starts[i-2*watchBurst]); d < interval {
			t.Fatalf("polls %d to %d within %s: more than %d in one interval", i-2*watchBurst, i, d, 2*watchBurst)
		}
	}
	if n, want := len(starts), 11*watchBurst; n > want+1 || n < want-watchBurst {
		t.Fatalf("%d polls answered with a change at once in 10 intervals; want about %d (a burst, then %d per interval)", n, want, watchBurst)
	}
}

// TestWatchFailuresBackOffWithPlainPolls: a failed long poll backs off as any failed poll;
// the retry is a plain poll (answered at once by a source that is back); its success brings
// the long poll back at once. A 4xx to a long poll says how to turn it off.
func TestWatchFailuresBackOffWithPlainPolls(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(h *fakeHost)
		log  string
	}{
		{"reset", func(h *fakeHost) { h.reset() }, "no response"},
		{"503", func(h *fakeHost) { h.answer(503, nil, "") }, `status "503"`},
		{"400 (wait refused)", func(h *fakeHost) { h.answer(400, nil, "unknown parameter wait") }, `needs sync.watch.wait "0s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := watchRig(t)
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
			r.advance(3 * time.Second)
			tc.fail(a.host)
			if len(a.host.logged(abi.LogLevelWarn, tc.log)) != 1 {
				t.Fatalf("logs %q; want one warning with %q", a.host.logs, tc.log)
			}
			failedAt := r.now
			for len(a.open()) == 0 {
				r.advance(a.sync.TickPeriod())
				a.sync.Tick()
			}
			if gap := r.now.Sub(failedAt); gap < r.cfg.Interval.D() {
				t.Fatalf("retried %s after the failure; want the backoff (one interval)", gap)
			}
			retry := a.host.pending()
			if retry.query("wait") != "" || retry.query("since") != "v1" || retry.timeout != 2000 {
				t.Fatalf("retry %q timeout %d; want a plain poll since v1 with the 2s timeout", retry.header(":path"), retry.timeout)
			}
			a.host.answer(304, nil, "")
			if c := a.host.pending(); c.query("wait") != "25s" {
				t.Fatalf("after the recovery the next poll is %q; want the long poll at once", c.header(":path"))
			}
			if r.metrics.get("sync.failures") != 1 {
				t.Fatalf("failures = %d; want 1", r.metrics.get("sync.failures"))
			}
		})
	}
}

// TestWatchLostReplyIsGivenUpAndIgnored: a long poll the host never answers is given up after
// its timeout plus an interval and replaced; when the old reply turns up after all, it is
// ignored: a VM never has two polls in play.
func TestWatchLostReplyIsGivenUpAndIgnored(t *testing.T) {
	r := watchRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
	lost, sent := a.host.pending(), r.now
	limit := time.Duration(lost.timeout)*time.Millisecond + r.cfg.Interval.D()
	for r.now.Add(a.sync.TickPeriod()).Sub(sent) <= limit {
		r.advance(a.sync.TickPeriod())
		a.sync.Tick()
		if len(a.host.calls) != 2 {
			t.Fatalf("a second poll before the first was given up (%s)", r.now.Sub(sent))
		}
	}
	r.advance(a.sync.TickPeriod())
	a.sync.Tick()
	if len(a.host.calls) != 3 || len(a.host.logged(abi.LogLevelWarn, "no reply to the last poll")) != 1 {
		t.Fatalf("%d callouts, logs %q; want the lost one given up and one new poll", len(a.host.calls), a.host.logs)
	}
	gen := mustGet(t, r.store, KeysFor("jtiguard.").Generation)
	a.host.answerCall(lost, 200, jsonHeaders, deltaBody("v1", "v2", "late"))
	if string(mustGet(t, r.store, KeysFor("jtiguard.").Generation)) != string(gen) || len(a.host.calls) != 3 {
		t.Fatal("the late reply to a poll given up on was applied or sent another poll")
	}
}

// TestWatchWaitKeepsTheListFresh: with a max_staleness, the wait sent is at most half of it,
// so a held long poll ends (in a 304 that refreshes the list's age) well before the list
// would go stale; a max_staleness too tight for a useful wait makes the polls plain ones.
func TestWatchWaitKeepsTheListFresh(t *testing.T) {
	for _, tc := range []struct {
		staleness time.Duration
		want      string
	}{
		{0, "25s"},
		{60 * time.Second, "25s"},
		{10 * time.Second, "5s"},
		{time.Second, "500ms"},
		{150 * time.Millisecond, ""},
	} {
		t.Run(tc.staleness.String(), func(t *testing.T) {
			r := watchRig(t)
			r.maxStaleness = tc.staleness
			r.cfg.Interval = Duration(100 * time.Millisecond)
			r.cfg.LeaseTTL = Duration(3 * time.Second)
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, snapshotBody("v1", "a"))
			for len(a.open()) == 0 {
				r.advance(a.sync.TickPeriod())
				a.sync.Tick()
			}
			if got := a.host.pending().query("wait"); got != tc.want {
				t.Fatalf("wait sent with max_staleness %s: %q; want %q", tc.staleness, got, tc.want)
			}
			if tc.want == "" {
				return
			}
			// Held for its whole wait, then 304: the same wait again, at once.
			r.advance(mustDuration(t, tc.want))
			a.host.answer(304, nil, "")
			if got := a.host.pending().query("wait"); got != tc.want {
				t.Fatalf("after a held 304 with max_staleness %s: next poll %q; want wait=%s at once", tc.staleness, a.host.pending().header(":path"), tc.want)
			}
		})
	}
}

// TestWatchConfig: sync.watch.wait is on by default (25s), 0s turns it off, and a bad value
// is refused naming the field.
func TestWatchConfig(t *testing.T) {
	if d := DefaultConfig(); d.Watch.Wait.D() != 25*time.Second {
		t.Fatalf("default watch.wait = %s; want 25s", d.Watch.Wait.D())
	}
	for _, tc := range []struct {
		wait string
		ok   bool
	}{
		{"0s", true}, {"1s", true}, {"25s", true}, {"5m", true},
		{"500ms", false}, {"-1s", false}, {"6m", false},
	} {
		c := DefaultConfig()
		c.Watch.Wait = Duration(mustDuration(t, tc.wait))
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Fatalf("watch.wait %s: error %v; want ok=%v", tc.wait, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "sync.watch.wait") {
			t.Fatalf("watch.wait %s: error %q does not name the field", tc.wait, err)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// watchSim is a revocation source that serves the long poll, and worker VMs ticking against
// it, on the rig's fake clock at simStep resolution.
type watchSim struct {
	t          *testing.T
	r          *rig
	vms        []*vm
	nextTick   []time.Time
	dead       []bool
	version    int
	revoked    []string
	changedAt  time.Time
	ignoreWait bool // answer at once, as a source without the long poll
	answerTime time.Duration
	down       func(time.Time) bool
	blackhole  bool
	calls      map[*call]*simCall
	starts     []time.Time // every poll's start
}

type simCall struct {
	vm      int
	sent    time.Time
	since   string
	wait    time.Duration
	readyAt time.Time
	broken  bool // the source was down while the call was in progress
}

func newWatchSim(t *testing.T, r *rig, n int) *watchSim {
	s := &watchSim{t: t, r: r, answerTime: 30 * time.Millisecond, calls: map[*call]*simCall{},
		down: func(time.Time) bool { return false }, version: 1}
	for i := range n {
		v := r.vm(uint64(i+1), "jtiguard.")
		s.vms = append(s.vms, v)
		s.nextTick = append(s.nextTick, r.now.Add(time.Duration(i)*v.sync.TickPeriod()/time.Duration(n)))
		s.dead = append(s.dead, false)
	}
	return s
}

func (s *watchSim) revoke(jti string) {
	s.version++
	s.revoked = append(s.revoked, jti)
	s.changedAt = s.r.now
}

// track records the callouts a VM made since the last look (at once, from a reply, or on a tick).
func (s *watchSim) track(i int) {
	v := s.vms[i]
	for _, c := range v.host.calls {
		if _, seen := s.calls[c]; seen || c.done {
			continue
		}
		wait, _ := time.ParseDuration(c.query("wait"))
		s.calls[c] = &simCall{vm: i, sent: s.r.now, since: c.query("since"), wait: wait}
		s.starts = append(s.starts, s.r.now)
	}
	if n := len(v.open()); n > 1 {
		s.t.Fatalf("VM %d has %d polls open", i, n)
	}
}

func (s *watchSim) step() {
	s.r.advance(simStep)
	now := s.r.now
	for i, v := range s.vms {
		if s.dead[i] {
			continue
		}
		if !now.Before(s.nextTick[i]) {
			v.sync.Tick()
			s.nextTick[i] = s.nextTick[i].Add(v.sync.TickPeriod())
		}
		s.track(i)
		for _, c := range v.open() {
			sc := s.calls[c]
			timeout := time.Duration(c.timeout) * time.Millisecond
			if s.down(now) {
				sc.broken = true
			}
			if sc.broken {
				// Refused: reset at once; black-holed: nothing until the callout's timeout.
				if !s.blackhole || now.Sub(sc.sent) >= timeout {
					c.done = true
					v.host.resp = response{}
					c.cb(0, 0, 0)
					s.track(i)
				}
				continue
			}
			current := "v" + strconv.Itoa(s.version)
			if sc.readyAt.IsZero() {
				switch {
				case sc.since != current || sc.wait == 0 || s.ignoreWait:
					sc.readyAt = now.Add(s.answerTime)
				case now.Sub(sc.sent) >= sc.wait*15/16:
					sc.readyAt = now
				}
			}
			if sc.readyAt.IsZero() || now.Before(sc.readyAt) {
				continue
			}
			if sc.since == current {
				v.host.answerCall(c, 304, nil, "")
			} else {
				v.host.answerCall(c, 200, jsonHeaders, snapshotBody(current, s.revoked...))
			}
			s.track(i)
		}
	}
	// At most one VM polls at a time, but for a dead holder's poll left open.
	open := 0
	for i, v := range s.vms {
		if !s.dead[i] {
			open += len(v.open())
		}
	}
	if open > 1 {
		s.t.Fatalf("%d live VMs have a poll open at %s", open, now)
	}
}

// seen reports whether every VM's reader sees jti.
func (s *watchSim) seen(jti string) bool {
	for _, v := range s.vms {
		if !v.has(s.t, jti, s.r.now) {
			return false
		}
	}
	return true
}

// runRevocations revokes n jtis at random gaps in [minGap, maxGap) and returns how long each
// took to be in every VM's view.
func (s *watchSim) runRevocations(rng *rand.Rand, n int, minGap, maxGap time.Duration) []time.Duration {
	var lat []time.Duration
	for i := range n {
		gap := minGap + time.Duration(rng.Int64N(int64(maxGap-minGap)))
		for end := s.r.now.Add(gap); s.r.now.Before(end); {
			s.step()
		}
		jti := fmt.Sprintf("w-%d-%d", s.version, i)
		s.revoke(jti)
		at := s.r.now
		for !s.seen(jti) {
			if s.r.now.Sub(at) > 10*time.Minute {
				s.t.Fatalf("revocation %d not seen after 10 minutes", i)
			}
			s.step()
		}
		lat = append(lat, s.r.now.Sub(at))
	}
	return lat
}

// TestWatchSimulation: three VMs against a source that holds long polls, on a fake clock,
// revocations at random times. Each reaches every VM as soon as the source answers (within
// its answer time), the holder never changes while it lives (its long polls outlast the
// lease TTL), one VM polls at a time and never two polls at once, and a quiet list costs one
// poll per wait. Against a source that ignores wait, a revocation takes up to an interval,
// and the polls are those of the plain poll plus one per change.
func TestWatchSimulation(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignoreWait=%v", ignore), func(t *testing.T) {
			r := watchRig(t)
			r.cfg.Jitter = 0.1
			rng := rand.New(rand.NewPCG(3, 4))
			r.rand = rng.Float64
			s := newWatchSim(t, r, 3)
			s.ignoreWait = ignore
			for s.r.now.Sub(time.Unix(1_700_000_000, 0)) < time.Second {
				s.step()
			}
			start, starts := r.now, len(s.starts)
			lat := s.runRevocations(rng, 60, 700*time.Millisecond, 40*time.Second)
			elapsed := r.now.Sub(start)
			polls := len(s.starts) - starts
			maxLat := slicesMax(lat)
			interval, period := r.cfg.Interval.D(), s.vms[0].sync.TickPeriod()
			if !ignore {
				if bound := s.answerTime + 2*simStep; maxLat > bound {
					t.Fatalf("a revocation took %s to reach every VM; bound %s (the source's answer time)", maxLat, bound)
				}
				// One poll per change, and one per wait (15/16 of it at least) while quiet.
				if want := 60 + int(elapsed/(r.cfg.Watch.Wait.D()*15/16)) + 1; polls > want {
					t.Fatalf("%d polls in %s with 60 changes; want at most %d", polls, elapsed, want)
				}
				for i, v := range s.vms[1:] {
					if len(v.host.calls) != 0 {
						t.Fatalf("VM %d polled: the lease moved from a live holder", i+2)
					}
				}
			} else {
				if bound := interval + period + s.answerTime + 2*simStep; maxLat > bound {
					t.Fatalf("a revocation took %s to reach every VM; bound %s (one interval)", maxLat, bound)
				}
				if want := 2*60 + int(float64(elapsed)/(float64(interval)*(1-r.cfg.Jitter))) + 1; polls > want {
					t.Fatalf("%d polls in %s with 60 changes; want at most %d", polls, elapsed, want)
				}
			}
			t.Logf("%d revocations, %d polls in %s, slowest %s", len(lat), polls, elapsed.Round(time.Second), maxLat)
		})
	}
}

func slicesMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// TestWatchTakeoverWhenTheWatcherDies: the holder dies (stops ticking, its reply never
// delivered) with a long poll open; after the lease TTL another VM takes the lease, opens its
// own long poll, and revocations reach every VM again at once.
func TestWatchTakeoverWhenTheWatcherDies(t *testing.T) {
	r := watchRig(t)
	rng := rand.New(rand.NewPCG(5, 6))
	s := newWatchSim(t, r, 3)
	s.runRevocations(rng, 3, time.Second, 5*time.Second)
	s.dead[0] = true
	diedAt := r.now
	lat := s.runRevocations(rng, 1, time.Second, 2*time.Second)
	bound := r.cfg.LeaseTTL.D() + s.vms[1].sync.TickPeriod() + s.answerTime + 2*simStep
	if lat[0] > bound {
		t.Fatalf("the first revocation after the holder died (%s before it) took %s; bound %s", r.now.Add(-lat[0]).Sub(diedAt), lat[0], bound)
	}
	var taker *vm
	for _, v := range s.vms[1:] {
		if len(v.open()) == 1 {
			taker = v
		}
	}
	if taker == nil || taker.host.pending().query("wait") == "" {
		t.Fatal("no other VM holds a long poll after the takeover")
	}
	t.Logf("first revocation after the holder died: revoked %s after, seen %s later (bound %s)", r.now.Add(-lat[0]).Sub(diedAt), lat[0], bound)
	lat = s.runRevocations(rng, 10, 700*time.Millisecond, 30*time.Second)
	if m := slicesMax(lat); m > s.answerTime+2*simStep {
		t.Fatalf("after the takeover a revocation took %s; want the source's answer time", m)
	}
}

// TestWatchRecoveryAfterOutageWithinBound is TestRecoveryAfterOutageWithinBound with the long
// poll on, and the same bound: max(interval, timeout) + one tick + the answer time once the
// source is back. A long poll in flight when the source goes away fails at once (refused) or
// at its timeout (black-holed: wait + timeout, and the wait is at most max_staleness / 2, so
// with timeout ≤ max_staleness / 2 that is before the list can go stale); every retry after
// a failure is a plain poll.
func TestWatchRecoveryAfterOutageWithinBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		outage    time.Duration
		blackhole bool
	}{
		{"43s refused", 43 * time.Second, false},
		{"43s black-holed", 43 * time.Second, true},
		{"12s black-holed", 12 * time.Second, true},
		{"3m refused", 3 * time.Minute, false},
	} {
		for offset := time.Duration(0); offset < 5*time.Second; offset += 370 * time.Millisecond {
			t.Run(fmt.Sprintf("%s/offset=%s", tc.name, offset), func(t *testing.T) {
				r := watchRig(t)
				r.cfg.Jitter = 0.1
				r.rand = rand.New(rand.NewPCG(uint64(offset), 9)).Float64
				r.maxStaleness = 10 * time.Second
				downFrom := r.now.Add(20*time.Second + offset)
				back := downFrom.Add(tc.outage)
				s := newWatchSim(t, r, 2)
				s.blackhole = tc.blackhole
				s.down = func(at time.Time) bool { return !at.Before(downFrom) && at.Before(back) }
				for r.now.Before(back) {
					s.step()
				}
				usable := func() bool {
					snap, freshAt, err := s.vms[1].reader.Refresh()
					return err == nil && snap != nil && r.now.Sub(freshAt) <= r.maxStaleness
				}
				if usable() {
					t.Fatal("the list is still usable after the outage: the scenario tests nothing")
				}
				bound := max(r.cfg.Interval.D(), r.cfg.Timeout.D()) + s.vms[0].sync.TickPeriod() + s.answerTime + simStep
				for !usable() {
					if r.now.Sub(back) > bound {
						t.Fatalf("still unusable %s after the source came back; bound %s", r.now.Sub(back), bound)
					}
					s.step()
				}
				t.Logf("usable %s after the source came back (bound %s)", r.now.Sub(back), bound)
			})
		}
	}
}
