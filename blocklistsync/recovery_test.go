package blocklistsync

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// outage simulates worker VMs ticking against a revocation source that goes away and comes
// back, on the rig's fake clock, at a 10 ms resolution.
type outage struct {
	t          *testing.T
	r          *rig
	vms        []*vm
	phase      []time.Duration // each VM's tick phase
	nextTick   []time.Time
	dead       []bool
	down       func(at time.Time) bool
	blackhole  bool          // a down source swallows the connection until the timeout
	answerTime time.Duration // how long an up source takes to answer
	sentAt     map[*call]time.Time
	starts     []time.Time // every poll's start
}

const simStep = 10 * time.Millisecond

func newOutage(t *testing.T, r *rig, n int, down func(time.Time) bool, blackhole bool) *outage {
	o := &outage{t: t, r: r, down: down, blackhole: blackhole, answerTime: 50 * time.Millisecond, sentAt: map[*call]time.Time{}}
	for i := range n {
		v := r.vm(uint64(i+1), "jtiguard.")
		o.vms = append(o.vms, v)
		o.phase = append(o.phase, time.Duration(i)*v.sync.TickPeriod()/time.Duration(n))
		o.nextTick = append(o.nextTick, r.now.Add(o.phase[i]))
		o.dead = append(o.dead, false)
	}
	return o
}

// step advances the clock by simStep: VMs whose tick is due tick, and the source answers
// the callouts whose answer is due.
func (o *outage) step() {
	o.r.advance(simStep)
	now := o.r.now
	for i, v := range o.vms {
		if !o.dead[i] && !now.Before(o.nextTick[i]) {
			calls := len(v.host.calls)
			v.sync.Tick()
			if len(v.host.calls) > calls {
				c := v.host.calls[len(v.host.calls)-1]
				o.sentAt[c] = now
				o.starts = append(o.starts, now)
			}
			o.nextTick[i] = o.nextTick[i].Add(v.sync.TickPeriod())
		}
		if len(v.host.calls) == 0 || o.dead[i] {
			continue
		}
		c := v.host.calls[len(v.host.calls)-1]
		if c.done {
			continue
		}
		sent := o.sentAt[c]
		switch {
		case o.down(sent) && o.blackhole:
			if now.Sub(sent) >= o.r.cfg.Timeout.D() {
				v.host.reset()
			}
		case o.down(sent):
			v.host.reset() // connection refused: at once
		case now.Sub(sent) >= o.answerTime:
			v.host.answer(200, jsonHeaders, snapshotBody("v1", "x"))
		}
	}
}

// usable is what a worker's request would see: a list, fresh within max_staleness.
func (o *outage) usable() bool {
	snap, freshAt, err := o.vms[0].reader.Refresh()
	return err == nil && snap != nil && o.r.now.Sub(freshAt) <= o.r.maxStaleness
}

