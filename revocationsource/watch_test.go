package revocationsource

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestParseWait(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"25", 25 * time.Second, false},
		{"25s", 25 * time.Second, false},
		{"1m30s", 90 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"0s", 0, false},
		{"-1s", 0, true},
		{"-1", 0, true},
		{"+5s", 0, true},
		{"soon", 0, true},
		{"5d", 0, true},
		{"1.5", 0, true},
		{strings.Repeat("1", 40) + "s", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseWait(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseWait(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.bad)
		}
		if err != nil && !errors.Is(err, ErrBadWait) {
			t.Errorf("ParseWait(%q): %v is not ErrBadWait", tt.in, err)
		}
	}
}

// TestHoldForJitter: a held request ends within the last sixteenth of the
// capped wait, never after it.
func TestHoldForJitter(t *testing.T) {
	s := &Server{MaxWait: 16 * time.Second}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := s.holdFor(time.Hour)
		if d > 16*time.Second || d < 15*time.Second {
			t.Fatalf("holdFor(1h) with a 16s cap = %v; want 15s..16s", d)
		}
		seen[d] = true
		if d := s.holdFor(8 * time.Second); d > 8*time.Second || d < 7500*time.Millisecond {
			t.Fatalf("holdFor(8s) = %v; want 7.5s..8s", d)
		}
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct waits in 1000: no jitter", len(seen))
	}
	if d := (&Server{MaxWait: -1}).holdFor(time.Minute); d != 0 {
		t.Fatalf("long poll off: holdFor = %v", d)
	}
	if d := (&Server{}).holdFor(time.Hour); d > DefaultMaxWait {
		t.Fatalf("default cap: holdFor(1h) = %v", d)
	}
}

// TestWatchClosesOnlyOnNewVersion: the index wakes watchers when its version
// changes, and only then.
func TestWatchClosesOnlyOnNewVersion(t *testing.T) {
	idx := NewIndex(newFakeClock(t0).Now, 0)
	v0, ch := idx.Watch()
	idx.Apply([]Change{put("a", 0), {Op: OpRemoveEntry, Entry: Entry{JTI: "a"}}}) // one step, same content
	idx.Apply([]Change{{Op: OpRemoveEntry, Entry: Entry{JTI: "absent"}}})         // no effect
	select {
	case <-ch:
		t.Fatal("woken without a new version")
	default:
	}
	if v, _ := idx.Watch(); v != v0 {
		t.Fatalf("version moved: %s -> %s", v0, v)
	}
	v1 := idx.Apply([]Change{put("a", 0)})
	select {
	case <-ch:
	default:
		t.Fatal("not woken by a new version")
	}
	v, ch2 := idx.Watch()
	if v != v1 || ch2 == ch {
		t.Fatalf("after the change: %s, same channel %v", v, ch2 == ch)
	}
}

// watchServer is a Server on a loopback port, with an admin API.
type watchServer struct {
	srv  *Server
	idx  *Index
	http *httptest.Server
	reg  *prometheus.Registry
}

func newWatchServer(t *testing.T, configure func(*Server)) *watchServer {
	t.Helper()
	idx := NewIndex(nil, 0)
	reg := prometheus.NewRegistry()
	s := &Server{Index: idx, Store: newMemStore(), Metrics: NewMetrics(reg, idx), AdminToken: "admin-t"}
	if configure != nil {
		configure(s)
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	hs.Config.RegisterOnShutdown(s.Drain)
	hs.Start()
	t.Cleanup(hs.Close)
	return &watchServer{srv: s, idx: idx, http: hs, reg: reg}
}

type pollResult struct {
	code int
	etag string
	enc  string
	body []byte
	took time.Duration
	err  error
}

// plainTransport neither asks for gzip nor unzips by itself.
var plainTransport = &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 100}

// poll sends one feed request; since, inm and wait are left out when empty.
func (w *watchServer) poll(ctx context.Context, since, inm, wait string, hdr ...string) pollResult {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if wait != "" {
		q.Set("wait", wait)
	}
	target := w.http.URL + FeedPath
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := plainTransport.RoundTrip(req)
	if err != nil {
		return pollResult{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return pollResult{code: resp.StatusCode, etag: resp.Header.Get("ETag"), enc: resp.Header.Get("Content-Encoding"),
		body: b, took: time.Since(start), err: err}
}

// async runs poll in the background.
func (w *watchServer) async(ctx context.Context, since, inm, wait string, hdr ...string) <-chan pollResult {
	c := make(chan pollResult, 1)
	go func() { c <- w.poll(ctx, since, inm, wait, hdr...) }()
	return c
}

// waitHeld waits until n long polls are held.
func (w *watchServer) waitHeld(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.srv.Watchers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d long polls held, want %d", w.srv.Watchers(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *watchServer) admin(t *testing.T, method, target, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, w.http.URL+target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, b)
	}
}

func recv(t *testing.T, c <-chan pollResult) pollResult {
	t.Helper()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll was not answered")
	}
	return pollResult{}
}

