package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
	rs "github.com/jtiguard/jtiguard/revocationsource"
)

// TestUUIDColumnMatchesEverySpelling: on a PostgreSQL uuid jti column, the app's own check
// (WHERE jti = '<token's jti>') matches every spelling PostgreSQL reads as that uuid (upper
// case, no hyphens, braces), while the source serves PostgreSQL's canonical text. The filter
// keys a jti that is a UUID by its canonical text (blocklistsync.canonicalUUID), so the key of
// what the source serves is the key of the token's jti however the issuer spelled it; before,
// such a token was revoked in the app's table and let through.
func TestUUIDColumnMatchesEverySpelling(t *testing.T) {
	d := newDB(t, Postgres, "")
	d.exec(t, `CREATE TABLE token_blocklist (id SERIAL PRIMARY KEY, jti UUID NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT now())`)
	s := d.open(t, Config{})
	ctx := context.Background()
	const upper = "6F1E2B0C-7D7C-4C1A-9A57-2B0F7C8E9D10" // a token's jti, as the issuer wrote it
	const hexOnly = "a1b2c3d4e5f60718293a4b5c6d7e8f90"   // uuid4().hex, a common jti spelling
	// The app's logout writes the token's jti as it is; the admin API accepts both spellings.
	d.exec(t, `INSERT INTO token_blocklist (jti) VALUES ('`+upper+`')`)
	if err := s.RevokeToken(ctx, rs.Entry{JTI: hexOnly, Exp: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatalf("admin revoke of %q: %v", hexOnly, err)
	}
	for _, jti := range []string{upper, hexOnly} {
		var n int
		if err := d.raw.QueryRow(`SELECT count(*) FROM token_blocklist WHERE jti = $1`, jti).Scan(&n); err != nil || n != 1 {
			t.Fatalf("the app's own check for %q finds %d rows (%v)", jti, n, err)
		}
	}
	got := entriesOf(t, s)
	h, err := blocklistsync.NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	served := map[uint64]bool{}
	for jti := range got {
		served[h.TokenKey("", jti)] = true
	}
	for _, jti := range []string{upper, hexOnly, "{" + upper + "}"} {
		if !served[h.TokenKey("", jti)] {
			t.Errorf("the app's table revokes jti %q, but no jti the feed carries (%v) has its key: the filter lets the token through", jti, keys(got))
		}
	}
}

func keys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
