package statuslist

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/internal/sharedtest"
)

// env is a proxy with several worker VMs on one shared-data store, an injected clock, and an
// issuer that answers the callouts.
type env struct {
	t       testing.TB
	store   *sharedtest.Store
	clk     *clock
	cfg     *Config
	metrics map[string]int64
	// serve answers a callout; nil answers 404.
	serve  func(c *call) reply
	vms    []*vm
	served []*call // every callout answered, in order
}

type call struct {
	vm      int
	cluster string
	headers [][2]string
	timeout uint32
	cb      func(int, int, int)
}

func (c *call) header(name string) string { return header(c.headers, name) }

type reply struct {
	status  int
	headers [][2]string
	body    string
	reset   bool // Envoy's answer to a reset or timeout: no headers, no body
}

// vm is one worker VM: a Checker and the host it talks to.
type vm struct {
	env     *env
	n       int
	c       *Checker
	pending []*call
	cur     reply
	logs    []string
}

func newEnv(t testing.TB, config string, workers int) *env {
	t.Helper()
	cfg, err := ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: sharedtest.New(), clk: newClock(), cfg: cfg, metrics: map[string]int64{}}
	for i := range workers {
		v := &vm{env: e, n: i}
		v.c = NewChecker(cfg, Options{
			Prefix: "jtiguard.", Store: e.store, Host: v, Now: e.clk.now, HolderID: uint64(i + 1),
			Rand: func() float64 { return 0 }, // no jitter: schedules are exact
		})
		e.vms = append(e.vms, v)
	}
	return e
}

func (v *vm) DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeout uint32, cb func(int, int, int)) (uint32, error) {
	v.pending = append(v.pending, &call{vm: v.n, cluster: cluster, headers: headers, timeout: timeout, cb: cb})
	return uint32(len(v.pending)), nil
}
func (v *vm) GetHTTPCallResponseHeaders() ([][2]string, error) { return v.cur.headers, nil }
func (v *vm) GetHTTPCallResponseBody(start, max int) ([]byte, error) {
	return []byte(v.cur.body)[start:min(len(v.cur.body), start+max)], nil
}
func (v *vm) Log(_ abi.LogLevel, msg string)        { v.logs = append(v.logs, msg) }
func (v *vm) DefineCounter(name string) abi.Counter { return counter{v.env.metrics, name} }
func (v *vm) DefineGauge(name string) abi.Gauge     { return counter{v.env.metrics, name} }

type counter struct {
	m    map[string]int64
	name string
}

func (c counter) Increment(d uint64) { c.m[c.name] += int64(d) }
func (c counter) Set(v int64)        { c.m[c.name] = v }

func (e *env) metric(name string) int64 { return e.metrics["jtiguard.statuslist."+name] }

// tick ticks every VM, then answers every callout they made (Envoy answers on the VM that
// asked, in a later callback), repeatedly while answers make new callouts (redirects).
func (e *env) tick() {
	for _, v := range e.vms {
		v.c.Tick()
	}
	e.deliver()
}

func (e *env) deliver() {
	for range 10 {
		any := false
		for _, v := range e.vms {
			calls := v.pending
			v.pending = nil
			for _, c := range calls {
				any = true
				e.served = append(e.served, c)
				r := reply{status: 404}
				if e.serve != nil {
					r = e.serve(c)
				}
				if r.reset {
					v.cur = reply{}
					c.cb(0, 0, 0)
					continue
				}
				v.cur = r
				v.cur.headers = append([][2]string{{":status", strconv.Itoa(r.status)}}, r.headers...)
				c.cb(len(v.cur.headers), len(r.body), 0)
			}
		}
		if !any {
			return
		}
	}
	e.t.Fatal("callouts keep coming")
}

func (e *env) logs() string {
	var all []string
	for _, v := range e.vms {
		all = append(all, v.logs...)
	}
	return strings.Join(all, "\n")
}

