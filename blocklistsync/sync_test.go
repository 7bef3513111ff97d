package blocklistsync

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/internal/sharedtest"
)

// fakeHost plays Envoy for one worker VM: it records callouts and lets the test answer them.
type fakeHost struct {
	t        *testing.T
	metrics  *fakeMetrics
	calls    []*call
	resp     response
	dispatch error
	logs     []string
	levels   []abi.LogLevel // of each log
}

// logged returns the logs at level that contain substr.
func (h *fakeHost) logged(level abi.LogLevel, substr string) []string {
	var out []string
	for i, l := range h.logs {
		if h.levels[i] == level && strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

type call struct {
	cluster string
	headers [][2]string
	timeout uint32
	cb      func(int, int, int)
	done    bool
}

type response struct {
	headers [][2]string
	body    []byte
}

func (c *call) header(name string) string { return header(c.headers, name) }

type fakeMetrics struct {
	mu     sync.Mutex
	values map[string]int64
}

func (m *fakeMetrics) get(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.values["jtiguard."+name]
}

type fakeCounter struct {
	m    *fakeMetrics
	name string
}

func (c fakeCounter) Increment(d uint64) {
	c.m.mu.Lock()
	c.m.values[c.name] += int64(d)
	c.m.mu.Unlock()
}
func (c fakeCounter) Set(v int64) {
	c.m.mu.Lock()
	c.m.values[c.name] = v
	c.m.mu.Unlock()
}

func (h *fakeHost) DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeout uint32, cb func(int, int, int)) (uint32, error) {
	if h.dispatch != nil {
		return 0, h.dispatch
	}
	h.calls = append(h.calls, &call{cluster: cluster, headers: headers, timeout: timeout, cb: cb})
	return uint32(len(h.calls)), nil
}
func (h *fakeHost) GetHTTPCallResponseHeaders() ([][2]string, error) { return h.resp.headers, nil }
func (h *fakeHost) GetHTTPCallResponseBody(start, max int) ([]byte, error) {
	return h.resp.body[start:min(len(h.resp.body), start+max)], nil
}
func (h *fakeHost) Log(level abi.LogLevel, msg string) {
	h.logs = append(h.logs, msg)
	h.levels = append(h.levels, level)
}
func (h *fakeHost) DefineCounter(name string) abi.Counter {
	return fakeCounter{h.metrics, name}
}
func (h *fakeHost) DefineGauge(name string) abi.Gauge { return fakeCounter{h.metrics, name} }

// answer delivers a reply to the last callout, as Envoy does on the VM that made it.
func (h *fakeHost) answer(status int, headers [][2]string, body string) {
	h.t.Helper()
	c := h.pending()
	h.resp = response{headers: append([][2]string{{":status", strconv.Itoa(status)}}, headers...), body: []byte(body)}
	c.done = true
	c.cb(len(h.resp.headers), len(body), 0)
}

// reset delivers what Envoy delivers on a reset or timeout: no headers, no body.
func (h *fakeHost) reset() {
	h.t.Helper()
	c := h.pending()
	h.resp = response{}
	c.done = true
	c.cb(0, 0, 0)
}

func (h *fakeHost) pending() *call {
	h.t.Helper()
	if len(h.calls) == 0 || h.calls[len(h.calls)-1].done {
		h.t.Fatalf("no callout pending (%d made)", len(h.calls))
	}
	return h.calls[len(h.calls)-1]
}

// rig is one test world: a shared store, a clock, and worker VMs.
type rig struct {
	t       *testing.T
	store   *sharedtest.Store
	now     time.Time
	metrics *fakeMetrics
	cfg     Config
	// byIssuer and maxStaleness are the filter's settings that the syncer is told.
	byIssuer     bool
	maxStaleness time.Duration
	rand         func() float64 // jitter draws; nil: math/rand
}

type vm struct {
	host   *fakeHost
	sync   *Syncer
	reader *Reader
}

func newRig(t *testing.T) *rig {
	cfg := DefaultConfig()
	cfg.Headers = map[string]string{"Authorization": "Bearer feed-secret"}
	cfg.Jitter = 0
	// The tests of this file are of the plain poll once per interval (the long poll off, as
	// for a source that ignores wait); watch_test.go turns it on.
	cfg.Watch.Wait = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, store: sharedtest.New(), now: time.Unix(1_700_000_000, 0), metrics: &fakeMetrics{values: map[string]int64{}}, cfg: cfg}
}