// TestLongPollWakesOnChange: a held request is answered with the delta as
// soon as the list changes, through the index (any store's follower) or the
// admin API, with the ETag a normal poll would give.
func TestLongPollWakesOnChange(t *testing.T) {
	for _, how := range []string{"index", "admin revoke", "admin unrevoke", "admin cutoff"} {
		t.Run(how, func(t *testing.T) {
			w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour })
			if how == "admin unrevoke" {
				w.idx.Apply([]Change{put("gone-soon", 0)})
			}
			v0 := w.idx.Version()
			c := w.async(context.Background(), v0, `"`+v0+`"`, "1h", "Accept-Encoding", "gzip")
			w.waitHeld(t, 1)
			switch how {
			case "index":
				w.idx.Apply([]Change{put("from-a-store", 0)})
			case "admin revoke":
				w.admin(t, "POST", AdminPath, `{"jti":"from-admin"}`)
			case "admin unrevoke":
				w.admin(t, "DELETE", AdminPath+"?jti=gone-soon", "")
			case "admin cutoff":
				w.admin(t, "POST", AdminPath, `{"sub":"user-1"}`)
			}
			r := recv(t, c)
			v1 := w.idx.Version()
			if r.code != 200 || r.etag != `"`+v0+".."+v1+`+gzip"` || r.enc != "gzip" {
				t.Fatalf("woken: %d ETag %s encoding %q; want 200 %q gzip", r.code, r.etag, r.enc, v0+".."+v1)
			}
			if w.srv.Watchers() != 0 {
				t.Fatalf("%d watchers left", w.srv.Watchers())
			}
		})
	}
}

// TestLongPollTimeout: when nothing changes the request is held for the
// wait (less its jitter) and answered 304 with the client's ETag, also when
// it sent only since.
func TestLongPollTimeout(t *testing.T) {
	w := newWatchServer(t, nil)
	v := w.idx.Version()
	for _, c := range []struct{ since, inm, etag string }{
		{v, `"` + v + `"`, `"` + v + `"`},
		{v, "", `"` + v + `"`},
		{"", `"` + v + `"`, `"` + v + `"`},
		{v, `"c1.old..` + v + `+gzip"`, `"` + v + `"`}, // the ETag of a delta
	} {
		r := w.poll(context.Background(), c.since, c.inm, "300ms")
		if r.err != nil || r.code != 304 || r.etag != c.etag || len(r.body) != 0 {
			t.Fatalf("since=%q inm=%q: %d %q %q %v", c.since, c.inm, r.code, r.etag, r.body, r.err)
		}
		// Timers never fire early: this bounds the wait from below only.
		if r.took < 300*time.Millisecond*15/16 {
			t.Fatalf("answered after %v; held for less than the wait less its jitter", r.took)
		}
	}
}

// TestLongPollCapped: a wait beyond --max-wait is held for the cap.
func TestLongPollCapped(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = 200 * time.Millisecond })
	v := w.idx.Version()
	r := recv(t, w.async(context.Background(), v, `"`+v+`"`, "1h"))
	if r.code != 304 || r.took < 200*time.Millisecond*15/16 {
		t.Fatalf("capped: %d after %v", r.code, r.took)
	}
}