// check asks VM n for uri's status at idx.
func (e *env) check(n int, uri string, idx uint64) (Status, error) {
	return e.vms[n].c.Check(uri, idx, e.clk.now())
}

// lists serves status list tokens from an issuer: path → the list and its claims.
type lists struct {
	is    *issuer
	clk   *clock
	byURI map[string]*served
}

type served struct {
	list List
	exp  time.Duration // from now at each fetch; 0: no exp
	ttl  int
	iat  time.Duration // offset of iat from now (default -1s)
}

func (l *lists) serve(host string) func(c *call) reply {
	return func(c *call) reply {
		uri := "https://" + host + c.header(":path")
		s := l.byURI[uri]
		if s == nil {
			return reply{status: 404}
		}
		var exp time.Time
		if s.exp != 0 {
			exp = l.clk.t.Add(s.exp)
		}
		iat := s.iat
		if iat == 0 {
			iat = -time.Second
		}
		return reply{status: 200, headers: [][2]string{{"content-type", "application/statuslist+jwt"}},
			body: l.is.listToken(uri, s.list, l.clk.t.Add(iat), exp, s.ttl)}
	}
}

const (
	uri1 = "https://issuer.example/lists/1"
	uri2 = "https://issuer.example/lists/2"
)

func exactConfig(is *issuer, extra string) string {
	return `{"keys":{"algorithms":["EdDSA"],"jwks":` + string(is.jwks()) + `},` + extra + `"lists":[
		{"uri":"` + uri1 + `","cluster":"issuer","authority":"issuer.example","path":"/lists/1"},
		{"uri_prefix":"https://issuer.example/lists/","cluster":"issuer","authority":"issuer.example","path":"/lists/"}]}`
}

// TestFetchOnceShareEverywhere: the exact uri is fetched at the first tick by one VM only,
// with the callout the configuration names; every VM then answers from shared data.
func TestFetchOnceShareEverywhere(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 4)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 2, Valid, Invalid, Suspended, 3), ttl: 300, exp: time.Hour}}}
	e.serve = l.serve("issuer.example")

	for n := range e.vms {
		if _, err := e.check(n, uri1, 0); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("vm %d before any tick: %v; want unavailable", n, err)
		}
	}
	e.tick()
	if len(e.served) != 1 {
		t.Fatalf("%d callouts; want 1 (one VM fetches)", len(e.served))
	}
	c := e.served[0]
	if c.cluster != "issuer" || c.header(":path") != "/lists/1" || c.header(":authority") != "issuer.example" ||
		c.header(":method") != "GET" || c.header("accept") != "application/statuslist+jwt" || c.timeout != 5000 {
		t.Fatalf("callout %+v", c)
	}
	e.tick() // the others read the new generation on their next tick
	want := []Status{Valid, Invalid, Suspended, 3}
	for n := range e.vms {
		for i, w := range want {
			if s, err := e.check(n, uri1, uint64(i)); err != nil || s != w {
				t.Fatalf("vm %d idx %d = %v, %v; want %v", n, i, s, err, w)
			}
		}
		if _, err := e.check(n, uri1, 4); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("vm %d idx 4: %v; want out of range", n, err)
		}
	}
	if len(e.served) != 1 {
		t.Fatalf("%d callouts after the second tick; want still 1", len(e.served))
	}
	if got := e.metric("lists_published"); got != 1 {
		t.Fatalf("lists_published = %d", got)
	}
	for n := range e.vms {
		e.vms[n].c.flush()
	}
	if e.metric("checks.invalid") != 4 || e.metric("checks.out_of_range") != 4 || e.metric("checks.other") != 4 {
		t.Fatalf("metrics %v", e.metrics)
	}
	if !strings.Contains(e.logs(), `status list "`+uri1+`": first list received: 2 bits per token, 4 indices`) {
		t.Fatalf("logs:\n%s", e.logs())
	}
}

