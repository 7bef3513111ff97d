package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

// openClaims returns a store with claim entries under claimsPrefix(prefix),
// where prefix is the store's fresh jti prefix.
func openClaims(t *testing.T, claimsPrefix func(prefix string) string) (*Store, *redis.Client) {
	t.Helper()
	addr := testenv.RedisAddr(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "test:" + hex.EncodeToString(b) + ":"
	c := redis.NewClient(&redis.Options{Addr: addr})
	s, err := Open(context.Background(), Config{
		Client: c, KeyPrefix: prefix, CutoffsKey: prefix + "cutoffs", ClaimsPrefix: claimsPrefix(prefix),
		ConfigureNotifications: true, ExpiryGrace: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() {
		ctx := context.Background()
		for _, p := range []string{prefix, s.cfg.ClaimsPrefix} {
			keys, _ := raw.Keys(ctx, globEscape(p)+"*").Result()
			if len(keys) > 0 {
				raw.Del(ctx, keys...)
			}
		}
		_ = raw.Close()
		_ = s.Close()
	})
	return s, raw
}

// claimPrefixes are the two layouts: claim keys under the jti prefix (they
// must not be read as jtis) and beside it.
var claimPrefixes = map[string]func(string) string{
	"under the jti prefix": func(p string) string { return p + "claim:" },
	"beside it":            func(p string) string { return "claims-" + p },
}

// TestClaimKeysRoundTrip: claim entries are written as keys of their own,
// merged (the later expiry wins, none beats any), expire in Redis at
// exp + grace, load as claim entries and never as jtis, and are deleted.
func TestClaimKeysRoundTrip(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Unix()
	for name, claimsPrefix := range claimPrefixes {
		t.Run(name, func(t *testing.T) {
			s, raw := openClaims(t, claimsPrefix)
			for _, e := range []rs.Entry{
				rs.ClaimEntry("https://i", "sid", "s1", exp),
				rs.ClaimEntry("https://i", "sid", "s1", exp-100), // shorter: kept
				rs.ClaimEntry("", "sid", "s2", exp),
				rs.ClaimEntry("", "sid", "s2", 0), // none: forever
				rs.ClaimEntry("", "sid", "s2", exp+100),
				rs.ClaimEntry("", "org", `s"1`, 0),
			} {
				if err := s.RevokeClaim(ctx, e); err != nil {
					t.Fatalf("RevokeClaim(%+v): %v", e, err)
				}
			}
			if err := s.RevokeToken(ctx, rs.Entry{JTI: "s1", Exp: exp}); err != nil {
				t.Fatal(err)
			}
			st, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, e := range st.Entries {
				got[fmt.Sprintf("%s|%s|%s", e.Iss, e.Claim, e.JTI)] = e.Exp
			}
			want := map[string]int64{"https://i|sid|s1": exp, "|sid|s2": 0, `|org|s"1`: 0, "||s1": exp}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("loaded %v; want %v", got, want)
			}
			key := s.claimKey(rs.EntryKey{Iss: "https://i", Claim: "sid", JTI: "s1"})
			if at, err := raw.ExpireTime(ctx, key).Result(); err != nil || int64(at/time.Second) != exp+60 {
				t.Fatalf("the key expires at %v (%v); want exp + grace, %d", at, err, exp+60)
			}
			if err := s.RevokeToken(ctx, rs.ClaimEntry("", "sid", "x", 0)); !errors.Is(err, rs.ErrInvalid) {
				t.Fatalf("RevokeToken of a claim entry: %v; want ErrInvalid", err)
			}
			if err := s.UnrevokeClaim(ctx, rs.EntryKey{Iss: "https://i", Claim: "sid", JTI: "s1"}); err != nil {
				t.Fatal(err)
			}
			if n, _ := raw.Exists(ctx, key).Result(); n != 0 {
				t.Fatal("the unrevoked claim key is still there")
			}
		})
	}
}

// TestFollowClaimKeys: a claim key written, extended or deleted by another
// replica reaches the index through keyspace notifications.
func TestFollowClaimKeys(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	for name, claimsPrefix := range claimPrefixes {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, raw := openClaims(t, claimsPrefix)
			other, err := Open(ctx, Config{Client: redis.NewClient(&redis.Options{Addr: raw.Options().Addr}),
				KeyPrefix: s.cfg.KeyPrefix, ClaimsPrefix: s.cfg.ClaimsPrefix, ExpiryGrace: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			idx := rs.NewIndex(nil, 0)
			followed := make(chan error, 1)
			go func() { followed <- s.Follow(ctx, idx) }()
			sid := func(v string) (int64, bool) {
				_, es, _ := idx.Snapshot()
				for _, e := range es {
					if e.Claim == "sid" && e.JTI == v {
						return e.Exp, true
					}
				}
				return 0, false
			}
			waitFor(t, "subscription", func() bool {
				_ = other.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "first", exp))
				_, ok := sid("first")
				return ok
			})
			if err := other.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "s1", exp)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "revoke", func() bool { e, ok := sid("s1"); return ok && e == exp })
			if err := other.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "s1", exp+500)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "extension", func() bool { e, _ := sid("s1"); return e == exp+500 })
			if err := other.UnrevokeClaim(ctx, rs.EntryKey{Claim: "sid", JTI: "s1"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "unrevoke", func() bool { _, ok := sid("s1"); return !ok })
			for _, e := range func() []rs.Entry { _, es, _ := idx.Snapshot(); return es }() {
				if e.Claim == "" {
					t.Fatalf("a claim key was read as a jti: %+v", e)
				}
			}
			cancel()
			if err := <-followed; !errors.Is(err, context.Canceled) {
				t.Fatalf("follow ended with %v", err)
			}
		})
	}
}

func TestClaimsPrefixMustNotBeginTheJTIPrefix(t *testing.T) {
	for _, c := range []struct {
		keys, claims string
		ok           bool
	}{
		{"", "", true}, {"", "jtiguard:claim:", true}, {"bl:", "claims:", true}, {"bl:", "bl:claim:", true},
		{"bl:", "bl:", false}, {"bl:claim:x", "bl:claim:", false}, {"anything", "a", false},
	} {
		if err := CheckPrefixes(c.keys, c.claims); (err == nil) != c.ok || err != nil && !errors.Is(err, ErrPrefixes) {
			t.Errorf("CheckPrefixes(%q, %q) = %v; want ok %v", c.keys, c.claims, err, c.ok)
		}
	}
	if _, err := Open(context.Background(), Config{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), KeyPrefix: "bl:", ClaimsPrefix: "bl"}); !errors.Is(err, ErrPrefixes) {
		t.Fatalf("Open with overlapping prefixes: %v", err)
	}
}

func TestClaimsOffWithoutAPrefix(t *testing.T) {
	s, _ := open(t)
	if s.HasClaims() {
		t.Fatal("claims on without a prefix")
	}
	if err := s.RevokeClaim(context.Background(), rs.ClaimEntry("", "sid", "x", 0)); !errors.Is(err, rs.ErrClaimsUnsupported) {
		t.Fatalf("RevokeClaim without a prefix: %v", err)
	}
}
