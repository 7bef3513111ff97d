package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
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
	has := func(jti string) bool { return indexHas(idx, jti) }
	// The subscription is asynchronous: write until the first event lands.
	waitFor(t, "subscription", func() bool {
		raw.Set(ctx, s.key("first"), "", time.Hour)
		return has("first")
	})
	// The loop may have written "first" again after the event that ended it: a barrier key
	// written after them all comes through after their events, so the base below is quiet.
	raw.Set(ctx, s.key("barrier"), "", time.Hour)
	waitFor(t, "barrier", func() bool { return has("barrier") })
	base := idx.Version()
	raw.Set(ctx, s.key("set"), "", time.Hour)
	raw.Set(ctx, s.key("short"), "", time.Hour)
	waitFor(t, "set", func() bool { return has("set") && has("short") })
	raw.Del(ctx, s.key("set"))
	waitFor(t, "del", func() bool { return !has("set") })
	raw.PExpire(ctx, s.key("short"), time.Millisecond)
	// Expired in Redis, but held in the list until exp + grace.
	waitFor(t, "expired", func() bool { e, _ := idx.Held(); return e == 1 })
	if !has("short") {
		t.Fatal("an expired key left the list before exp + grace")
	}
	raw.HSet(ctx, s.cfg.CutoffsKey, cutoffField(rs.CutoffKey{Sub: "u"}), `{"revoked_before":7}`)
	waitFor(t, "cutoff", func() bool { _, c := idx.Len(); return c == 1 })

	_, d, ok := idx.Delta(base)
	if !ok || len(d.Added) != 1 || d.Added[0].JTI != "short" || len(d.CutoffsAdded) != 1 || d.CutoffsAdded[0].RevokedBefore != 7 {
		t.Fatalf("net delta: ok=%v %+v", ok, d)
	}
	cancel()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Fatalf("follow ended with %v", err)
	}
}

// ownRedis runs a redis-server of the test's own on a free port, so the
// test can restart it. Keyspace notifications start off, as in a default
// redis.conf.
type ownRedis struct {
	t    *testing.T
	bin  string
	port string
	dir  string
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	r := &ownRedis{t: t, bin: testenv.RedisServerBinary(t), dir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, r.port, _ = net.SplitHostPort(ln.Addr().String())
	ln.Close()
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *ownRedis) addr() string { return "127.0.0.1:" + r.port }

func (r *ownRedis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin, "--bind", "127.0.0.1", "--port", r.port, "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--notify-keyspace-events", "")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	waitFor(r.t, "redis-server to answer", func() bool { return c.Ping(context.Background()).Err() == nil })
}

func (r *ownRedis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func notifyFlags(t *testing.T, c *redis.Client) string {
	cur, err := c.ConfigGet(context.Background(), "notify-keyspace-events").Result()
	if err != nil {
		return "error: " + err.Error()
	}
	return cur["notify-keyspace-events"]
}

// TestNotificationsBackAfterRedisRestart: a restarted Redis forgets CONFIG
// SET; the source notices (the follower reconnects, and the run_id is new),
// turns keyspace notifications on again, and changes keep arriving promptly.
// (Issue 8 §4.)
func TestNotificationsBackAfterRedisRestart(t *testing.T) {
	srv := startOwnRedis(t)
	var logs syncBuffer
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), MaxRetries: -1})
	s, err := Open(context.Background(), Config{Client: c, ConfigureNotifications: true, KeyPrefix: "bl:",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer raw.Close()
	if f := notifyFlags(t, raw); mergeFlags(f) != f {
		t.Fatalf("notifications not on at start: %q", f)
	}
	idx := rs.NewIndex(nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sy := &rs.Syncer{Store: s, Index: idx, ReconcileEvery: time.Hour} // only notifications bring changes in quickly
	go func() { _ = sy.Run(ctx) }()
	has := func(jti string) bool { return indexHas(idx, jti) }
	waitFor(t, "a write before the restart", func() bool {
		raw.Set(ctx, "bl:before", "", time.Hour)
		return has("before")
	})

	srv.stop()
	srv.start() // starts with notify-keyspace-events "" again
	waitFor(t, "notifications on again", func() bool { f := notifyFlags(t, raw); return f != "" && mergeFlags(f) == f })
	// After the follower subscribed again, a write arrives without a
	// reconciliation.
	waitFor(t, "a write after the restart", func() bool {
		raw.Set(ctx, "bl:after", "", time.Hour)
		return has("after")
	})
	// Once at start, once after the restart.
	if n := strings.Count(logs.String(), "enabled keyspace notifications"); n < 2 {
		t.Fatalf("enabled %d times; logs:\n%s", n, logs.String())
	}
}

// TestNotificationsOffIsLoud: when notifications are off and the source may
// not turn them on, it says so at error level.
func TestNotificationsOffIsLoud(t *testing.T) {
	srv := startOwnRedis(t)
	var logs syncBuffer
	c := redis.NewClient(&redis.Options{Addr: srv.addr()})
	var state []bool
	s, err := Open(context.Background(), Config{Client: c, ConfigureNotifications: false,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), OnNotifications: func(on bool) { state = append(state, on) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "KEYSPACE NOTIFICATIONS ARE OFF") {
		t.Fatalf("logs:\n%s", logs.String())
	}
	if len(state) == 0 || state[len(state)-1] {
		t.Fatalf("OnNotifications got %v", state)
	}
}

// TestExpiredKeysHeldForTheGrace: Redis deletes a key at its TTL, but a
// filter with a leeway still accepts the token for a while; the entry stays
// in the list until exp + grace. A key the app deletes goes at once.
// (Issue 8 §3.)
func TestExpiredKeysHeldForTheGrace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, raw := open(t)
	idx := rs.NewIndex(nil, 0)
	sy := &rs.Syncer{Store: s, Index: idx, ReconcileEvery: 200 * time.Millisecond}
	go func() { _ = sy.Run(ctx) }()
	has := func(jti string) bool { return indexHas(idx, jti) }
	waitFor(t, "keys in the list", func() bool {
		raw.Set(ctx, s.key("short"), "", 1200*time.Millisecond)
		raw.Set(ctx, s.key("deleted"), "", time.Hour)
		return has("short") && has("deleted")
	})
	raw.Del(ctx, s.key("deleted"))
	waitFor(t, "the deleted key to leave", func() bool { return !has("deleted") })
	waitFor(t, "the short key to expire in Redis", func() bool { return raw.Exists(ctx, s.key("short")).Val() == 0 })
	// Notifications and reconciliations come and go; the entry stays.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if !has("short") {
			t.Fatal("an entry whose key expired left the list before exp + grace")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if e, _ := idx.Held(); e != 1 {
		t.Fatalf("held %d", e)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// indexHas reports whether idx holds a jti entry for jti.
func indexHas(idx *rs.Index, jti string) bool {
	_, e, _ := idx.Snapshot()
	for _, x := range e {
		if x.JTI == jti {
			return true
		}
	}
	return false
}