// TestRefreshSchedule: a list is fetched again after its ttl clamped to [min_ttl, max_ttl],
// and before its exp; an unchanged list only moves the generation record's times.
func TestRefreshSchedule(t *testing.T) {
	is := newIssuer(t, 1)
	cases := []struct {
		name string
		ttl  int
		exp  time.Duration
		want time.Duration // until the second fetch
	}{
		{"ttl within bounds", 300, 0, 300 * time.Second},
		{"ttl below min_ttl", 5, 0, time.Minute},
		{"ttl above max_ttl", 100000, 0, time.Hour},
		{"no ttl: max_ttl", 0, 0, time.Hour},
		{"exp sooner than ttl: at 4/5 of its life", 3000, 10 * time.Minute, 8 * time.Minute},
		{"exp very soon: at 4/5, below min_ttl", 3000, 10 * time.Second, 8 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, exactConfig(is, ""), 2)
			l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid, Invalid), ttl: tc.ttl, exp: tc.exp}}}
			e.serve = l.serve("issuer.example")
			e.tick()
			start := e.clk.t
			step := time.Second
			for e.clk.t.Sub(start) < 2*time.Hour && len(e.served) < 2 {
				e.clk.advance(step)
				e.tick()
			}
			if got := e.clk.t.Sub(start); len(e.served) != 2 || got != tc.want {
				t.Fatalf("second fetch after %s (%d callouts); want %s", got, len(e.served), tc.want)
			}
		})
	}
}

// TestUnchangedListTouchesOnlyTheRecord: a refetch that returns the same list rewrites only the
// generation record (workers copy no list again) and keeps the list fresh for max_age.
func TestUnchangedListTouchesOnlyTheRecord(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, `"max_age":"2h",`), 2)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Invalid), ttl: 600}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	e.tick()
	k := keysFor("jtiguard.", 0)
	list1, _, _ := e.store.GetSharedData(k.list)
	gen1, _, _ := e.store.GetSharedData(k.gen)
	for range 3 {
		e.clk.advance(10 * time.Minute)
		e.tick()
	}
	if len(e.served) != 4 {
		t.Fatalf("%d fetches; want 4", len(e.served))
	}
	list2, _, _ := e.store.GetSharedData(k.list)
	gen2, _, _ := e.store.GetSharedData(k.gen)
	if !bytes.Equal(list1, list2) {
		t.Fatal("the list record was rewritten for an unchanged list")
	}
	if bytes.Equal(gen1, gen2) {
		t.Fatal("the generation record was not touched")
	}
	g, _ := decodeGen(gen2)
	if g.generation != 1 || !g.fetched.Equal(e.clk.t.Truncate(time.Millisecond)) {
		t.Fatalf("generation %d fetched %v; want 1, %v", g.generation, g.fetched, e.clk.t)
	}
	// Two hours after the first fetch, the list is still usable: every fetch refreshed it.
	e.clk.advance(90 * time.Minute)
	e.serve = nil // the issuer is gone from now on
	if s, err := e.check(1, uri1, 0); err != nil || s != Invalid {
		t.Fatalf("after 2h: %v, %v", s, err)
	}
	if got := e.metric("lists_published"); got != 1 {
		t.Fatalf("lists_published = %d; want 1", got)
	}
}

// TestChangedListReachesEveryVM: a list that changes reaches every VM at its next tick.
func TestChangedListReachesEveryVM(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 3)
	s := &served{list: mustEncode(t, 1, Valid, Valid), ttl: 60}
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: s}}
	e.serve = l.serve("issuer.example")
	e.tick()
	e.tick()
	s.list = mustEncode(t, 1, Valid, Invalid) // revoked at the issuer
	e.clk.advance(time.Minute)
	e.tick() // fetched and published by the holder
	e.tick() // read by the others
	for n := range e.vms {
		if st, err := e.check(n, uri1, 1); err != nil || st != Invalid {
			t.Fatalf("vm %d: %v, %v; want INVALID", n, st, err)
		}
	}
}