// TestLongPollAnsweredAtOnce: a request that is not at the current version,
// or that cannot be held, is answered as a normal poll, without waiting. The
// wait is an hour: a request that was held would end the test by its
// deadline.
func TestLongPollAnsweredAtOnce(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour })
	v0 := w.idx.Version()
	v1 := w.idx.Apply([]Change{put("a", 0)})
	cases := []struct {
		name, since, inm string
		code             int
		kind             string
	}{
		{"no since, no if-none-match", "", "", 200, "snapshot"},
		{"unknown since", "c1.unknown", "", 200, "snapshot"},
		{"unknown since, matching etag", "c1.unknown", `"` + v1 + `"`, 304, ""},
		{"older since", v0, `"` + v0 + `"`, 200, "delta"},
		{"stale etag", v1, `"` + v0 + `"`, 200, "delta"},
		{"since too long", strings.Repeat("v", MaxVersionBytes+1), "", 200, "snapshot"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := w.poll(ctx, c.since, c.inm, "1h")
		cancel()
		if r.err != nil || r.code != c.code || (c.kind != "" && !strings.Contains(string(r.body), `"kind":"`+c.kind+`"`)) {
			t.Errorf("%s: %d %.60s %v; want %d %s", c.name, r.code, r.body, r.err, c.code, c.kind)
		}
	}
	if r := w.poll(context.Background(), v1, "", "soon"); r.code != 400 || !strings.Contains(string(r.body), "wait") {
		t.Errorf("bad wait: %d %s", r.code, r.body)
	}
	// Long polls off: answered at once.
	off := newWatchServer(t, func(s *Server) { s.MaxWait = -1 })
	v := off.idx.Version()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := off.poll(ctx, v, `"`+v+`"`, "1h"); r.err != nil || r.code != 304 {
		t.Errorf("long polls off: %d %v", r.code, r.err)
	}
}

// TestLongPollMaxWatchers: past the bound, a long poll is answered at once
// (as a normal poll) and counted; nothing queues.
func TestLongPollMaxWatchers(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour; s.MaxWatchers = 3 })
	v := w.idx.Version()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held []<-chan pollResult
	for range 3 {
		held = append(held, w.async(ctx, v, `"`+v+`"`, "1h"))
	}
	w.waitHeld(t, 3)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r := w.poll(ctx, v, `"`+v+`"`, "1h")
		cancel()
		if r.err != nil || r.code != 304 || r.etag != `"`+v+`"` {
			t.Fatalf("over the bound (%d): %d %q %v", i, r.code, r.etag, r.err)
		}
	}
	if n := metricValue(t, w.reg, "revocation_source_watch_overflows_total"); n != 5 {
		t.Fatalf("overflows counted %v, want 5", n)
	}
	if n := metricValue(t, w.reg, "revocation_source_watchers"); n != 3 {
		t.Fatalf("watchers gauge %v, want 3", n)
	}
	w.idx.Apply([]Change{put("x", 0)})
	for _, c := range held {
		if r := recv(t, c); r.code != 200 {
			t.Fatalf("held request after a change: %d", r.code)
		}
	}
	w.waitHeld(t, 0)
}

// TestLongPollClientGone: a client that leaves frees its slot.
func TestLongPollClientGone(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour })
	v := w.idx.Version()
	ctx, cancel := context.WithCancel(context.Background())
	c := w.async(ctx, v, `"`+v+`"`, "1h")
	w.waitHeld(t, 1)
	cancel()
	<-c
	w.waitHeld(t, 0)
}

// TestLongPollShutdown: a graceful shutdown answers every held request 304
// at once (with its ETag) and then stops, long before the wait would end;
// later long polls are answered at once.
func TestLongPollShutdown(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour })
	v := w.idx.Version()
	var held []<-chan pollResult
	for range 50 {
		held = append(held, w.async(context.Background(), v, `"`+v+`"`, "1h"))
	}
	w.waitHeld(t, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.http.Config.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, c := range held {
		if r := recv(t, c); r.code != 304 || r.etag != `"`+v+`"` {
			t.Fatalf("at shutdown: %d %q", r.code, r.etag)
		}
	}
	// Drained: a long poll on the handler itself is not held.
	req := httptest.NewRequest("GET", FeedPath+"?wait=1h&since="+v, nil)
	req.Header.Set("If-None-Match", `"`+v+`"`)
	rec := httptest.NewRecorder()
	w.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != 304 {
		t.Fatalf("after the drain: %d", rec.Code)
	}
}

// model is what a client holds after applying the feed's answers.
type model struct {
	version string
	etag    string
	entries map[EntryKey]int64
	cutoffs map[CutoffKey]cutoffVal
}

