package statuslist

import (
	"errors"
	"testing"
	"time"
)

// TestRollbackRefusedOnceHeldListUnusable: the rollback guard of onResponse ("a valid list
// older than the one held ... a stale CDN copy must not undo a revocation") only runs while
// the held list is usable. An endpoint (or a stale CDN edge in front of it) that fails every
// fetch until max_age has passed, and then serves an older list, gets that older list
// published: the token the newer list revoked was VALID again on every VM. The filter holds
// the newer list's iat when the older one arrives, and now refuses it.
func TestRollbackRefusedOnceHeldListUnusable(t *testing.T) {
	is := newIssuer(t, 1)
	e := newEnv(t, exactConfig(is, `"max_ttl":"10m","max_age":"1h",`), 2)
	// The issuer's current list: index 0 revoked.
	current := &served{list: mustEncode(t, 1, Invalid), ttl: 600}
	l := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: current}}
	e.serve = l.serve("issuer.example")
	e.tick()
	e.tick()
	if st, err := e.check(1, uri1, 0); err != nil || st != Invalid {
		t.Fatalf("setup: %v, %v; want INVALID", st, err)
	}

	// The endpoint fails every fetch for max_age.
	e.serve = func(*call) reply { return reply{status: 503} }
	for range 62 {
		e.clk.advance(time.Minute)
		e.tick()
	}
	if _, err := e.check(1, uri1, 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after max_age of failures: %v; want unavailable", err)
	}

	// Then it serves a copy from before the revocation: validly signed, no exp, iat two hours
	// before the held list's.
	stale := &served{list: mustEncode(t, 1, Valid), ttl: 600, iat: -3 * time.Hour}
	l.byURI[uri1] = stale
	e.serve = l.serve("issuer.example")
	for range 3 {
		e.clk.advance(30 * time.Second)
		e.tick()
	}
	for n := range e.vms {
		st, err := e.check(n, uri1, 0)
		if err == nil && st == Valid {
			t.Errorf("vm %d: the revoked index reads VALID from a list issued before the one held (rollback); want it refused (INVALID kept, or unavailable)", n)
		}
	}
}