// TestFailureKeepsLastGood: failed fetches of every kind keep the held list, back off, and a
// list past exp (plus the leeway, at least MinLeeway) or past max_age is unavailable.
func TestFailureKeepsLastGood(t *testing.T) {
	is := newIssuer(t, 1)
	other := newIssuer(t, 2)
	failures := []struct {
		name     string
		reply    func(good string) reply
		rejected bool
	}{
		{"404", func(string) reply { return reply{status: 404} }, false},
		{"503", func(string) reply { return reply{status: 503, body: "upstream connect error"} }, false},
		{"reset", func(string) reply { return reply{reset: true} }, false},
		{"not a token", func(string) reply { return reply{status: 200, body: "<html>"} }, true},
		{"signed by another key", func(string) reply {
			return reply{status: 200, body: other.listToken(uri1, mustEncode(t, 1, Valid), time.Unix(1_700_000_000, 0), time.Time{}, 0)}
		}, true},
		{"a CWT", func(string) reply {
			return reply{status: 200, headers: [][2]string{{"content-type", "application/statuslist+cwt"}}, body: "\xd2\x84"}
		}, true},
		{"gzip", func(good string) reply {
			return reply{status: 200, headers: [][2]string{{"content-encoding", "gzip"}}, body: good}
		}, true},
		{"too large", func(string) reply { return reply{status: 200, body: strings.Repeat("a", 2000)} }, true},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, exactConfig(is, `"max_body_bytes":1024,"max_age":"2h",`), 2)
			s := &served{list: mustEncode(t, 1, Invalid), ttl: 60, exp: 90 * time.Minute}
			l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: s}}
			good := l.serve("issuer.example")
			e.serve = good
			e.tick()
			e.tick()
			e.serve = func(c *call) reply { return f.reply(good(c).body) }
			fetchedAt := e.clk.t
			var fetches []time.Duration
			for e.clk.t.Sub(fetchedAt) < 100*time.Minute {
				e.clk.advance(time.Second)
				before := len(e.served)
				e.tick()
				if len(e.served) > before {
					fetches = append(fetches, e.clk.t.Sub(fetchedAt))
				}
				st, err := e.check(1, uri1, 0)
				usable := e.clk.t.Before(fetchedAt.Add(90*time.Minute + MinLeeway))
				if usable && (err != nil || st != Invalid) {
					t.Fatalf("at +%s: %v, %v; want the last good list (INVALID)", e.clk.t.Sub(fetchedAt), st, err)
				}
				if !usable && !errors.Is(err, ErrUnavailable) {
					t.Fatalf("at +%s, past exp: %v, %v; want unavailable", e.clk.t.Sub(fetchedAt), st, err)
				}
			}
			// Retries: after the ttl (60s), then 5s, 10s, 20s, ... up to max_backoff (5m); closer
			// to exp, halfway to it; once unusable, every 30s at most.
			want := []time.Duration{60, 65, 75, 95, 135, 215, 375, 675, 975, 1275}
			for i, w := range want {
				if i >= len(fetches) || fetches[i] != w*time.Second {
					t.Fatalf("fetches at %v; want them to start %v (seconds)", fetches, want)
				}
			}
			last := fetches[len(fetches)-1]
			if gap := last - fetches[len(fetches)-2]; gap > 30*time.Second {
				t.Fatalf("past exp, retries %s apart; want at most 30s", gap)
			}
			if f.rejected != (e.metric("tokens_rejected") > 0) {
				t.Fatalf("tokens_rejected = %d", e.metric("tokens_rejected"))
			}
			if !strings.Contains(e.logs(), "fetch failed") {
				t.Fatalf("no failure logged:\n%s", e.logs())
			}
			// The issuer comes back: the list is usable again after one retry.
			e.serve = good
			for range 31 {
				e.clk.advance(time.Second)
				e.tick()
			}
			if st, err := e.check(1, uri1, 0); err != nil || st != Invalid {
				t.Fatalf("after recovery: %v, %v", st, err)
			}
		})
	}
}