func (m *model) apply(body []byte) error {
	var probe struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return err
	}
	switch probe.Kind {
	case "snapshot":
		var s Snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			return err
		}
		m.entries, m.cutoffs = map[EntryKey]int64{}, map[CutoffKey]cutoffVal{}
		for _, e := range s.Entries {
			m.entries[EntryKey{Iss: e.Iss, JTI: e.JTI}] = e.Exp
		}
		for _, c := range s.Cutoffs {
			m.cutoffs[CutoffKey{Iss: c.Iss, Sub: c.Sub}] = cutoffVal{c.RevokedBefore, c.Exp}
		}
		m.version = s.Version
	case "delta":
		var d Delta
		if err := json.Unmarshal(body, &d); err != nil {
			return err
		}
		if d.Base != m.version {
			return fmt.Errorf("delta from %s applied to %s", d.Base, m.version)
		}
		for _, e := range d.Removed {
			delete(m.entries, EntryKey{Iss: e.Iss, JTI: e.JTI})
		}
		for _, e := range d.Added {
			m.entries[EntryKey{Iss: e.Iss, JTI: e.JTI}] = e.Exp
		}
		for _, c := range d.CutoffsRemoved {
			delete(m.cutoffs, CutoffKey{Iss: c.Iss, Sub: c.Sub})
		}
		for _, c := range d.CutoffsAdded {
			m.cutoffs[CutoffKey{Iss: c.Iss, Sub: c.Sub}] = cutoffVal{c.RevokedBefore, c.Exp}
		}
		m.version = d.Version
	default:
		return fmt.Errorf("kind %q", probe.Kind)
	}
	return nil
}

