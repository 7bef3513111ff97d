package filter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"

	"github.com/jtiguard/jtiguard/credentials"
)

// TestKnownValuesDecideAsDiscovery: the shortcut a remembered header value takes (the
// Scanner's known values, the cache's links, the verified token's id) decides every request
// as the plain path does. A sequence of requests repeats header values, as clients do: a good
// token, the same payload under forged signatures, a revoked one, a refresh token, the
// token among other headers' candidates; meanwhile the good token is revoked and
// unrevoked, the clock passes its expiry, and a small cache evicts. Each request is decided
// by the plugin's own (remembering) Scanner and by a new one that remembers nothing, in a
// random order, against the same cache and list: the decisions must be the same.
func TestKnownValuesDecideAsDiscovery(t *testing.T) {
	quietLogs(t)
	f := &fixture{now: testNow, t: t}
	var p *pluginContext
	vm := newVMContext(func() time.Time { return f.now })
	cfg := `{"token":{"locations":["headers","cookies","query_string"]},"cache":{"max_entries":16},"jwt":{"hmac_secrets":[{"secret":` +
		jsonString(string(testKeys().hs)) + `}]},"sync":{"cluster":""},` + propertyRules + `}`
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(&capturingVM{vmContext: vm, got: &p}).WithPluginConfiguration([]byte(cfg)))
	defer reset()
	f.host = host
	host.StartPlugin()
	revokedGood := false
	revoke := func(good bool) {
		entries := []revokedEntry{{jti: "revoked-jti"}}
		if good {
			entries = append(entries, revokedEntry{jti: "good-jti"})
		}
		f.publish("jtiguard.", f.now, entries, nil)
		revokedGood = good
	}
	revoke(false)

	good := sign(t, jwt.SigningMethodHS256, testKeys().hs, claimsAt(testNow, "good-jti"), nil)
	h, pl, _ := splitToken(good)
	refresh := claimsAt(testNow, "refresh-jti")
	refresh["type"] = "refresh"
	tokens := []string{
		good,
		h + "." + pl + ".not-the-signature",
		h + "." + pl + "." + splitSig(sign(t, jwt.SigningMethodHS256, testKeys().hsOther, claimsAt(testNow, "good-jti"), nil)),
		sign(t, jwt.SigningMethodHS256, testKeys().hs, claimsAt(testNow, "revoked-jti"), nil),
		sign(t, jwt.SigningMethodHS256, testKeys().hs, refresh, nil),
	}
	for i := range 20 { // more tokens than the cache holds: evictions
		tokens = append(tokens, sign(t, jwt.SigningMethodHS256, testKeys().hs, claimsAt(testNow, fmt.Sprintf("other-%d", i)), nil))
	}
	plain := func() *credentials.Scanner {
		return credentials.NewScanner(&p.cfg.Token, kindsOf(p.cfg.topPolicy, p.cfg.rules), "")
	}
	remembering := p.scanner
	r := rand.New(rand.NewPCG(11, 12))
	allowed, known := 0, 0
	for i := range 4000 {
		switch {
		case i%500 == 250:
			revoke(true)
		case i%500 == 0:
			revoke(false)
		case i == 3000:
			f.now = testNow.Add(16 * time.Minute) // every token has expired
			revoke(false)
		}
		tok := tokens[r.IntN(len(tokens))]
		if r.IntN(3) == 0 {
			tok = tokens[r.IntN(5)]
		}
		headers := append([][2]string(nil), [2]string{":path", []string{"/api", "/auth/refresh", "/public/x", "/api?jwt=" + tokens[r.IntN(len(tokens))]}[r.IntN(4)]},
			[2]string{":method", []string{"GET", "POST"}[r.IntN(2)]})
		headers = append(headers, [2]string{"authorization", "Bearer " + string([]byte(tok))}) // a new string each time, as from the host
		if r.IntN(5) == 0 {
			headers = append(headers, [2]string{"cookie", "access_token_cookie=" + tokens[r.IntN(len(tokens))]})
		}
		decideWith := func(sc *credentials.Scanner) decision {
			p.scanner = sc
			return *p.decide(headers, nil, true)
		}
		var mem, ref decision
		if r.IntN(2) == 0 {
			mem, ref = decideWith(remembering), decideWith(plain())
		} else {
			ref, mem = decideWith(plain()), decideWith(remembering)
		}
		p.scanner = remembering
		if mem.allow != ref.allow || mem.status != ref.status || mem.details != ref.details || string(mem.body) != string(ref.body) {
			t.Fatalf("request %d %q: remembering %s; plain %s", i, headers, describe(&mem), describe(&ref))
		}
		if mem.allow && mem.details == "jtiguard_allowed" {
			allowed++
		}
		// And what both must say, whatever else the request holds: a revoked token is never
		// let through, on any route; a forged signature never passes as valid.
		if mem.allow && (tok == tokens[3] || revokedGood && tok == good) {
			t.Fatalf("request %d %q: a revoked token allowed (%s)", i, headers, mem.details)
		}
		if mem.details == "jtiguard_allowed" && (tok == tokens[1] || tok == tokens[2]) {
			t.Fatalf("request %d %q: a forged signature allowed as valid", i, headers)
		}
		if res := remembering.Scan(headers, nil); res.Selected[credentials.Access].Known != 0 {
			known++
		}
	}
	if allowed < 500 || known < 2000 {
		t.Fatalf("%d requests allowed with a valid token, %d with a known value: the sequence does not exercise the shortcut", allowed, known)
	}
	t.Logf("4000 requests decided alike: %d allowed with a valid token, %d with a known value", allowed, known)
}