// TestMaxAge: without exp, a list not fetched successfully for max_age is unavailable.
func TestMaxAge(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, `"max_ttl":"10m","max_age":"1h",`), 1)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid), ttl: 600}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	e.serve = nil
	e.clk.advance(time.Hour)
	if _, err := e.check(0, uri1, 0); err != nil {
		t.Fatalf("at max_age: %v", err)
	}
	e.clk.advance(time.Millisecond)
	if _, err := e.check(0, uri1, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("past max_age: %v; want unavailable", err)
	}
}

// TestOlderListRefused: a list issued before the one held is not published while the held
// one is usable (a stale CDN copy must not undo a revocation).
func TestOlderListRefused(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 1)
	s := &served{list: mustEncode(t, 1, Invalid), ttl: 60}
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: s}}
	e.serve = l.serve("issuer.example")
	e.tick()
	s.list, s.iat = mustEncode(t, 1, Valid), -time.Hour
	e.clk.advance(time.Minute)
	e.tick()
	if st, err := e.check(0, uri1, 0); err != nil || st != Invalid {
		t.Fatalf("%v, %v; want the newer INVALID kept", st, err)
	}
	if !strings.Contains(e.logs(), "older than the one held") || e.metric("tokens_rejected") != 1 {
		t.Fatalf("logs:\n%s", e.logs())
	}
}

// TestPrefixDemand: a uri under a prefix is fetched once a token names it; a uri no entry
// allows is never fetched.
func TestPrefixDemand(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 2)
	const u = "https://issuer.example/lists/2025/7"
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid)}, u: {list: mustEncode(t, 8, 0, 0, 0, 200)}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	for _, bad := range []string{
		"https://evil.example/lists/1", "https://issuer.example/lists/../admin", "https://issuer.example/lists/a?b",
		"https://issuer.example/lists/%2e%2e/x", "https://issuer.example/lists", "https://issuer.example/lists/",
	} {
		if _, err := e.check(1, bad, 0); !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("%q: %v; want not allowed", bad, err)
		}
	}
	if _, err := e.check(1, u, 3); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first check: %v; want unavailable", err)
	}
	if e.vms[1].c.TickPeriod() != fastTick {
		t.Fatal("no fast ticks while a list is on its way")
	}
	e.tick()
	e.tick()
	for n := range e.vms {
		if st, err := e.check(n, u, 3); err != nil || st != 200 {
			t.Fatalf("vm %d: %v, %v", n, st, err)
		}
	}
	for _, c := range e.served {
		if p := c.header(":path"); p != "/lists/1" && p != "/lists/2025/7" {
			t.Fatalf("fetched %q", p)
		}
	}
	if len(e.served) != 2 {
		t.Fatalf("%d fetches; want 2", len(e.served))
	}
	e.clk.advance(startupWindow)
	if p := e.vms[0].c.TickPeriod(); p != slowTick {
		t.Fatalf("tick period %s once every list is held", p)
	}
}

