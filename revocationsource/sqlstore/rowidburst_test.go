package sqlstore

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestRowidReuseBurst: after the prune emptied the table, more than idLookback logouts
// arrive within one poll interval (ids 1..300 reused). Moving the highest seen down to
// MAX(id)=300 would read ids > 44 and skip 1..44; the poll reads from the start once instead.
func TestRowidReuseBurst(t *testing.T) {
	ctx := context.Background()
	d, s, idx, _ := prunedFlaskTable(t, 600)
	now := time.Now().UTC().Format("2006-01-02 15:04:05.000000")
	for i := 0; i < 300; i++ {
		d.exec(t, fmt.Sprintf(`INSERT INTO token_blocklist (jti, created_at) VALUES ('new-%d', '%s')`, i, now))
	}
	for i := 0; i < 3; i++ {
		if err := s.PollOnce(ctx, idx); err != nil {
			t.Fatal(err)
		}
	}
	missing := 0
	for i := 0; i < 300; i++ {
		if !indexHas(idx, fmt.Sprintf("new-%d", i)) {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of 300 logouts with reused ids not followed by the id poll", missing)
	}
}
