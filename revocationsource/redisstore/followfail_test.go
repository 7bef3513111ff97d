package redisstore

import (
	"context"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// TestCutoffInMillisecondsIsNotDropped: revoked_before written in milliseconds as an
// integer (Date.now(), int(time.time()*1000)) once parsed "ok", and Cutoff.Validate then
// refused it in the index: the logout was dropped. Past MaxUnixSeconds a revoked_before now
// revokes every token of the subject, and an exp means none.
func TestCutoffInMillisecondsIsNotDropped(t *testing.T) {
	ctx := context.Background()
	s, raw := open(t)
	for _, v := range []string{
		`{"revoked_before":1700000000000}`,
		`{"revoked_before":1700000000,"exp":1800000000000}`,
	} {
		raw.HSet(ctx, s.cfg.CutoffsKey, cutoffField(rs.CutoffKey{Sub: "u"}), v)
		st, err := s.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		idx := rs.NewIndex(nil, 0)
		if err := idx.Reconcile(st, idx.Seq()); err != nil {
			t.Fatal(err)
		}
		if _, c := idx.Len(); c != 1 {
			t.Errorf("cutoff value %s: the subject is not revoked at all (parsed %+v)", v, st.Cutoffs)
		}
	}
}

// TestFollowSurvivesTooManyEntries: once the store holds more than MaxEntries keys the
// full read fails (kept list, as designed), and the follower must keep applying new
// revocations: the read Follow makes once subscribed logs its failure and carries on.
func TestFollowSurvivesTooManyEntries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, raw := open(t)
	s.cfg.MaxEntries = 2
	for _, k := range []string{"a", "b", "c"} {
		raw.Set(ctx, s.key(k), "", time.Hour)
	}
	idx := rs.NewIndex(nil, 0)
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, idx) }()
	has := func(jti string) bool { return indexHas(idx, jti) }
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		raw.Set(ctx, s.key("new-logout"), "", time.Hour)
		if has("new-logout") {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("Follow returned %v: new revocations are not followed while the store is over --max-entries", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("new revocation never followed")
}
