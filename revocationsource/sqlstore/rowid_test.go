package sqlstore

// Review r2 (revocation source): failing tests for gaps in the SQL store.

import (
	"context"
	"fmt"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

func indexHas(idx *rs.Index, jti string) bool {
	_, es, _ := idx.Snapshot()
	for _, e := range es {
		if e.JTI == jti && e.Claim == "" {
			return true
		}
	}
	return false
}

// TestSQLiteRowidsReusedAfterPruneAreFollowed: Flask-SQLAlchemy's
// `id = db.Column(db.Integer, primary_key=True)` is a SQLite rowid without
// AUTOINCREMENT, so once every row is deleted (the source's own
// --sql-prune-interval, or the app's cleanup of expired rows, after a quiet
// period longer than the token lifetime + grace) the app's next logout gets
// id 1. The follower reads ids above its highest seen minus 256; it once
// never moved that highest down, so every new revocation was invisible to the
// id poll until the id climbed back (each reached the feed only at the next
// reconciliation). The poll now follows the table's highest id down.
func TestSQLiteRowidsReusedAfterPruneAreFollowed(t *testing.T) {
	ctx := context.Background()
	d, s, idx, sy := prunedFlaskTable(t, 300)
	// The app's logout, as flask-jwt-extended's example writes it.
	now := time.Now().UTC().Format("2006-01-02 15:04:05.000000")
	d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('fresh-logout', '`+now+`')`)
	var id int64
	if err := d.raw.QueryRow(`SELECT id FROM token_blocklist WHERE jti = 'fresh-logout'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	// A few id polls (--sql-poll-interval), no reconciliation.
	for i := 0; i < 3; i++ {
		if err := s.PollOnce(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	if !indexHas(idx, "fresh-logout") {
		t.Fatalf("a row the app inserted (id %d, reused after the prune) is not followed by the id poll: "+
			"the revoked token reaches the app until the next full reconciliation", id)
	}
	// And after a reconciliation, the next one is missed again.
	if err := sy.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	d.exec(t, `INSERT INTO token_blocklist (jti, created_at) VALUES ('second-logout', '`+now+`')`)
	if err := s.PollOnce(ctx, idx); err != nil {
		t.Fatal(err)
	}
	if !indexHas(idx, "second-logout") {
		t.Fatal("after a reconciliation, the next reused id is still not followed")
	}
}

// prunedFlaskTable is flask-jwt-extended's SQLite table after n access tokens revoked three
// hours ago (past 15 m and the 1 h grace) were read by the source and pruned: empty, its next
// rows to take the ids 1, 2, ...
func prunedFlaskTable(t *testing.T, n int) (*testDB, *Store, *rs.Index, *rs.Syncer) {
	t.Helper()
	ctx := context.Background()
	d := newDB(t, SQLite, "")
	d.exec(t, flaskDDL[SQLite]["v1"]...)
	old := time.Now().UTC().Add(-3 * time.Hour).Format("2006-01-02 15:04:05.000000")
	for i := 0; i < n; i++ {
		d.exec(t, fmt.Sprintf(`INSERT INTO token_blocklist (jti, created_at) VALUES ('old-%d', '%s')`, i, old))
	}
	s := d.open(t, Config{AccessTokenExpires: 15 * time.Minute, RefreshTokenExpires: 15 * time.Minute})
	idx := rs.NewIndex(nil, 0)
	sy := &rs.Syncer{Store: s, Index: idx}
	if err := sy.ReconcileOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if pruned, err := s.Prune(ctx); err != nil || pruned != int64(n) {
		t.Fatalf("prune = %d, %v; want %d", pruned, err, n)
	}
	return d, s, idx, sy
}