// TestRedirects: a 3xx to a uri an entry allows is followed through that entry's cluster (the
// token's sub must still be the uri the token named); to any other uri, or in a loop, it is not.
func TestRedirects(t *testing.T) {
	is := newIssuer(t, 1)
	cfg := `{"keys":{"algorithms":["EdDSA"],"jwks":` + string(is.jwks()) + `},"lists":[
		{"uri":"` + uri1 + `","cluster":"issuer","authority":"issuer.example","path":"/lists/1"},
		{"uri_prefix":"https://cdn.example/mirror/","cluster":"cdn","authority":"cdn.example","path":"/m/"}]}`
	cases := []struct {
		name     string
		location string
		ok       bool
	}{
		{"absolute, allowed", "https://cdn.example/mirror/1", true},
		{"not allowed", "https://elsewhere.example/1", false},
		{"path-absolute on the same host, not allowed", "/other/1", false},
		{"relative", "other/1", false},
		{"loop", uri1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cfg, 1)
			body := is.listToken(uri1, mustEncode(t, 1, Invalid), e.clk.t, time.Time{}, 0)
			e.serve = func(c *call) reply {
				if c.cluster == "cdn" && c.header(":path") == "/m/1" && c.header(":authority") == "cdn.example" {
					return reply{status: 200, body: body}
				}
				return reply{status: 302, headers: [][2]string{{"location", tc.location}}}
			}
			e.tick()
			st, err := e.check(0, uri1, 0)
			if tc.ok != (err == nil && st == Invalid) {
				t.Fatalf("%v, %v (served %d)\n%s", st, err, len(e.served), e.logs())
			}
			if len(e.served) > 1+maxRedirects {
				t.Fatalf("%d callouts", len(e.served))
			}
		})
	}
}

// TestDirectoryBound: uris named by tokens take at most max_lists slots; a flood of uris
// never evicts a list in use, nor one being fetched, and never creates more shared-data keys.
func TestDirectoryBound(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, `{"max_lists":3,"keys":{"algorithms":["EdDSA"],"jwks":`+string(is.jwks())+`},"lists":[
		{"uri":"`+uri1+`","cluster":"issuer","authority":"issuer.example","path":"/lists/1"},
		{"uri_prefix":"https://issuer.example/lists/","cluster":"issuer","authority":"issuer.example","path":"/lists/"}]}`, 2)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Invalid)}, uri2: {list: mustEncode(t, 1, Invalid)}}}
	e.serve = l.serve("issuer.example")
	e.check(0, uri2, 0)
	e.tick()
	e.tick()
	if st, err := e.check(1, uri2, 0); err != nil || st != Invalid {
		t.Fatalf("uri2: %v, %v", st, err)
	}
	// A flood of made-up uris under the prefix: one slot is left for them.
	for round := range 20 {
		for i := range 50 {
			e.check(round%2, fmt.Sprintf("https://issuer.example/lists/junk-%d-%d", round, i), 0)
		}
		e.check(0, uri2, 0) // uri2 stays in use
		e.clk.advance(10 * time.Second)
		e.tick()
		for _, u := range []string{uri1, uri2} {
			if st, err := e.check(1, u, 0); err != nil || st != Invalid {
				t.Fatalf("round %d: %s: %v, %v", round, u, st, err)
			}
		}
	}
	if e.metric("directory_full") == 0 {
		t.Fatal("directory_full never counted")
	}
	keys := e.store.Keys()
	if len(keys) > 1+3*3 {
		t.Fatalf("%d shared-data keys: %v", len(keys), keys)
	}
	// Two pending maps of bounded size, whatever was asked.
	for _, v := range e.vms {
		if len(v.c.pending) > v.c.maxPending() {
			t.Fatalf("%d pending", len(v.c.pending))
		}
	}
	// Once nothing uses uri2 for evictIdle, a new uri may take its slot.
	e.clk.advance(evictIdle)
	const u3 = "https://issuer.example/lists/3"
	l.byURI[u3] = &served{list: mustEncode(t, 1, Valid, Invalid)}
	for range 5 {
		e.check(0, u3, 1)
		e.tick()
	}
	if st, err := e.check(0, u3, 1); err != nil || st != Invalid {
		t.Fatalf("u3 after uri2 went idle: %v, %v\n%s", st, err, e.logs())
	}
	if st, err := e.check(0, uri1, 0); err != nil || st != Invalid {
		t.Fatalf("the exact uri lost its slot: %v, %v", st, err)
	}
}

