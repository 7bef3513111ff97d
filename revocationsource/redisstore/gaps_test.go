package redisstore

// Review r2 (revocation source): failing tests for gaps in the Redis store.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// afterLoad wraps a store so that something happens right after a full read
// returns: the app revoking a token between the snapshot and the keyspace
// subscription that the syncer only makes afterwards.
type afterLoad struct {
	*Store
	hook func()
}

func (a *afterLoad) Load(ctx context.Context) (rs.State, error) {
	st, err := a.Store.Load(ctx)
	if err == nil && a.hook != nil {
		a.hook()
		a.hook = nil
	}
	return st, err
}

// TestRevocationBetweenLoadAndSubscribeIsKept: the syncer reads the
// whole store (SCAN) and only then starts Follow, which subscribes to
// keyspace notifications. A key the app writes after the SCAN passed its slot
// and before PSUBSCRIBE is in neither: it reaches the feed only at the next
// full reconciliation (--reconcile-interval, 60 s by default; never with 0).
// The same gap opens at every follower restart (reconcile, then subscribe).
// Follow now reads the store once more when its subscriptions are confirmed.
func TestRevocationBetweenLoadAndSubscribeIsKept(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, raw := open(t)
	w := &afterLoad{Store: s, hook: func() {
		// flask-jwt-extended's logout: jwt_redis_blocklist.set(jti, "", ex=ACCESS_EXPIRES)
		if err := raw.Set(ctx, s.key("logged-out-during-start"), "", time.Hour).Err(); err != nil {
			t.Error(err)
		}
	}}
	idx := rs.NewIndex(nil, 0)
	sy := &rs.Syncer{Store: w, Index: idx, ReconcileEvery: time.Hour}
	go func() { _ = sy.Run(ctx) }()
	has := func(jti string) bool { return indexHas(idx, jti) }
	waitFor(t, "ready", sy.Ready)
	// A later write proves the subscription is up and its events applied.
	waitFor(t, "subscription", func() bool {
		raw.Set(ctx, s.key("later"), "", time.Hour)
		return has("later")
	})
	time.Sleep(200 * time.Millisecond)
	if !has("logged-out-during-start") {
		t.Fatal("a jti revoked in Redis between the syncer's full read and its subscription is not in the feed " +
			"(it would only appear at the next reconciliation, an hour here): the revoked token reaches the app")
	}
}

// TestUnreadableCutoffValueKeepsTheSubjectRevoked: a cutoff whose value
// the store cannot read (here revoked_before written as a JSON number with a
// fraction, as Python's json.dumps(time.time()) writes it) was skipped with a
// warning, and when a readable cutoff was overwritten with such a value the
// next read dropped the subject's cutoff: its old tokens were let through
// again. A fraction is now rounded up, and a value that cannot be read at all
// revokes every token of the subject (TestCutoffValues).
func TestUnreadableCutoffValueKeepsTheSubjectRevoked(t *testing.T) {
	ctx := context.Background()
	s, raw := open(t)
	idx := rs.NewIndex(nil, 0)
	sy := &rs.Syncer{Store: s, Index: idx}
	field := cutoffField(rs.CutoffKey{Sub: "user-17"})
	if err := raw.HSet(ctx, s.cfg.CutoffsKey, field, `{"revoked_before":1700000000}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := sy.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := idx.Cutoff(rs.CutoffKey{Sub: "user-17"}); !ok {
		t.Fatal("setup: the readable cutoff is not in the index")
	}
	// Someone (a script, the app) logs the subject out again, writing a float.
	if err := raw.HSet(ctx, s.cfg.CutoffsKey, field, `{"revoked_before":1700000100.25}`).Err(); err != nil {
		t.Fatal(err)
	}
	err := sy.ReconcileOnce(ctx)
	if _, ok := idx.Cutoff(rs.CutoffKey{Sub: "user-17"}); !ok {
		t.Fatalf("after the cutoff's value became unreadable, the reconciliation (err=%v) dropped the subject's cutoff: "+
			"every token of user-17 issued before the logout is let through", err)
	}
}

// TestNotificationsTurnedOffAtRuntimeAreRestored: the source turns
// keyspace notifications on at start and after a Redis restart only. When
// something else sets notify-keyspace-events while both run (an app that
// listens for expirations does CONFIG SET notify-keyspace-events Ex at its
// own start, replacing the flags), no "set" event arrives any more: every
// revocation reaches the feed only at the next reconciliation (60 s by
// default), while revocation_source_redis_keyspace_notifications still says 1
// and nothing is logged. Every full read now checks the flags, and restores
// them (or reports them off).
func TestNotificationsTurnedOffAtRuntimeAreRestored(t *testing.T) {
	srv := startOwnRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr()})
	var mu sync.Mutex
	var state []bool
	s, err := Open(context.Background(), Config{Client: c, ConfigureNotifications: true, KeyPrefix: "bl:",
		OnNotifications: func(on bool) { mu.Lock(); state = append(state, on); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer raw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	idx := rs.NewIndex(nil, 0)
	sy := &rs.Syncer{Store: s, Index: idx, ReconcileEvery: 300 * time.Millisecond}
	go func() { _ = sy.Run(ctx) }()
	waitFor(t, "ready", sy.Ready)
	if err := raw.ConfigSet(ctx, "notify-keyspace-events", "Ex").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second) // ten reconciliations
	for time.Now().Before(deadline) {
		f := notifyFlags(t, raw)
		mu.Lock()
		last := state[len(state)-1]
		mu.Unlock()
		if mergeFlags(f) == f || !last {
			return // turned on again, or at least reported off
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("notifications replaced with %q at runtime: after 10 reconciliations they are neither on again nor reported off (OnNotifications: %v)",
		notifyFlags(t, raw), state)
}

// TestCutoffValues: what a cutoff's value may be: whole or fractional seconds (rounded up), an
// optional exp; anything else revokes every token of the subject.
func TestCutoffValues(t *testing.T) {
	for _, tc := range []struct {
		v           string
		before, exp int64
		ok          bool
	}{
		{`{"revoked_before":1700000000}`, 1700000000, 0, true},
		{`{"revoked_before":1700000100.25,"exp":1800000000.5}`, 1700000101, 1800000001, true},
		{`{"revoked_before":1700000000,"exp":1800000000}`, 1700000000, 1800000000, true},
		{`{"revoked_before":"1700000000"}`, 1700000000, 0, true}, // a number in a string reads as the number
		{`{"revoked_before":-1}`, 0, 0, false},
		{`{"exp":5}`, 0, 0, false},
		{`1700000000`, 0, 0, false},
		{`{"revoked_before":1e20}`, 4294967295, 0, true},
		{`{"revoked_before":1700000000000,"exp":1800000000000}`, 4294967295, 0, true}, // milliseconds: every token, no expiry
	} {
		before, exp, ok := parseCutoffValue(tc.v)
		if before != tc.before || exp != tc.exp || ok != tc.ok {
			t.Errorf("parseCutoffValue(%s) = %d, %d, %v; want %d, %d, %v", tc.v, before, exp, ok, tc.before, tc.exp, tc.ok)
		}
	}
}