func splitSig(tok string) string {
	_, _, s := splitToken(tok)
	return s
}

// TestCacheLinkFollowsOnlyLiveEntries: a link from a known value's id to its entry is not
// followed once the entry left the table (evicted), nor for another id in its slot.
func TestCacheLinkFollowsOnlyLiveEntries(t *testing.T) {
	c := newTokenCache(8)
	e := &entry{payload: "linked"}
	c.put(e)
	c.links[5%cacheLinks] = link{5, e}
	if c.linked(5) != e {
		t.Fatal("a live entry's link is not followed")
	}
	if c.linked(5+cacheLinks) != nil || c.linked(0) != nil {
		t.Fatal("a link is followed for another id")
	}
	for i := range 64 {
		c.put(&entry{payload: fmt.Sprintf("other-%d", i)})
	}
	if c.get("linked") != nil {
		t.Fatal("the entry was not evicted")
	}
	if got := c.linked(5); got != nil {
		t.Fatalf("an evicted entry's link is followed: %q", got.payload)
	}
}

// TestCacheLinkUndoneWhenItsEntryLeaves: an entry replaced by a colliding payload's, or
// evicted, takes its link with it (nothing keeps it alive), and a link met stale is dropped.
func TestCacheLinkUndoneWhenItsEntryLeaves(t *testing.T) {
	c := newTokenCache(8)
	e := &entry{payload: "linked"}
	c.put(e)
	c.link(7, e)
	other := &entry{payload: "other"}
	other.key = e.key
	c.unlink(c.entries.set(e.key, other)) // what put does for a colliding payload
	if c.links[7].e != nil || c.linked(7) != nil {
		t.Fatal("a replaced entry's link is kept")
	}
	c = newTokenCache(8)
	e = &entry{payload: "linked"}
	c.put(e)
	c.link(9, e)
	for i := range 64 {
		c.put(&entry{payload: fmt.Sprintf("other-%d", i)})
	}
	if c.links[9].e != nil {
		t.Fatal("an evicted entry's link is kept")
	}
	// Linked under two ids (two signatures of one payload): the first link, met stale, goes.
	c = newTokenCache(8)
	e = &entry{payload: "twice"}
	c.put(e)
	c.link(3, e)
	c.link(4, e)
	for i := range 64 {
		c.put(&entry{payload: fmt.Sprintf("other-%d", i)})
	}
	if c.linked(3) != nil || c.links[3].e != nil {
		t.Fatal("a stale link is followed or kept")
	}
}

// TestVerifiedUnderAnotherIDIsCompared: a token verified under an id, then another token of
// the same payload verified without one (or under another), leaves nothing that lets the
// first id skip the comparison: the entry's token is the second one now.
func TestVerifiedUnderAnotherIDIsCompared(t *testing.T) {
	cfg, _ := ParseConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s"}]}}`), nil)
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	for _, second := range []uint64{0, 2} {
		c := newTokenCache(8)
		c.putVerified("h.payload.first", tokenInfo{}, 0, sc, false, 1)
		if _, ok := c.verified("h.payload.first", "payload", 0, 1); !ok {
			t.Fatal("the first token, under its id, is not verified")
		}
		c.putVerified("h.payload.second", tokenInfo{}, 0, sc, false, second)
		if _, ok := c.verified("h.payload.first", "payload", 0, 1); ok {
			t.Fatalf("second under id %d: the first token passes under its old id without a comparison", second)
		}
		if _, ok := c.verified("h.payload.second", "payload", 0, second); !ok {
			t.Fatalf("second under id %d: not verified", second)
		}
	}
}
