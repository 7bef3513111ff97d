package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/hosttest"
)

// TestRevokeReachesEveryVMInV8 is TestRevokeReachesEveryVMWithinOneInterval in the V8 host:
// the real module's lease (a CAS on shared data shared by the VMs), its poll on tick (a
// callout over real HTTP to the real revocation source) and the other VMs' reads of the
// published list, all as V8 runs them. Ticks are driven by hand, one round per interval.
func TestRevokeReachesEveryVMInV8(t *testing.T) {
	src := startSource(t)
	h := startHost(t, hosttest.V8, baseConfig(3, cfgOpts{}, src.addr))
	round := func(d time.Duration) {
		t.Helper()
		time.Sleep(d)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := h.Tick(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.WaitHTTPCalls(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(listRecheck) // requests see the list the callout wrote within the recheck period
	}
	all := func(tok string, want outcome, what string) {
		t.Helper()
		for vm := range h.Workers() {
			if got := doHost(t, h, vm, tok); got != want {
				t.Fatalf("%s on VM %d: %v; want %v", what, vm, got, want)
			}
		}
	}
	round(0) // the first poll happens on the first tick
	tok := token("e2e-v8-revoke-me")
	// On a loaded machine the first poll can time out (the callout's 2 s); the lease holder
	// then retries on its next tick. Allow a few rounds for the first list, not for the revocation.
	for i := 0; i < 5 && doHost(t, h, 0, tok) == unavailabe; i++ {
		round(interval)
	}
	all(tok, allowed, "before revocation")
	session := sessionToken("e2e-v8-in-session", "e2e-v8-session")
	all(session, allowed, "a session's token before its logout")
	if err := src.revoke("e2e-v8-revoke-me"); err != nil {
		t.Fatal(err)
	}
	calls, err := h.HTTPCalls()
	if err != nil {
		t.Fatal(err)
	}
	before := len(calls)
	round(interval)
	if calls, err = h.HTTPCalls(); err != nil {
		t.Fatal(err)
	}
	calls = calls[before:]
	// One poll, the lease holder's; on a loaded machine a poll that timed out before this round
	// is retried in it, by the same VM (a CI run beside another build saw two).
	delivered := false
	for _, c := range calls {
		if c.VM != calls[0].VM {
			t.Fatalf("callouts in the tick round after one interval: %v; want the lease holder's only", calls)
		}
		delivered = delivered || c.Delivered && c.ResponseStatus == 200
	}
	if !delivered || len(calls) > 2 {
		t.Fatalf("callouts in the tick round after one interval: %v; want one delivered 200 (the lease holder's), at most one retry", calls)
	}
	all(tok, revoked, "after one interval")
	all(token("e2e-v8-other"), allowed, "another token")

	// A session's logout: a claim entry, which the workers look up in tokens they had cached.
	if err := src.revokeSession("e2e-v8-session"); err != nil {
		t.Fatal(err)
	}
	round(interval)
	all(session, revoked, "a token of the logged-out session")
	all(sessionToken("e2e-v8-other", "e2e-v8-other-session"), allowed, "a token of another session")
}