func (r *rig) clock() time.Time { return r.now }

func (r *rig) vm(id uint64, prefix string) *vm {
	h := &fakeHost{t: r.t, metrics: r.metrics}
	keys := KeysFor(prefix)
	s := NewSyncer(r.cfg, SyncOptions{Keys: keys, Store: r.store, Host: h, Now: r.clock, HolderID: id, MetricsPrefix: "jtiguard.",
		KeyedByIssuer: r.byIssuer, MaxStaleness: r.maxStaleness, Rand: r.rand})
	return &vm{host: h, sync: s, reader: NewReader(r.store, keys, ReaderOptions{KeyedByIssuer: r.byIssuer})}
}

func (r *rig) advance(d time.Duration) { r.now = r.now.Add(d) }

func (v *vm) has(t *testing.T, jti string, at time.Time) bool {
	t.Helper()
	snap, _, err := v.reader.Refresh()
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	return snap.Revoked(snap.Hasher().TokenKey("", jti), uint32(at.Unix()))
}

const jsonCT = "application/json"

func snapshotBody(version string, jtis ...string) string {
	var items []string
	for _, j := range jtis {
		items = append(items, fmt.Sprintf(`{"jti":%q,"exp":1800000000}`, j))
	}
	return fmt.Sprintf(`{"kind":"snapshot","version":%q,"entries":[%s]}`, version, strings.Join(items, ","))
}

func TestFullDeltaAndNotModifiedFlow(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	c := a.host.pending()
	for _, want := range [][2]string{{":method", "GET"}, {":path", "/v1/revocations"}, {":authority", "revocation-source"}, {"authorization", "Bearer feed-secret"}} {
		if got := c.header(want[0]); got != want[1] {
			t.Fatalf("first poll header %s = %q; want %q", want[0], got, want[1])
		}
	}
	if c.cluster != "revocation_source" || c.timeout != 2000 || c.header("if-none-match") != "" {
		t.Fatalf("first poll = cluster %q timeout %d if-none-match %q", c.cluster, c.timeout, c.header("if-none-match"))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a", "b"))
	if !a.has(t, "a", r.now) || !a.has(t, "b", r.now) || a.has(t, "c", r.now) {
		t.Fatal("snapshot not applied")
	}
	gen1, _, _ := r.store.GetSharedData(KeysFor("jtiguard.").Generation)

	// Not due yet: no poll.
	r.advance(r.cfg.Interval.D() - time.Millisecond)
	a.sync.Tick()
	if len(a.host.calls) != 1 {
		t.Fatalf("polled before the interval: %d calls", len(a.host.calls))
	}
	r.advance(time.Millisecond)
	a.sync.Tick()
	c = a.host.pending()
	if c.header(":path") != "/v1/revocations?since=v1" || c.header("if-none-match") != `"v1"` {
		t.Fatalf("second poll path %q if-none-match %q", c.header(":path"), c.header("if-none-match"))
	}
	a.host.answer(304, nil, "")
	g, _ := ParseGeneration(mustGet(t, r.store, KeysFor("jtiguard.").Generation))
	g1, _ := ParseGeneration(gen1)
	if g.Number != g1.Number || !g.LastSuccess.Equal(r.now) {
		t.Fatalf("after 304: generation %d (was %d), last success %v; want same number, %v", g.Number, g1.Number, g.LastSuccess, r.now)
	}
	if r.metrics.get("sync.not_modified") != 1 {
		t.Fatalf("not_modified = %d; want 1", r.metrics.get("sync.not_modified"))
	}

	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}},
		`{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c","exp":1800000000}],"removed":[{"jti":"a"}]}`)
	if a.has(t, "a", r.now) || !a.has(t, "b", r.now) || !a.has(t, "c", r.now) {
		t.Fatal("delta not applied")
	}
	if v := a.reader.Snapshot().Version; v != "v2" {
		t.Fatalf("version after delta = %q; want v2", v)
	}
	if got := r.metrics.get("blocklist.entries"); got != 2 {
		t.Fatalf("entries gauge = %d; want 2", got)
	}
}

