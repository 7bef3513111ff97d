package e2e

import (
	"testing"
	"time"
)

// Timing in these tests is structural, not measured: timers are off, and "within one sync
// interval" means "after one interval has passed, one round of ticks (each worker's timer
// firing once) and the callout it makes are enough". The module's own clock decides whether
// a poll is due, so a wrong schedule fails the assertion instead of merely being slow.

// TestRevokeReachesEveryVMWithinOneInterval: a token allowed on every VM is revoked at the
// source through its admin API; after one interval and one tick round, every worker VM
// answers 401 {"msg":"Token has been revoked"} — the one that polled and the ones that only
// read shared data — and only the lease holder polled.
func TestRevokeReachesEveryVMWithinOneInterval(t *testing.T) {
	src := startSource(t)
	h := startHarness(t, baseConfig(3, cfgOpts{}, src.addr))
	tickRound(t, h, 0) // the first poll happens on the first tick (never in proxy_on_configure)
	tok := token("e2e-revoke-me")
	expectAll(t, h, tok, allowed, "before revocation")
	session := sessionToken("e2e-in-session", "e2e-session")
	expectAll(t, h, session, allowed, "a session's token before its logout")

	if err := src.revoke("e2e-revoke-me"); err != nil {
		t.Fatal(err)
	}
	before := len(h.HTTPCalls())
	tickRound(t, h, interval)
	calls := h.HTTPCalls()[before:]
	if len(calls) != 1 || calls[0].ResponseStatus != 200 || !calls[0].Delivered {
		t.Fatalf("callouts in the tick round after one interval: %v; want exactly one delivered 200 (the lease holder's)", calls)
	}
	expectAll(t, h, tok, revoked, "after one interval")
	expectAll(t, h, token("e2e-other"), allowed, "another token")

	// A subject cutoff ("log out everywhere") travels the same way.
	if err := src.revokeSubject("user-7"); err != nil {
		t.Fatal(err)
	}
	tickRound(t, h, interval)
	expectAll(t, h, localproxyHS256("e2e-cut", "user-7", -60), revoked, "token issued before the subject's cutoff")

	// A session's logout (a claim entry, as the source's back-channel logout writes): the
	// workers read the sid of the token they had cached without it, now that the list names sid.
	if err := src.revokeSession("e2e-session"); err != nil {
		t.Fatal(err)
	}
	tickRound(t, h, interval)
	expectAll(t, h, session, revoked, "a token of the logged-out session")
	expectAll(t, h, sessionToken("e2e-second", "e2e-session"), revoked, "another token of the session")
	expectAll(t, h, sessionToken("e2e-third", "e2e-other-session"), allowed, "a token of another session")
}

// TestFailModeBeforeFirstList: with the source refusing connections no list ever arrives;
// fail_mode closed answers 503 JSON, open lets tokens pass. Requests without a token are
// allowed either way (missing_token allow).
func TestFailModeBeforeFirstList(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want outcome
	}{
		{"closed", unavailabe},
		{"open", allowed},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			h := startHarness(t, baseConfig(2, cfgOpts{failMode: tc.mode}, refusedAddr(t)))
			tickRound(t, h, 0)
			if n := counter(h, "sync.failures"); n < 1 {
				t.Fatalf("sync.failures = %d after a refused poll; want >= 1", n)
			}
			expectAll(t, h, token("e2e-any"), tc.want, "token, no list, fail_mode "+tc.mode)
			expectAll(t, h, "", allowed, "no token")
		})
	}
}

// TestSourceDownKeepsLastGoodList: the source goes away (connection refused); polls fail and
// back off but the last good list stays in force; a revocation made while it was down
// arrives once it is back.
func TestSourceDownKeepsLastGoodList(t *testing.T) {
	src := startSource(t)
	if err := src.revoke("e2e-old"); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, baseConfig(2, cfgOpts{}, src.addr))
	tickRound(t, h, 0)
	old, later := token("e2e-old"), token("e2e-later")
	expectAll(t, h, old, revoked, "listed before the outage")
	expectAll(t, h, later, allowed, "not yet listed")

	addr := src.addr
	src.down()
	if err := src.store.RevokeToken(t.Context(), revocationEntry("e2e-later")); err != nil {
		t.Fatal(err)
	}
	failures := counter(h, "sync.failures")
	for range 3 { // polls due after interval, then backed off to max_backoff
		tickRound(t, h, maxBackoff)
	}
	if got := counter(h, "sync.failures") - failures; got < 2 {
		t.Fatalf("%d failed polls while the source was down; want >= 2", got)
	}
	for _, c := range h.HTTPCalls()[len(h.HTTPCalls())-1:] {
		if c.Err == nil || c.ResponseStatus != 0 {
			t.Fatalf("last callout while down = %v; want a transport error (connection refused)", c)
		}
	}
	expectAll(t, h, old, revoked, "while the source is down")
	expectAll(t, h, later, allowed, "revoked while the source was down, not yet seen")

	src.up(addr)
	successes := counter(h, "sync.successes")
	for round := 0; counter(h, "sync.successes") == successes; round++ {
		if round == 5 {
			t.Fatalf("no successful poll in %d rounds of max_backoff after the source came back", round)
		}
		tickRound(t, h, maxBackoff)
	}
	expectAll(t, h, later, revoked, "after the source came back")
	expectAll(t, h, old, revoked, "still listed")
}

// TestLeaseTakeover: the VM holding the lease stops ticking (a stalled worker); after the
// lease TTL another VM takes over and keeps the list fresh for every VM, the stalled one
// included (it still serves requests from shared data).
func TestLeaseTakeover(t *testing.T) {
	src := startSource(t)
	const workers = 3
	h := startHarness(t, baseConfig(workers, cfgOpts{}, src.addr))
	tickRound(t, h, 0)
	calls := h.HTTPCalls()
	if len(calls) == 0 {
		t.Fatal("no first poll")
	}
	holder := calls[0].VM
	var others []int
	for vm := range workers {
		if vm != holder {
			others = append(others, vm)
		}
	}
	if err := src.revoke("e2e-during-stall"); err != nil {
		t.Fatal(err)
	}
	mark := len(h.HTTPCalls())
	leaseTTL := 3 * interval // the sync section's default
	for elapsed := time.Duration(0); elapsed <= leaseTTL+2*interval; elapsed += interval {
		tickRound(t, h, interval, others...)
	}
	newCalls := h.HTTPCalls()[mark:]
	if len(newCalls) == 0 {
		t.Fatalf("no poll after the holder (VM %d) stalled for %s; lease TTL %s", holder, leaseTTL+2*interval, leaseTTL)
	}
	for _, c := range newCalls {
		if c.VM == holder {
			t.Fatalf("the stalled VM %d polled: %v", holder, c)
		}
	}
	expectAll(t, h, token("e2e-during-stall"), revoked, "revoked while the holder stalled")

	// The new holder keeps polling each interval.
	if err := src.revoke("e2e-after-takeover"); err != nil {
		t.Fatal(err)
	}
	tickRound(t, h, interval, others...)
	expectAll(t, h, token("e2e-after-takeover"), revoked, "revoked after the takeover")
}
