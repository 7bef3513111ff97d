package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

// open returns a store under a fresh random prefix so tests (and parallel
// packages) never see each other's keys.
func open(t *testing.T) (*Store, *redis.Client) {
	t.Helper()
	addr := testenv.RedisAddr(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "test:" + hex.EncodeToString(b) + ":"
	c := redis.NewClient(&redis.Options{Addr: addr})
	s, err := Open(context.Background(), Config{
		Client: c, KeyPrefix: prefix, CutoffsKey: prefix + "cutoffs", ConfigureNotifications: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := raw.Keys(ctx, globEscape(prefix)+"*").Result()
		if len(keys) > 0 {
			raw.Del(ctx, keys...)
		}
		_ = raw.Close()
		_ = s.Close()
	})
	return s, raw
}

func TestExpOf(t *testing.T) {
	tests := []struct {
		ms      int64
		exp     int64
		present bool
	}{
		{-2, 0, false},
		{-1, 0, true},
		{1767225600000, 1767225600, true},
		{1767225600001, 1767225601, true}, // rounded up
	}
	for _, tt := range tests {
		exp, ok := expOf(tt.ms)
		if exp != tt.exp || ok != tt.present {
			t.Errorf("expOf(%d) = %d, %v", tt.ms, exp, ok)
		}
	}
}

func TestGlobEscape(t *testing.T) {
	if got := globEscape(`a*b?[c]\`); got != `a\*b\?\[c\]\\` {
		t.Fatalf("got %q", got)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, raw := open(t)
	exp := time.Now().Add(time.Hour).Unix()
	// A flask-jwt-extended app's write, with the store's prefix.
	if err := raw.Set(ctx, s.key("flask"), "", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.HSet(ctx, s.key("not-a-string"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"revoke with exp", func() error { return s.RevokeToken(ctx, rs.Entry{JTI: "a", Exp: exp}) }},
		{"shorter exp does not shorten", func() error { return s.RevokeToken(ctx, rs.Entry{JTI: "a", Exp: exp - 100}) }},
		{"revoke forever", func() error { return s.RevokeToken(ctx, rs.Entry{JTI: "b"}) }},
		{"exp does not limit forever", func() error { return s.RevokeToken(ctx, rs.Entry{JTI: "b", Exp: exp}) }},
		{"cutoff", func() error { return s.RevokeSubject(ctx, rs.Cutoff{Sub: "u", Iss: "i", RevokedBefore: 5, Exp: exp}) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, e := range st.Entries {
		got[e.JTI] = e.Exp
	}
	if len(got) != 3 || got["a"] != exp || got["b"] != 0 || got["flask"] < exp-5 {
		t.Fatalf("entries %v", got)
	}
	if len(st.Cutoffs) != 1 || st.Cutoffs[0] != (rs.Cutoff{Sub: "u", Iss: "i", RevokedBefore: 5, Exp: exp}) {
		t.Fatalf("cutoffs %+v", st.Cutoffs)
	}
	if err := s.UnrevokeToken(ctx, rs.EntryKey{JTI: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UnrevokeSubject(ctx, rs.CutoffKey{Sub: "u", Iss: "i"}); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.Load(ctx); len(st.Entries) != 2 || len(st.Cutoffs) != 0 {
		t.Fatalf("after unrevoke %+v", st)
	}
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "x", Iss: "y"}); !errors.Is(err, rs.ErrIssuerUnsupported) {
		t.Fatalf("iss: %v", err)
	}
}

// waitFor polls cond: notifications are asynchronous, so the test waits for
// the outcome (bounded) rather than sleeping a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFollowKeyspaceNotifications(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, raw := open(t)
	idx := rs.NewIndex(nil, 0)
	followed := make(chan error, 1)
	go func() { followed <- s.Follow(ctx, idx) }()
	has := func(jti string) bool {
		_, e, _ := idx.Snapshot()
		for _, x := range e {
			if x.JTI == jti {
				return true
			}
		}
		return false
	}
	// The subscription is asynchronous: write until the first event lands.
	waitFor(t, "subscription", func() bool {
		raw.Set(ctx, s.key("first"), "", time.Hour)
		return has("first")
	})
	base := idx.Version()
	raw.Set(ctx, s.key("set"), "", time.Hour)
	raw.Set(ctx, s.key("short"), "", time.Hour)
	waitFor(t, "set", func() bool { return has("set") && has("short") })
	raw.Del(ctx, s.key("set"))
	waitFor(t, "del", func() bool { return !has("set") })
	raw.PExpire(ctx, s.key("short"), time.Millisecond)
	waitFor(t, "expired", func() bool { return !has("short") })
	raw.HSet(ctx, s.cfg.CutoffsKey, cutoffField(rs.CutoffKey{Sub: "u"}), `{"revoked_before":7}`)
	waitFor(t, "cutoff", func() bool { _, c := idx.Len(); return c == 1 })

	_, d, ok := idx.Delta(base)
	if !ok || len(d.Added) != 0 || len(d.CutoffsAdded) != 1 || d.CutoffsAdded[0].RevokedBefore != 7 {
		t.Fatalf("net delta: ok=%v %+v", ok, d)
	}
	cancel()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
}