func mustGet(t *testing.T, s SharedData, key string) []byte {
	t.Helper()
	v, _, err := s.GetSharedData(key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return v
}

func TestDeltaWithForeignBaseForcesResync(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}, {"etag", `"v1"`}}, snapshotBody("v1", "a"))
	r.advance(r.cfg.Interval.D())
	a.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}},
		`{"kind":"delta","base":"v0","version":"v9","added":[{"jti":"x"}],"removed":[]}`)
	if a.has(t, "x", r.now) || !a.has(t, "a", r.now) {
		t.Fatal("a delta on a foreign base changed the list")
	}
	if r.metrics.get("sync.resyncs") != 1 {
		t.Fatalf("resyncs = %d; want 1", r.metrics.get("sync.resyncs"))
	}
	a.sync.Tick() // resync is due at once
	c := a.host.pending()
	if c.header(":path") != "/v1/revocations" || c.header("if-none-match") != "" {
		t.Fatalf("resync poll path %q if-none-match %q; want a plain full request", c.header(":path"), c.header("if-none-match"))
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v9", "x"))
	if !a.has(t, "x", r.now) || a.has(t, "a", r.now) {
		t.Fatal("resync snapshot not applied")
	}
}

func TestFailuresKeepTheListAndBackOff(t *testing.T) {
	var many []string
	for i := 0; i < 40; i++ {
		many = append(many, fmt.Sprintf("%060d", i))
	}
	huge := snapshotBody("big", many...) // about 3 KiB
	tests := []struct {
		name    string
		fail    func(v *vm)
		reject  bool
		maxBody int
	}{
		{"reset", func(v *vm) { v.host.reset() }, false, 0},
		{"status 500", func(v *vm) { v.host.answer(500, nil, "oops") }, false, 0},
		{"status 503 from router", func(v *vm) { v.host.answer(503, nil, "no healthy upstream") }, false, 0},
		{"status 404", func(v *vm) { v.host.answer(404, nil, "") }, false, 0},
		{"malformed json", func(v *vm) { v.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"entries":[`) }, true, 0},
		{"mistyped json", func(v *vm) { v.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"entries":[{"jti":1}]}`) }, true, 0},
		{"oversized body", func(v *vm) { v.host.answer(200, [][2]string{{"content-type", jsonCT}}, huge) }, true, 1024},
		{"unknown kind", func(v *vm) { v.host.answer(200, [][2]string{{"content-type", jsonCT}}, `{"kind":"x"}`) }, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.maxBody != 0 {
				r.cfg.MaxBodyBytes = tt.maxBody
			}
			a := r.vm(1, "jtiguard.")
			a.sync.Tick()
			a.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v1", "keep"))
			before := mustGet(t, r.store, KeysFor("jtiguard.").Snapshot)

			interval := r.cfg.Interval.D()
			due := r.now.Add(interval)
			for n := 1; n <= 5; n++ {
				r.now = due
				calls := len(a.host.calls)
				a.sync.Tick()
				if len(a.host.calls) != calls+1 {
					t.Fatalf("failure %d: no poll when due", n)
				}
				tt.fail(a)
				if got := mustGet(t, r.store, KeysFor("jtiguard.").Snapshot); string(got) != string(before) {
					t.Fatalf("failure %d changed the shared list", n)
				}
				if !a.has(t, "keep", r.now) {
					t.Fatalf("failure %d lost an entry", n)
				}
				// Poll n failed: the retry waits interval × 2^(n-1), capped at max_backoff.
				backoff := min(interval<<(n-1), r.cfg.MaxBackoff.D())
				due = r.now.Add(backoff)
				r.now = due.Add(-time.Millisecond)
				a.sync.Tick()
				if len(a.host.calls) != calls+1 {
					t.Fatalf("failure %d: retried before the backoff of %s", n, backoff)
				}
			}
			if got := r.metrics.get("sync.failures"); got != 5 {
				t.Fatalf("failures metric = %d; want 5", got)
			}
			wantRejected := int64(0)
			if tt.reject {
				wantRejected = 5
			}
			if got := r.metrics.get("sync.rejected"); got != wantRejected {
				t.Fatalf("rejected metric = %d; want %d", got, wantRejected)
			}
			// The source recovers: the next poll succeeds and the backoff resets.
			r.advance(r.cfg.MaxBackoff.D())
			a.sync.Tick()
			a.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v2", "fresh"))
			if !a.has(t, "fresh", r.now) {
				t.Fatal("list not updated after recovery")
			}
			r.advance(interval)
			calls := len(a.host.calls)
			a.sync.Tick()
			if len(a.host.calls) != calls+1 {
				t.Fatal("backoff not reset after a success")
			}
		})
	}
}