// TestRecoveryAfterOutageWithinBound is issue 10's outage: while the list is unusable the
// lease holder retries at least once per interval, so once the source is back the list is
// usable again within max(interval, timeout) + one tick period + the answer time, whatever
// the outage's length, phase and kind (refused or black-holed connections) and the jitter;
// within lease_ttl + one tick + the answer time if the lease holder died meanwhile.
func TestRecoveryAfterOutageWithinBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		outage    time.Duration
		blackhole bool
		noList    bool // the source is down from the start: no list at all
		holderDie bool
	}{
		{"43s refused", 43 * time.Second, false, false, false},
		{"43s black-holed", 43 * time.Second, true, false, false},
		{"12s refused", 12 * time.Second, false, false, false},
		{"3m black-holed", 3 * time.Minute, true, false, false},
		{"no list yet, 43s", 43 * time.Second, false, true, false},
		{"no list yet, 2m black-holed", 2 * time.Minute, true, true, false},
		{"43s, the lease holder dies", 43 * time.Second, true, false, true},
	} {
		for offset := time.Duration(0); offset < 5*time.Second; offset += 230 * time.Millisecond {
			t.Run(fmt.Sprintf("%s/offset=%s", tc.name, offset), func(t *testing.T) {
				r := newRig(t)
				r.cfg.Jitter = 0.1
				rng := rand.New(rand.NewPCG(uint64(offset), 7))
				r.rand = rng.Float64
				r.maxStaleness = 10 * time.Second
				start := r.now
				var downFrom time.Time
				if !tc.noList {
					downFrom = start.Add(20*time.Second + offset)
				}
				back := downFrom.Add(tc.outage)
				if tc.noList {
					back = start.Add(tc.outage + offset)
				}
				o := newOutage(t, r, 2, func(at time.Time) bool { return !at.Before(downFrom) && at.Before(back) }, tc.blackhole)
				for r.now.Before(back) {
					o.step()
					if tc.holderDie && !r.now.Before(back.Add(-time.Second)) && !o.dead[0] && !o.dead[1] {
						// The lease holder dies just before the source comes back: the worst case.
						for i, v := range o.vms {
							if l, _ := parseLease(mustGet(t, r.store, KeysFor("jtiguard.").Lease)); l.holder == v.sync.o.HolderID {
								o.dead[i] = true
							}
						}
					}
				}
				if o.usable() {
					t.Fatal("the list is still usable after the outage: the scenario tests nothing")
				}
				cfg := r.cfg
				period := o.vms[0].sync.TickPeriod()
				bound := max(cfg.Interval.D(), cfg.Timeout.D()) + period + o.answerTime + simStep
				if tc.holderDie {
					bound = cfg.LeaseTTL.D() + period + o.answerTime + simStep
				}
				for !o.usable() {
					if r.now.Sub(back) > bound {
						t.Fatalf("still unusable %s after the source came back; bound %s", r.now.Sub(back), bound)
					}
					o.step()
				}
				t.Logf("usable %s after the source came back (bound %s)", r.now.Sub(back), bound)
			})
		}
	}
}

// TestRetriesWhileUnusableAreSpacedByTheInterval: the rule that shortens the backoff never
// hammers the source: while the list is unusable, polls start between interval×(1−jitter)
// and interval + one tick apart; while it is usable, the backoff stands.
func TestRetriesWhileUnusableAreSpacedByTheInterval(t *testing.T) {
	r := newRig(t)
	r.cfg.Jitter = 0.1
	r.rand = rand.New(rand.NewPCG(1, 2)).Float64
	r.maxStaleness = 30 * time.Second
	start := r.now
	downFrom := start.Add(10 * time.Second)
	o := newOutage(t, r, 1, func(at time.Time) bool { return !at.Before(downFrom) }, false)
	for r.now.Before(downFrom.Add(5 * time.Minute)) {
		o.step()
	}
	interval, period := r.cfg.Interval.D(), o.vms[0].sync.TickPeriod()
	staleAt := time.Time{}
	var usableGaps, unusableGaps int
	for i := 1; i < len(o.starts); i++ {
		gap := o.starts[i].Sub(o.starts[i-1])
		if o.starts[i-1].Before(downFrom) {
			continue
		}
		// The list was last synced before downFrom; it is unusable from then + max_staleness.
		if staleAt.IsZero() {
			staleAt = o.starts[0]
			for _, s := range o.starts {
				if s.Before(downFrom) {
					staleAt = s
				}
			}
			staleAt = staleAt.Add(o.answerTime + r.maxStaleness)
		}
		if !o.starts[i-1].Before(staleAt) {
			unusableGaps++
			if gap > interval+period || float64(gap) < float64(interval)*(1-r.cfg.Jitter)-float64(period) {
				t.Fatalf("poll %d: %s after the previous while the list was unusable; want about one interval", i, gap)
			}
		} else {
			usableGaps++
		}
	}
	if unusableGaps < 40 || usableGaps > 4 {
		t.Fatalf("%d polls while usable (backoff), %d while unusable; want few, then one per interval", usableGaps, unusableGaps)
	}
}