// TestSlotReuseAndKeyChange: records of another uri, or written under another key
// configuration, are never read as this list.
func TestSlotReuseAndKeyChange(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 1)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid)}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	if _, err := e.check(0, uri1, 0); err != nil {
		t.Fatal(err)
	}
	// A new configuration (another key) on a fresh VM with the same prefix: the old list is
	// not trusted; it fetches its own, which fails (the issuer signs with the old key).
	is2 := newIssuer(t, 2)
	cfg2, err := ParseConfig([]byte(exactConfig(is2, "")))
	if err != nil {
		t.Fatal(err)
	}
	v2 := &vm{env: e, n: 1}
	v2.c = NewChecker(cfg2, Options{Prefix: "jtiguard.", Store: e.store, Host: v2, Now: e.clk.now, HolderID: 99, Rand: func() float64 { return 0 }})
	e.vms = append(e.vms, v2)
	e.clk.advance(10 * time.Second) // the first VM's lease has expired
	e.vms[0].c.slots = nil          // the old VM is gone
	e.vms = e.vms[1:]
	e.tick()
	if _, err := v2.c.Check(uri1, 0, e.clk.t); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a list verified under other keys was used: %v", err)
	}
	if !strings.Contains(e.logs(), "Signature verification failed") {
		t.Fatalf("logs:\n%s", e.logs())
	}
}

// TestLeaseTakeover: when the VM holding a list's lease stops ticking, another takes over after
// the lease's TTL and keeps the schedule.
func TestLeaseTakeover(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 2)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid), ttl: 60}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	holder := e.served[0].vm
	dead := e.vms[holder]
	e.vms = append(e.vms[:holder:holder], e.vms[holder+1:]...)
	for range 70 {
		e.clk.advance(time.Second)
		e.tick()
	}
	if len(e.served) != 2 || e.served[1].vm == holder {
		t.Fatalf("callouts by %v; want a second one by the other VM", vmsOf(e.served))
	}
	_ = dead
}

func vmsOf(cs []*call) []int {
	var out []int
	for _, c := range cs {
		out = append(out, c.vm)
	}
	return out
}

// TestEvaluatePolicies: the verdict for every kind of reference under the policies.
func TestEvaluatePolicies(t *testing.T) {
	is := newIssuer(t, 1)
	ref := func(payload string) *Refs {
		var r Refs
		r.ReadJSON([]byte(payload))
		return &r
	}
	sl := func(idx int, uri string) string {
		return fmt.Sprintf(`{"status":{"status_list":{"idx":%d,"uri":%q}}}`, idx, uri)
	}
	two := func(a, b int) string {
		return fmt.Sprintf(`{"status":{"status_list":{"idx":%d,"uri":%q},"status_list":{"idx":%d,"uri":%q}}}`, a, uri1, b, uri1)
	}
	cases := []struct {
		policies string
		payload  string
		want     Verdict
	}{
		{"", sl(0, uri1), Verdict{}},
		{"", sl(1, uri1), Verdict{Action: Revoke}},
		{"", sl(2, uri1), Verdict{Action: Revoke}},
		{`"suspended":"deny",`, sl(2, uri1), Verdict{Deny, MsgSuspended}},
		{`"suspended":"allow",`, sl(2, uri1), Verdict{}},
		{"", sl(3, uri1), Verdict{Deny, MsgStatus}},
		{`"other_status":"revoked",`, sl(3, uri1), Verdict{Action: Revoke}},
		{`"other_status":"allow",`, sl(3, uri1), Verdict{}},
		{"", sl(9, uri1), Verdict{Deny, MsgOutOfRange}},
		{`"unknown_list":"allow",`, sl(9, uri1), Verdict{Deny, MsgOutOfRange}},
		{"", sl(0, "https://other.example/1"), Verdict{Deny, MsgNotAllowed}},
		{`"unknown_list":"allow",`, sl(0, "https://other.example/1"), Verdict{}},
		{`"unknown_list":"revoked",`, sl(0, "https://other.example/1"), Verdict{Action: Revoke}},
		{"", sl(0, uri2), Verdict{Action: Unavailable}},
		{"", `{"status":{"status_list":{"idx":"1","uri":"x"}}}`, Verdict{Deny, MsgMalformed}},
		{`"unknown_list":"allow",`, `{"status":{"status_list":{"idx":"1","uri":"x"}}}`, Verdict{}},
		{"", `{"status":{"status_list":{"idx":1,"idx":2,"idx":3,"uri":"a","uri":"b"}}}`, Verdict{Deny, MsgTooMany}},
		{"", `{"status":"active","jti":"x"}`, Verdict{}},
		// The strongest verdict of several references wins.
		{"", two(0, 1), Verdict{Action: Revoke}},
		{"", two(1, 3), Verdict{Action: Revoke}},
		{"", two(3, 0), Verdict{Deny, MsgStatus}},
		{"", `{"status":{"status_list":{"idx":1,"uri":"` + uri2 + `"},"status_list":{"idx":3,"uri":"` + uri1 + `"}}}`, Verdict{Deny, MsgStatus}},
		{"", `{"status":{"status_list":{"idx":0,"uri":"` + uri2 + `"},"status_list":{"idx":1,"uri":"` + uri1 + `"}}}`, Verdict{Action: Revoke}},
		{`"other_status":"allow",`, `{"status":{"status_list":{"idx":0,"uri":"` + uri2 + `"},"status_list":{"idx":3,"uri":"` + uri1 + `"}}}`, Verdict{Action: Unavailable}},
	}
	for _, tc := range cases {
		t.Run(tc.policies+tc.payload, func(t *testing.T) {
			e := newEnv(t, exactConfig(is, tc.policies), 1)
			l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 2, Valid, Invalid, Suspended, 3)}}}
			e.serve = l.serve("issuer.example")
			e.tick()
			if got := e.vms[0].c.Evaluate(ref(tc.payload), e.clk.t); got != tc.want {
				t.Fatalf("Evaluate = %+v; want %+v", got, tc.want)
			}
		})
	}
}