func TestDispatchFailureBacksOff(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.host.dispatch = types.ErrorStatusBadArgument // unknown cluster
	a.sync.Tick()
	if r.metrics.get("sync.failures") != 1 || r.metrics.get("sync.attempts") != 1 {
		t.Fatalf("failures %d attempts %d; want 1, 1", r.metrics.get("sync.failures"), r.metrics.get("sync.attempts"))
	}
	a.sync.Tick()
	if r.metrics.get("sync.attempts") != 1 {
		t.Fatal("retried a failed dispatch at once")
	}
}

func TestOneCalloutPerIntervalAcrossVMsAndTakeover(t *testing.T) {
	r := newRig(t)
	vms := []*vm{r.vm(1, "jtiguard."), r.vm(2, "jtiguard."), r.vm(3, "jtiguard.")}
	total := func() int {
		n := 0
		for _, v := range vms {
			n += len(v.host.calls)
		}
		return n
	}
	holder := func() *vm {
		for _, v := range vms {
			if len(v.host.calls) > 0 && !v.host.calls[len(v.host.calls)-1].done {
				return v
			}
		}
		t.Fatal("no VM polled")
		return nil
	}
	tickAll := func(skip *vm) {
		for _, v := range vms {
			if v != skip {
				v.sync.Tick()
			}
		}
	}
	tickAll(nil)
	if total() != 1 {
		t.Fatalf("%d callouts on the first tick; want 1", total())
	}
	h := holder()
	h.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v1", "a"))
	// Ten intervals of ticks at the tick period: exactly one callout per interval.
	period := vms[0].sync.TickPeriod()
	for i := 0; i < 10; i++ {
		for elapsed := time.Duration(0); elapsed < r.cfg.Interval.D(); elapsed += period {
			r.advance(period)
			tickAll(nil)
			for _, v := range vms {
				if len(v.host.calls) > 0 && !v.host.calls[len(v.host.calls)-1].done {
					v.host.answer(304, nil, "")
				}
			}
		}
	}
	if got := total(); got != 11 {
		t.Fatalf("%d callouts in 10 intervals after the first; want 11 in all", got)
	}
	if len(h.host.calls) != 11 {
		t.Fatalf("the holder made %d of 11 callouts; the lease moved without cause", len(h.host.calls))
	}

	// The holder stops ticking (dead or stalled): another VM takes over after the lease TTL.
	before := total()
	var taker *vm
	for elapsed := time.Duration(0); elapsed <= r.cfg.LeaseTTL.D()+r.cfg.Interval.D(); elapsed += period {
		r.advance(period)
		tickAll(h)
		for _, v := range vms {
			if v != h && len(v.host.calls) > 0 && !v.host.calls[len(v.host.calls)-1].done {
				taker = v
				v.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v2", "after-takeover"))
			}
		}
		if taker != nil {
			break
		}
	}
	if taker == nil {
		t.Fatal("no VM took over after the lease expired")
	}
	if total() != before+1 {
		t.Fatalf("%d callouts during takeover; want 1", total()-before)
	}
	for _, v := range vms {
		if !v.has(t, "after-takeover", r.now) {
			t.Fatal("a VM does not see the list written by the new holder")
		}
	}
}

