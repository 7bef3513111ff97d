package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

// The long poll (sync.watch) end to end: the real module, in the wazero harness and in the V8
// host, against the real revocation source serving the long poll. Ticks are driven by hand
// (timers off), so "the revocation came through the poll the source held" is structural: no
// tick runs between the revocation and its arrival, and ticks are the only other way a poll
// starts.

// watchWait is the wait of these tests: longer than the lease TTL (3 × 200 ms), so a held poll
// outlives the lease unless the holder renews it while the poll is open.
const watchWait = 2 * time.Second

// startSourceWith starts the real revocation source over SQLite with the long poll capped at
// maxWait (< 0: the long poll off, every poll answered at once).
func startSourceWith(t testing.TB, maxWait time.Duration) *source {
	t.Helper()
	store, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite,
		DSN: filepath.Join(t.TempDir(), "revocations.db"), CreateTables: true})
	if err != nil {
		t.Fatal(err)
	}
	idx := revocationsource.NewIndex(time.Now, 0)
	sy := &revocationsource.Syncer{Store: store, Index: idx}
	if err := sy.ReconcileOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &source{t: t, store: store, adminToken: "e2e-admin-token", addr: ln.Addr().String()}
	s.srv = &http.Server{Handler: (&revocationsource.Server{Index: idx, Store: store, AdminToken: s.adminToken,
		Ready: sy.Ready, MaxWait: maxWait}).Handler()}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.down(); store.Close() })
	return s
}

// waitFor polls cond every 5 ms for up to d; it fails the test with what when cond stays false.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hostCalls(t testing.TB, h hosttest.Host) []harness.HTTPCallRecord {
	t.Helper()
	calls, err := h.HTTPCalls()
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// openCalls are the callouts not delivered yet.
func openCalls(calls []harness.HTTPCallRecord) []harness.HTTPCallRecord {
	var out []harness.HTTPCallRecord
	for _, c := range calls {
		if !c.Delivered && c.Err == nil && c.ResponseStatus == 0 {
			out = append(out, c)
		}
	}
	return out
}

func callQuery(c harness.HTTPCallRecord, name string) string {
	p, _ := c.Headers.Get(":path")
	_, q, _ := strings.Cut(p, "?")
	v, _ := url.ParseQuery(q)
	return v.Get(name)
}

func tickVMs(t testing.TB, h hosttest.Host, vms ...int) {
	t.Helper()
	for _, vm := range vms {
		if err := h.TickVM(context.Background(), vm); err != nil {
			t.Fatalf("tick VM %d: %v", vm, err)
		}
	}
}

func allVMs(h hosttest.Host) []int {
	out := make([]int, h.Workers())
	for i := range out {
		out[i] = i
	}
	return out
}

// decisionsAre reports whether every VM decides want for tok.
func decisionsAre(t testing.TB, h hosttest.Host, tok string, want outcome) bool {
	for vm := range h.Workers() {
		if doHost(t, h, vm, tok) != want {
			return false
		}
	}
	return true
}

// watching waits until the lease holder has its long poll open and returns it.
func watching(t testing.TB, h hosttest.Host) harness.HTTPCallRecord {
	t.Helper()
	var open []harness.HTTPCallRecord
	// Generous: on a loaded machine a poll can time out, and the next comes after a retry.
	waitFor(t, 30*time.Second, "a long poll open", func() bool {
		open = openCalls(hostCalls(t, h))
		return len(open) == 1 && callQuery(open[0], "wait") != ""
	})
	return open[0]
}

// nextPoll waits until the long poll after prev is open, and returns it: just opened.
func nextPoll(t testing.TB, h hosttest.Host, prev harness.HTTPCallRecord) harness.HTTPCallRecord {
	t.Helper()
	var open []harness.HTTPCallRecord
	waitFor(t, 2*watchWait+5*time.Second, "the next long poll open", func() bool {
		open = openCalls(hostCalls(t, h))
		return len(open) == 1 && callQuery(open[0], "wait") != "" && (open[0].VM != prev.VM || open[0].Token != prev.Token)
	})
	return open[0]
}