// TestCheckAllocatesNothing: the request path, for a held list, a list not allowed and one not
// yet held whose uri was seen before.
func TestCheckAllocatesNothing(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, ""), 1)
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Valid, Invalid)}}}
	e.serve = l.serve("issuer.example")
	e.tick()
	c := e.vms[0].c
	var held, notAllowed, pending Refs
	held.ReadJSON([]byte(`{"status":{"status_list":{"idx":1,"uri":"` + uri1 + `"}}}`))
	notAllowed.ReadJSON([]byte(`{"status":{"status_list":{"idx":1,"uri":"https://x.example/1"}}}`))
	pending.ReadJSON([]byte(`{"status":{"status_list":{"idx":1,"uri":"https://issuer.example/lists/9"}}}`))
	now := e.clk.t
	c.Evaluate(&pending, now)
	for name, r := range map[string]*Refs{"held": &held, "not allowed": &notAllowed, "pending": &pending} {
		if n := testing.AllocsPerRun(1000, func() { c.Evaluate(r, now) }); n != 0 {
			t.Errorf("%s: %v allocations per Evaluate", name, n)
		}
	}
}

// TestIssuerClockAhead: a list whose iat is a few seconds ahead of the proxy's clock (the
// issuer's clock runs ahead) is accepted, within MinLeeway; beyond it, refused.
func TestIssuerClockAhead(t *testing.T) {
	is := newIssuer(t, 1)
	for _, tc := range []struct {
		ahead time.Duration
		ok    bool
	}{{10 * time.Second, true}, {MinLeeway, true}, {MinLeeway + time.Second, false}} {
		e := newEnv(t, exactConfig(is, ""), 1)
		l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: mustEncode(t, 1, Invalid), iat: tc.ahead}}}
		e.serve = l.serve("issuer.example")
		e.tick()
		if _, err := e.check(0, uri1, 0); (err == nil) != tc.ok {
			t.Fatalf("iat %s ahead: %v; want ok %v\n%s", tc.ahead, err, tc.ok, e.logs())
		}
	}
}