// TestRevocationVisibleToEveryVMWithinOneInterval is the sync issue's done criterion, natively:
// a jti revoked at the source is seen by every worker VM at most one interval (plus the
// callout) later.
func TestRevocationVisibleToEveryVMWithinOneInterval(t *testing.T) {
	r := newRig(t)
	vms := []*vm{r.vm(1, "jtiguard."), r.vm(2, "jtiguard."), r.vm(3, "jtiguard."), r.vm(4, "jtiguard.")}
	source := []string{"old"}
	serve := func() {
		for _, v := range vms {
			if len(v.host.calls) > 0 && !v.host.calls[len(v.host.calls)-1].done {
				v.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody(fmt.Sprint(len(source)), source...))
			}
		}
	}
	for _, v := range vms {
		v.sync.Tick()
	}
	serve()
	source = append(source, "revoked-now") // revoked at the source right after a poll
	revokedAt := r.now
	period := vms[0].sync.TickPeriod()
	for r.now.Sub(revokedAt) <= r.cfg.Interval.D() {
		r.advance(period)
		for _, v := range vms {
			v.sync.Tick()
		}
		serve()
	}
	for i, v := range vms {
		if !v.has(t, "revoked-now", r.now) {
			t.Fatalf("VM %d does not see the revocation %s after it", i, r.now.Sub(revokedAt))
		}
	}
}

func TestExpiredEntriesAreDropped(t *testing.T) {
	r := newRig(t)
	a := r.vm(1, "jtiguard.")
	a.sync.Tick()
	soon := r.now.Add(time.Minute).Unix()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}},
		fmt.Sprintf(`{"kind":"snapshot","version":"v1","entries":[{"jti":"short","exp":%d},{"jti":"long","exp":1800000000}]}`, soon))
	a.reader.Refresh()
	if a.reader.Snapshot().Len() != 2 {
		t.Fatal("setup")
	}
	// Past the expiry, 304s alone eventually compact the list.
	for i := 0; i < 200 && a.reader.Snapshot().Len() != 1; i++ {
		r.advance(r.cfg.Interval.D())
		a.sync.Tick()
		a.host.answer(304, nil, "")
		a.reader.Refresh()
	}
	if n := a.reader.Snapshot().Len(); n != 1 {
		t.Fatalf("entries after expiry = %d; want 1", n)
	}
	if !a.has(t, "long", r.now) || a.has(t, "short", r.now) {
		t.Fatal("wrong entry dropped")
	}
}