// TestWatchRevocationArrivesThroughTheHeldPoll: after the first list, the lease holder's next
// poll is a long poll (since= and wait=, callout timeout wait + sync.timeout) that the source
// holds. While it is held and reopened after each 304, the holder renews its lease on every
// tick, so no other VM polls although the wait exceeds the lease TTL. A revocation then
// reaches every worker VM through the held poll, with no tick in between, and the next long
// poll is open at once from the new version.
func TestWatchRevocationArrivesThroughTheHeldPoll(t *testing.T) {
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			src := startSource(t)
			h := startHost(t, e, baseConfig(3, cfgOpts{watch: watchWait}, src.addr))
			tickVMs(t, h, allVMs(h)...)
			w := watching(t, h)
			calls := hostCalls(t, h)
			if len(calls) != 2 || calls[0].ResponseStatus != 200 || callQuery(calls[0], "wait") != "" {
				t.Fatalf("callouts %v; want the first (plain) poll answered 200, then the long poll", calls)
			}
			if callQuery(w, "since") == "" || callQuery(w, "wait") != watchWait.String() || w.Timeout != watchWait+timeout {
				t.Fatalf("long poll %v since %q wait %q timeout %s; want since=<version>, wait=%s, timeout %s",
					w, callQuery(w, "since"), callQuery(w, "wait"), w.Timeout, watchWait, watchWait+timeout)
			}
			holder := w.VM

			// Two and a half waits of ticks every 50 ms (timers would tick every 40 ms).
			for end := time.Now().Add(watchWait*5/2 + 100*time.Millisecond); time.Now().Before(end); {
				tickVMs(t, h, allVMs(h)...)
				time.Sleep(50 * time.Millisecond)
			}
			calls = hostCalls(t, h)
			notModified := 0
			for _, c := range calls[1:] {
				if c.VM != holder {
					t.Fatalf("VM %d polled while VM %d held the lease with its long poll open: %v", c.VM, holder, c)
				}
				if c.ResponseStatus == 304 {
					notModified++
				}
			}
			if notModified < 2 || len(openCalls(calls)) != 1 {
				t.Fatalf("after 2.5 waits: %d long polls ended in 304, %d open; want >= 2 and 1: %v", notModified, len(openCalls(calls)), calls)
			}

			tok := token("e2e-watch-revoke-me")
			if !decisionsAre(t, h, tok, allowed) {
				t.Fatal("token not allowed before its revocation")
			}
			// Revoked as soon as a long poll opens: the revocation meets it with nearly a whole
			// wait left. A poll open for most of its wait could end in 304 at the moment of the
			// revocation on a loaded machine (a CI run beside another build did), and the
			// revocation would come through the next poll instead.
			w = nextPoll(t, h, watching(t, h))
			before := len(hostCalls(t, h))
			start := time.Now()
			if err := src.revoke("e2e-watch-revoke-me"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "revoked on every VM without a tick", func() bool { return decisionsAre(t, h, tok, revoked) })
			took := time.Since(start)
			calls = hostCalls(t, h)
			var answered harness.HTTPCallRecord
			for _, c := range calls {
				if c.VM == w.VM && c.Token == w.Token {
					answered = c
				}
			}
			if !answered.Delivered || answered.ResponseStatus != 200 {
				t.Fatalf("the long poll held at the revocation: %v; want delivered with 200", answered)
			}
			if got := len(calls) - before; got != 1 {
				t.Fatalf("%d callouts since the revocation; want 1, the next long poll: %v", got, calls[before:])
			}
			next := watching(t, h)
			if callQuery(next, "since") == callQuery(w, "since") {
				t.Fatalf("the next long poll asks since %q, the version before the revocation", callQuery(next, "since"))
			}
			if !decisionsAre(t, h, token("e2e-watch-other"), allowed) {
				t.Fatal("another token is not allowed")
			}
			t.Logf("%s: revoked on every VM %s after the admin call", e, took.Round(time.Millisecond))
		})
	}
}

// TestWatchSourceIgnoringWait: a source whose long poll is off answers every poll at once.
// The module still asks (wait=), and is polled once per interval, plus at most one poll
// right after each change, never more; revocations arrive as with the plain poll.
func TestWatchSourceIgnoringWait(t *testing.T) {
	src := startSourceWith(t, -1)
	h := startHost(t, hosttest.Wazero, baseConfig(2, cfgOpts{watch: watchWait}, src.addr))
	start := time.Now()
	changes := 0
	for i := range 3 {
		jti := fmt.Sprintf("e2e-ignored-wait-%d", i)
		if err := src.revoke(jti); err != nil {
			t.Fatal(err)
		}
		changes++
		waitFor(t, 10*time.Second, "revocation "+jti, func() bool {
			tickVMs(t, h, allVMs(h)...)
			time.Sleep(interval / 4)
			return decisionsAre(t, h, token(jti), revoked)
		})
	}
	for end := time.Now().Add(5 * interval); time.Now().Before(end); time.Sleep(interval / 4) {
		tickVMs(t, h, allVMs(h)...)
	}
	elapsed := time.Since(start)
	if err := h.WaitHTTPCalls(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := hostCalls(t, h)
	asked := 0
	for _, c := range calls {
		if callQuery(c, "wait") != "" {
			asked++
		}
	}
	if limit := int(elapsed/interval) + 1 + changes + 1; len(calls) > limit {
		t.Fatalf("%d polls in %s at a %s interval with %d changes; want at most %d", len(calls), elapsed, interval, changes, limit)
	}
	if asked == 0 {
		t.Fatalf("no poll asked for the long poll: %v", calls)
	}
}

// TestWatchTakeover: the lease holder stops ticking with its long poll open; after the lease
// TTL another VM takes the lease and opens its own long poll; a revocation then reaches every
// VM, and in the end only the new holder has a poll open (the old holder's held poll, when it
// comes back, does not reopen: that VM no longer holds the lease).
func TestWatchTakeover(t *testing.T) {
	src := startSource(t)
	h := startHost(t, hosttest.Wazero, baseConfig(3, cfgOpts{watch: watchWait}, src.addr))
	tickVMs(t, h, allVMs(h)...)
	old := watching(t, h).VM
	var others []int
	for vm := range h.Workers() {
		if vm != old {
			others = append(others, vm)
		}
	}
	leaseTTL := 3 * interval
	var taker harness.HTTPCallRecord
	waitFor(t, leaseTTL+5*time.Second, "another VM's long poll", func() bool {
		tickVMs(t, h, others...)
		time.Sleep(50 * time.Millisecond)
		for _, c := range openCalls(hostCalls(t, h)) {
			if c.VM != old && callQuery(c, "wait") != "" {
				taker = c
				return true
			}
		}
		return false
	})
	tok := token("e2e-watch-after-takeover")
	if err := src.revoke("e2e-watch-after-takeover"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "revoked on every VM", func() bool { return decisionsAre(t, h, tok, revoked) })
	var open []harness.HTTPCallRecord
	// The VMs that still run keep ticking (timers are off here): the old holder's poll also
	// came back with the change, and the two may race to publish it; the one that loses the
	// CAS retries on a later tick, with a plain poll first.
	waitFor(t, watchWait+5*time.Second, "one long poll open, the new holder's", func() bool {
		tickVMs(t, h, others...)
		time.Sleep(interval / 4)
		open = openCalls(hostCalls(t, h))
		return len(open) == 1 && open[0].VM == taker.VM
	})
}
