package filter

import (
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/credentials"
)

// FuzzSameTokenIsEqual holds the cache's token comparison, which skips the bytes of the
// payload it already compared, to string equality: a token is found verified exactly when a
// token equal to it verified, whatever its header and signature, however its dots lie, and
// whether the payload handed in is a view into the token (discovery's) or a copy.
func FuzzSameTokenIsEqual(f *testing.F) {
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln", "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2lm", 0, true)
	f.Add("a.b.c", "a.b.c", 0, true)
	f.Add("a.b.c.d", "a.b.c.e", 3, true)
	f.Add("ab.c", "ab.c", 0, false)
	f.Add("x.payload.sig", "xy.payload.si", 1, true)
	f.Add("h.p.s", "h.p.s.", 0, true)
	f.Add("..", "..", 0, true)
	cfg := DefaultConfig()
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	f.Fuzz(func(t *testing.T, cached, token string, flip int, view bool) {
		if flip > 0 && len(token) > 0 {
			b := []byte(token)
			b[flip%len(b)] ^= 1
			token = string(b)
		}
		c := newTokenCache(4)
		c.putVerified(cached, tokenInfo{}, 0, sc, false, 0)
		payload := payloadOf(token)
		if !view {
			payload = strings.Clone(payload)
		}
		e := c.lookup(payload)
		want := e != nil && e.token == token
		_, got := c.verified(token, payload, 0, 0)
		if got != want {
			t.Fatalf("verified(%q) after %q verified = %v; want %v", token, cached, got, want)
		}
	})
}