func TestPrefixIsolation(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1, "one."), r.vm(2, "two.")
	a.sync.Tick()
	b.sync.Tick()
	if len(a.host.calls) != 1 || len(b.host.calls) != 1 {
		t.Fatal("each prefix needs its own lease holder")
	}
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("1", "only-one"))
	b.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("1", "only-two"))
	if !a.has(t, "only-one", r.now) || a.has(t, "only-two", r.now) || !b.has(t, "only-two", r.now) || b.has(t, "only-one", r.now) {
		t.Fatal("lists leak across prefixes")
	}
	for _, k := range r.store.Keys() {
		if !strings.HasPrefix(k, "one.") && !strings.HasPrefix(k, "two.") {
			t.Fatalf("key %q outside the prefixes", k)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(c *Config) {
			if c.MaxShrink != 0.5 || c.RefuseShrink {
				t.Fatalf("shrink defaults = %g, %v; want 0.5, warn only", c.MaxShrink, c.RefuseShrink)
			}
		}, ""},
		{"no cluster disables sync", func(c *Config) { c.Cluster = ""; c.Authority = "" }, ""},
		{"bad path", func(c *Config) { c.Path = "v1" }, "sync.path"},
		{"bad authority", func(c *Config) { c.Authority = "" }, "sync.authority"},
		{"pseudo header", func(c *Config) { c.Headers = map[string]string{":path": "/x"} }, "sync.headers"},
		{"if-none-match header", func(c *Config) { c.Headers = map[string]string{"If-None-Match": "x"} }, "sync.headers"},
		{"interval too short", func(c *Config) { c.Interval = Duration(time.Millisecond) }, "sync.interval"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "sync.timeout"},
		{"tiny body", func(c *Config) { c.MaxBodyBytes = 10 }, "sync.max_body_bytes"},
		{"no entries", func(c *Config) { c.MaxEntries = 0 }, "sync.max_entries"},
		{"jitter", func(c *Config) { c.Jitter = 0.9 }, "sync.jitter"},
		{"short lease", func(c *Config) { c.LeaseTTL = Duration(6 * time.Second) }, "sync.lease_ttl"},
		{"short backoff cap", func(c *Config) { c.MaxBackoff = Duration(time.Second) }, "sync.max_backoff"},
		{"max_shrink 1 turns the guard off", func(c *Config) { c.MaxShrink = 1; c.RefuseShrink = true }, ""},
		{"max_shrink 0", func(c *Config) { c.MaxShrink = 0 }, "sync.max_shrink: must be a fraction above 0 and at most 1 (1 turns the guard off), got 0"},
		{"max_shrink above 1", func(c *Config) { c.MaxShrink = 1.5 }, "sync.max_shrink: must be a fraction above 0 and at most 1 (1 turns the guard off), got 1.5"},
		{"max_shrink negative", func(c *Config) { c.MaxShrink = -0.1 }, "got -0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				if c.LeaseTTL.D() != 3*c.Interval.D() {
					t.Fatalf("lease_ttl default = %s; want 3 intervals", c.LeaseTTL.D())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v; want an error naming %s", err, tt.want)
			}
		})
	}
}

// TestTakeoverKeepsScheduleAndBackoff: the schedule and the failure count live in the lease, so
// a VM taking over from a dead holder neither polls early nor forgets the backoff.
func TestTakeoverKeepsScheduleAndBackoff(t *testing.T) {
	r := newRig(t)
	r.cfg.MaxBackoff = Duration(10 * time.Minute)
	a, b := r.vm(1, "jtiguard."), r.vm(2, "jtiguard.")
	interval := r.cfg.Interval.D()
	a.sync.Tick()
	b.sync.Tick()
	a.host.answer(200, [][2]string{{"content-type", jsonCT}}, snapshotBody("v1", "x"))
	// Three failures in a row on A: the next poll is due 4 intervals (20 s) after the third.
	due := r.now.Add(interval)
	for n := 1; n <= 3; n++ {
		r.now = due
		a.sync.Tick()
		b.sync.Tick()
		a.host.answer(500, nil, "")
		due = r.now.Add(interval << (n - 1))
	}
	// A dies now. Its lease (15 s) runs out before the next poll is due (20 s).
	diedAt := r.now
	var polledAt time.Time
	for r.now.Before(diedAt.Add(time.Minute)) && polledAt.IsZero() {
		r.advance(b.sync.TickPeriod())
		b.sync.Tick()
		if len(b.host.calls) > 0 {
			polledAt = r.now
		}
	}
	if polledAt.IsZero() {
		t.Fatal("B never took over")
	}
	if polledAt.Before(due) {
		t.Fatalf("B polled %s after A died; the schedule said %s", polledAt.Sub(diedAt), due.Sub(diedAt))
	}
	// B inherits three failures: one more makes the wait 8 intervals, not 1.
	b.host.answer(500, nil, "")
	failedAt := r.now
	r.now = failedAt.Add(8*interval - time.Millisecond)
	b.sync.Tick()
	if len(b.host.calls) != 1 {
		t.Fatal("B forgot the backoff it inherited")
	}
	r.now = failedAt.Add(8 * interval)
	b.sync.Tick()
	if len(b.host.calls) != 2 {
		t.Fatal("B did not poll when the inherited backoff ran out")
	}
}
