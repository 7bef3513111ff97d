package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// claimsOf is every claim entry Load returns, by iss|claim|value.
func claimsOf(t *testing.T, s *Store) map[string]int64 {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range st.Entries {
		if e.Claim != "" {
			out[e.Iss+"|"+e.Claim+"|"+e.JTI] = e.Exp
		}
	}
	return out
}

// TestClaimsTableRoundTrip: with the claims table (created when asked),
// claim entries are written, merged (the later expiry wins, none beats any),
// loaded beside jti entries of the same text, left out and pruned past
// exp + grace, and deleted.
func TestClaimsTableRoundTrip(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Unix()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			if driver == SQLite {
				d.dsn = filepath.Join(t.TempDir(), "new.db")
			}
			s := d.open(t, Config{CreateTables: true, ExpiryGrace: time.Minute})
			if !s.HasClaims() {
				t.Fatal("no claims table after CreateTables")
			}
			revoke := func(e rs.Entry) {
				t.Helper()
				if err := s.RevokeClaim(ctx, e); err != nil {
					t.Fatalf("RevokeClaim(%+v): %v", e, err)
				}
			}
			revoke(rs.ClaimEntry("https://i", "sid", "s1", now+100))
			revoke(rs.ClaimEntry("https://i", "sid", "s1", now+50)) // shorter: kept at +100
			revoke(rs.ClaimEntry("", "sid", "s2", now+100))
			revoke(rs.ClaimEntry("", "sid", "s2", 0)) // none: forever
			revoke(rs.ClaimEntry("", "sid", "s2", now+200))
			revoke(rs.ClaimEntry("", "org", "s1", now-120)) // past exp + grace
			revoke(rs.ClaimEntry("", "org", "s3", now-30))  // past exp, within grace
			if err := s.RevokeToken(ctx, rs.Entry{JTI: "s1", Exp: now + 100}); err != nil {
				t.Fatal(err)
			}
			got := claimsOf(t, s)
			want := map[string]int64{"https://i|sid|s1": now + 100, "|sid|s2": 0, "|org|s3": now - 30}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("claim entries %v; want %v", got, want)
			}
			if e := entriesOf(t, s); e["s1"] != now+100 {
				t.Fatalf("the jti entry of the same text: %v", e)
			}
			if err := s.RevokeToken(ctx, rs.ClaimEntry("", "sid", "x", 0)); !errors.Is(err, rs.ErrInvalid) {
				t.Fatalf("RevokeToken of a claim entry: %v; want ErrInvalid, never a jti row", err)
			}
			n, err := s.Prune(ctx)
			if err != nil || n < 1 {
				t.Fatalf("Prune = %d, %v; want the expired claim entry deleted", n, err)
			}
			var rows int
			if err := s.DB().QueryRow(`SELECT COUNT(*) FROM jtiguard_claim_revocations`).Scan(&rows); err != nil || rows != 3 {
				t.Fatalf("%d claim rows after pruning, %v; want 3", rows, err)
			}
			if err := s.UnrevokeClaim(ctx, rs.EntryKey{Iss: "https://i", Claim: "sid", JTI: "s1"}); err != nil {
				t.Fatal(err)
			}
			if got := claimsOf(t, s); len(got) != 2 || got["https://i|sid|s1"] != 0 {
				t.Fatalf("after unrevoking: %v", got)
			}
		})
	}
}

// TestClaimsFollowedAcrossReplicas: two sources on one database. What one
// revokes, the other's poll brings into its index, and an expiry extended by
// a later revocation too (the row gets a new id); an unrevoke reaches it at
// reconciliation.
func TestClaimsFollowedAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Unix()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			if driver == SQLite {
				d.dsn = filepath.Join(t.TempDir(), "new.db")
			}
			a := d.open(t, Config{CreateTables: true})
			b := d.open(t, Config{})
			idx := rs.NewIndex(nil, 0)
			sy := &rs.Syncer{Store: b, Index: idx}
			if err := sy.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "s1", now+60)); err != nil {
				t.Fatal(err)
			}
			if err := b.PollOnce(ctx, idx); err != nil {
				t.Fatal(err)
			}
			_, es, _ := idx.Snapshot()
			if len(es) != 1 || es[0] != rs.ClaimEntry("", "sid", "s1", now+60) {
				t.Fatalf("after b's poll: %+v", es)
			}
			if err := a.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "s1", now+3600)); err != nil {
				t.Fatal(err)
			}
			if err := b.PollOnce(ctx, idx); err != nil {
				t.Fatal(err)
			}
			if _, es, _ = idx.Snapshot(); len(es) != 1 || es[0].Exp != now+3600 {
				t.Fatalf("the extended expiry did not reach b: %+v", es)
			}
			if err := a.UnrevokeClaim(ctx, rs.EntryKey{Claim: "sid", JTI: "s1"}); err != nil {
				t.Fatal(err)
			}
			if err := sy.ReconcileOnce(ctx); err != nil {
				t.Fatal(err)
			}
			if n, _ := idx.Len(); n != 0 {
				t.Fatalf("after the unrevoke and b's reconciliation: %d entries", n)
			}
		})
	}
}

// TestConcurrentClaimRevocations: revocations of one new entry at once all
// succeed, and the latest expiry is what stays.
func TestConcurrentClaimRevocations(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Unix()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			if driver == SQLite {
				d.dsn = filepath.Join(t.TempDir(), "new.db")
			}
			s := d.open(t, Config{CreateTables: true})
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- s.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "race", now+int64(100*(i+1))))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("a concurrent revocation failed: %v", err)
				}
			}
			if got := claimsOf(t, s); len(got) != 1 || got["|sid|race"] != now+800 {
				t.Fatalf("claim entries %v; want one, at +800", got)
			}
		})
	}
}

// TestClaimsTableOptIn: without the table nothing is created and claim
// revocations say why; a table named but missing, or one of another shape,
// is a schema error; a table dropped under a running server makes it
// unreadable, not empty.
func TestClaimsTableOptIn(t *testing.T) {
	ctx := context.Background()
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			d := newDB(t, driver, "")
			d.exec(t, flaskDDL[driver]["v1"]...)
			s := d.open(t, Config{})
			if s.HasClaims() {
				t.Fatal("claims on without a claims table")
			}
			if err := s.RevokeClaim(ctx, rs.ClaimEntry("", "sid", "x", 0)); !errors.Is(err, rs.ErrClaimsUnsupported) {
				t.Fatalf("RevokeClaim without the table: %v", err)
			}
			var se *SchemaError
			if _, err := d.tryOpen(Config{ClaimsTable: Named("my_claims")}); !errors.As(err, &se) || se.Setting != "ClaimsTable" {
				t.Fatalf("a named, missing claims table: %v", err)
			}
			d.exec(t, `CREATE TABLE jtiguard_claim_revocations (id INTEGER PRIMARY KEY, iss TEXT, claim TEXT, expires BIGINT)`)
			if _, err := d.tryOpen(Config{}); !errors.As(err, &se) || se.Column != "value" {
				t.Fatalf("a claims table without value: %v", err)
			}
			d.exec(t, `DROP TABLE jtiguard_claim_revocations`)
			s2 := d.open(t, Config{CreateTables: true})
			if !s2.HasClaims() {
				t.Fatal("no claims table after CreateTables")
			}
			d.exec(t, `DROP TABLE jtiguard_claim_revocations`)
			if _, err := s2.Load(ctx); !errors.Is(err, rs.ErrUnreadable) {
				t.Fatalf("Load after the claims table was dropped: %v; want ErrUnreadable", err)
			}
		})
	}
}