// TestLongPollProperty: many watchers hold long polls while a writer makes
// random changes (revokes, unrevokes, cutoffs, changes undone at once,
// batches). Whatever the interleaving, every answer applies to what the
// watcher holds (a delta's base is its version; a 304 names its version;
// a long poll never answers an empty delta), and once the writer stops
// every watcher comes to the index's final content.
func TestLongPollProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	const watchers = 64
	w := newWatchServer(t, func(s *Server) { s.MaxWait = 150 * time.Millisecond; s.MaxWatchers = watchers - 8 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	var statsMu sync.Mutex
	stats := map[int]int{}
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &model{}
			gz := i%3 == 0
			for {
				select {
				case <-stop:
					// Converge: poll until at the final version (the writer is done).
					final := w.idx.Version()
					for m.version != final {
						if err := w.step(ctx, m, gz, stats, &statsMu); err != nil {
							errs <- err
							return
						}
					}
					want, _, _ := w.idx.Snapshot()
					if err := m.equal(w.idx); err != nil || want != m.version {
						errs <- fmt.Errorf("watcher %d at %s: %v", i, m.version, err)
						return
					}
					// Nothing changes any more: a poll at the final version is a 304 naming it
					// (its wait runs out, or it is over --max-watchers). Every run exercises
					// 304s here, however slowly a loaded machine ran the polls above.
					code, err := w.stepCode(ctx, m, gz, stats, &statsMu)
					if err == nil && code != 304 {
						err = fmt.Errorf("status %d at the final version, want 304", code)
					}
					if err != nil {
						errs <- fmt.Errorf("watcher %d at %s: %w", i, m.version, err)
					}
					return
				default:
				}
				if err := w.step(ctx, m, gz, stats, &statsMu); err != nil {
					errs <- fmt.Errorf("watcher %d: %w", i, err)
					return
				}
			}
		}()
	}
	subs := []string{"u1", "u2", "u3"}
	for i := range 200 {
		if i%50 == 49 {
			time.Sleep(200 * time.Millisecond) // a quiet spell: waits run out
		}
		var batch []Change
		for range 1 + rnd.IntN(3) {
			jti := fmt.Sprintf("j%d", rnd.IntN(40))
			iss := []string{"", "https://a.example"}[rnd.IntN(2)]
			switch rnd.IntN(5) {
			case 0, 1:
				batch = append(batch, Change{Op: OpPutEntry, Entry: Entry{JTI: jti, Iss: iss, Exp: int64(rnd.IntN(2)) * (time.Now().Unix() + 3600)}})
			case 2:
				batch = append(batch, Change{Op: OpRemoveEntry, Entry: Entry{JTI: jti, Iss: iss}})
			case 3:
				batch = append(batch, Change{Op: OpPutCutoff, Cutoff: Cutoff{Sub: subs[rnd.IntN(3)], RevokedBefore: int64(rnd.IntN(1000))}})
			case 4:
				batch = append(batch, Change{Op: OpRemoveCutoff, Cutoff: Cutoff{Sub: subs[rnd.IntN(3)]}})
			}
		}
		if rnd.IntN(8) == 0 { // a change and its undoing, as two versions
			w.idx.Apply([]Change{put("flip", 0)})
			w.idx.Apply([]Change{{Op: OpRemoveEntry, Entry: Entry{JTI: "flip"}}})
		}
		w.idx.Apply(batch)
		time.Sleep(time.Duration(rnd.IntN(3000)) * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	statsMu.Lock()
	defer statsMu.Unlock()
	t.Logf("answers by status: %v", stats)
	if stats[200] == 0 || stats[304] == 0 {
		t.Errorf("answers by status %v: the test did not exercise both", stats)
	}
}

// step makes one long poll and applies its answer to m.
func (w *watchServer) step(ctx context.Context, m *model, gz bool, stats map[int]int, mu *sync.Mutex) error {
	_, err := w.stepCode(ctx, m, gz, stats, mu)
	return err
}

// stepCode is step, which also returns the answer's status.
func (w *watchServer) stepCode(ctx context.Context, m *model, gz bool, stats map[int]int, mu *sync.Mutex) (int, error) {
	var hdr []string
	if gz {
		hdr = []string{"Accept-Encoding", "gzip"}
	}
	r := w.poll(ctx, m.version, m.etag, "10s", hdr...)
	if r.err != nil {
		return r.code, r.err
	}
	mu.Lock()
	stats[r.code]++
	mu.Unlock()
	switch r.code {
	case 304:
		if m.version == "" || !etagMatches(r.etag, m.version) {
			return r.code, fmt.Errorf("304 with ETag %s to a client at %q", r.etag, m.version)
		}
		if r.took < 10*time.Millisecond {
			time.Sleep(time.Millisecond) // over --max-watchers: answered at once; do not spin
		}
		return r.code, nil
	case 200:
		body := r.body
		if gz {
			var err error
			if body, err = gunzip(body); err != nil {
				return r.code, err
			}
		}
		if err := m.apply(body); err != nil {
			return r.code, err
		}
		if !etagMatches(r.etag, m.version) {
			return r.code, fmt.Errorf("ETag %s for a body at %s", r.etag, m.version)
		}
		m.etag = r.etag
		return r.code, nil
	}
	return r.code, fmt.Errorf("status %d: %s", r.code, r.body)
}

func (m *model) equal(x *Index) error {
	_, entries, cutoffs := x.Snapshot()
	if len(entries) != len(m.entries) || len(cutoffs) != len(m.cutoffs) {
		return fmt.Errorf("holds %d entries and %d cutoffs; the index %d and %d", len(m.entries), len(m.cutoffs), len(entries), len(cutoffs))
	}
	for _, e := range entries {
		if exp, ok := m.entries[e.Key()]; !ok || exp != e.Exp {
			return fmt.Errorf("entry %+v: held %v %d", e, ok, exp)
		}
	}
	for _, c := range cutoffs {
		if v, ok := m.cutoffs[c.Key()]; !ok || v != (cutoffVal{c.RevokedBefore, c.Exp}) {
			return fmt.Errorf("cutoff %+v: held %v %+v", c, ok, v)
		}
	}
	return nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// metricValue reads one unlabelled counter or gauge from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestLongPollOutlivesReadTimeout: the server's ReadTimeout (30 s in
// cmd/revocation-source) must not cut a request held longer: net/http's
// read deadline stays armed while the handler runs, and when it fires it
// cancels the request's context. The held request lifts it.
func TestLongPollOutlivesReadTimeout(t *testing.T) {
	w := newWatchServer(t, func(s *Server) { s.MaxWait = time.Hour })
	w.http.Close()
	hs := httptest.NewUnstartedServer(w.srv.Handler())
	hs.Config.ReadTimeout = 100 * time.Millisecond
	hs.Config.WriteTimeout = 100 * time.Millisecond
	hs.Start()
	defer hs.Close()
	w.http = hs
	v := w.idx.Version()
	r := recv(t, w.async(context.Background(), v, `"`+v+`"`, "600ms"))
	if r.code != 304 || r.took < 600*time.Millisecond*15/16 {
		t.Fatalf("held past the read and write timeouts: %d after %v", r.code, r.took)
	}
	c := w.async(context.Background(), v, `"`+v+`"`, "10s")
	time.Sleep(300 * time.Millisecond)
	w.idx.Apply([]Change{put("late", 0)})
	if r := recv(t, c); r.code != 200 {
		t.Fatalf("woken after the read and write timeouts: %d %s", r.code, r.body)
	}
}
