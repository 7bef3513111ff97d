package jwkssync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// TestFetchPublishAdopt: the lease holder fetches with the configured request, publishes, and
// every other VM adopts the key set on its next tick; the callout carries the configured
// cluster, path, authority, headers and timeout.
func TestFetchPublishAdopt(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1), r.vm(2)
	k := testKeys()
	tok := esToken(t, k.ec1, "k1", "j1")
	a.sync.Tick()
	b.sync.Tick()
	if len(b.host.calls) != 0 {
		t.Fatalf("VM b fetched without the lease: %d calls", len(b.host.calls))
	}
	c := a.host.pending()
	for _, want := range [][2]string{{":method", "GET"}, {":path", "/jwks.json"}, {":authority", "issuer.example"}, {"authorization", "Bearer jwks-secret"}} {
		if got := c.header(want[0]); got != want[1] {
			t.Fatalf("fetch header %s = %q; want %q", want[0], got, want[1])
		}
	}
	if c.cluster != "issuer" || c.timeout != 5000 || c.header("if-none-match") != "" {
		t.Fatalf("fetch = cluster %q timeout %d if-none-match %q", c.cluster, c.timeout, c.header("if-none-match"))
	}
	if a.verifies(tok) || b.verifies(tok) {
		t.Fatal("ES256 token verifies before any JWKS")
	}
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	if !a.verifies(tok) || a.changes != 1 || !a.sync.HasRemote() {
		t.Fatalf("fetching VM: verifies %v, changes %d; want the new key at once", a.verifies(tok), a.changes)
	}
	if b.verifies(tok) {
		t.Fatal("VM b verified before its tick")
	}
	b.sync.Tick()
	if !b.verifies(tok) || b.changes != 1 {
		t.Fatalf("VM b after its tick: verifies %v, changes %d", b.verifies(tok), b.changes)
	}
	// Inline keys stay: an HS256 token with the inline secret verifies on both.
	if hs := hsToken(t, "inline", "j2"); !a.verifies(hs) || !b.verifies(hs) {
		t.Fatal("inline HS256 key lost when the remote set arrived")
	}
	// A VM started later gets the key set at Load, before any tick, and takes no lease.
	late := r.vm(3)
	late.sync.Load()
	if !late.verifies(tok) {
		t.Fatal("Load did not adopt the published key set")
	}
	raw, _, _ := r.store.GetSharedData(KeysFor("jtiguard.").Lease)
	if l, _ := parseLease(raw); l.holder != 1 {
		t.Fatalf("lease holder after Load = %d; want 1", l.holder)
	}
	if got := r.metrics.get("jwks.fetch_successes"); got != 1 {
		t.Fatalf("fetch_successes = %d; want 1", got)
	}
	if got := r.metrics.get("jwks.keys"); got != 1 {
		t.Fatalf("keys gauge = %d; want 1", got)
	}
}

// TestRotation: a new key published beside the old one verifies as soon as the set is
// fetched (here early, through the kid miss of its first token); once the old key is
// removed, its tokens stop verifying on every VM.
func TestRotation(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1), r.vm(2)
	k := testKeys()
	old1 := esToken(t, k.ec1, "k1", "old")
	new2 := esToken(t, k.ec2, "k2", "new")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	b.sync.Tick()

	// The issuer publishes k2 beside k1, and starts signing with k2. The first such token is
	// refused (a kid this proxy does not hold) and asks for an early fetch, without blocking.
	r.idle(time.Minute, a, b)
	if err, v := b.check(new2); err == nil || v != Reject {
		t.Fatalf("k2 token before the fetch: err %v, verdict %v; want a rejection", err, v)
	}
	b.sync.Tick() // writes the early request into the lease
	a.sync.Tick() // the holder sees it due
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey), jwkEC("k2", "ES256", &k.ec2.PublicKey)))
	b.sync.Tick()
	for name, w := range map[string]*vm{"a": a, "b": b} {
		if !w.verifies(new2) || !w.verifies(old1) {
			t.Fatalf("VM %s in the overlap: new %v, old %v; want both", name, w.verifies(new2), w.verifies(old1))
		}
	}
	if got := r.metrics.get("jwks.early_fetches"); got != 1 {
		t.Fatalf("early fetches = %d; want 1", got)
	}

	// k1 is removed; the next scheduled refresh drops it everywhere.
	r.idle(r.cfg.RefreshInterval.D(), a, b)
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k2", "ES256", &k.ec2.PublicKey)))
	b.sync.Tick()
	for name, w := range map[string]*vm{"a": a, "b": b} {
		if !w.verifies(new2) || w.verifies(old1) {
			t.Fatalf("VM %s after removal: new %v, old %v; want only new", name, w.verifies(new2), w.verifies(old1))
		}
		if err, v := w.check(old1); v != Reject {
			t.Fatalf("VM %s: removed key's token: %v, verdict %v; want Reject (a held set is never fail_mode)", name, err, v)
		}
	}
}

// TestKidMissRateLimited: misses on any VM move the fetch forward at most once per MissGap
// for the whole proxy; a token naming a held kid with a bad signature asks nothing.
func TestKidMissRateLimited(t *testing.T) {
	r := newRig(t)
	a, b, c := r.vm(1), r.vm(2), r.vm(3)
	k := testKeys()
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	b.sync.Tick()
	c.sync.Tick()
	fetches := func() int { return len(a.host.calls) }

	r.idle(time.Minute, a, b, c)
	b.check(esToken(t, k.ec2, "k2", "x"))
	b.sync.Tick()
	a.sync.Tick()
	if fetches() != 2 {
		t.Fatalf("fetches after a miss = %d; want 2", fetches())
	}
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))

	// Within the gap: another miss on another VM, and many on the same: no fetch.
	for i := range 20 {
		r.advance(time.Second)
		c.check(esToken(t, k.ec3, fmt.Sprintf("k%d", 10+i), "x"))
		b.check(esToken(t, k.ec3, "k3", "x"))
		c.sync.Tick()
		b.sync.Tick()
		a.sync.Tick()
	}
	if fetches() != 2 {
		t.Fatalf("fetches within the gap = %d; want still 2", fetches())
	}
	// A held kid with a forged signature is not a miss.
	r.idle(DefaultMissGap, a, b, c)
	forged := esToken(t, k.ec3, "k1", "forged")
	if err, _ := b.check(forged); err == nil {
		t.Fatal("forged token verified")
	}
	b.sync.Tick()
	a.sync.Tick()
	if fetches() != 2 {
		t.Fatalf("fetches after a bad signature under a held kid = %d; want 2", fetches())
	}
	// After the gap, a miss asks again.
	c.check(esToken(t, k.ec3, "k3", "x"))
	c.sync.Tick()
	a.sync.Tick()
	if fetches() != 3 {
		t.Fatalf("fetches after the gap = %d; want 3", fetches())
	}
	if got := r.metrics.get("jwks.early_fetches"); got != 2 {
		t.Fatalf("early fetches = %d; want 2", got)
	}
	if n := len(c.host.logged(abi.LogLevelInfo, "fetching the JWKS early")) + len(b.host.logged(abi.LogLevelInfo, "fetching the JWKS early")); n != 2 {
		t.Fatalf("early-fetch logs = %d; want one per early fetch", n)
	}
}

// TestHostileEndpoint: every kind of bad answer keeps the last good key set, is counted and
// logged once, and backs off; the endpoint coming back is said once.
func TestHostileEndpoint(t *testing.T) {
	k := testKeys()
	good := jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey))
	cases := []struct {
		name     string
		answer   func(h *fakeHost)
		rejected bool // counted as a refused body
		want     string
	}{
		{"500", func(h *fakeHost) { h.answer(500, nil, "oops") }, false, `status "500"`},
		{"router 503", func(h *fakeHost) { h.answer(503, nil, "upstream connect error") }, false, `status "503"`},
		{"reset", func(h *fakeHost) { h.reset() }, false, "connection reset or timeout"},
		{"huge body", func(h *fakeHost) { h.answerSized(200, jsonHeaders, "", 64<<20) }, true, "exceeds max_bytes"},
		{"garbage", func(h *fakeHost) { h.answer(200, jsonHeaders, "<html>\x00\xff") }, true, "not a JWKS document"},
		{"empty body", func(h *fakeHost) { h.answer(200, jsonHeaders, "") }, true, "not a JWKS document"},
		{"no keys member", func(h *fakeHost) { h.answer(200, jsonHeaders, `{"kids":[]}`) }, true, "not a JWKS document"},
		{"empty key list", func(h *fakeHost) { h.answer(200, jsonHeaders, `{"keys":[]}`) }, true, "holds no key"},
		{"keys of the wrong kind", func(h *fakeHost) {
			h.answer(200, jsonHeaders, jwks(
				jwkRSA("weak", "RS256", &k.weakRSA.PublicKey), // 1024 bits
				map[string]string{"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64u(make([]byte, 32))},
				jwkEC("p384", "ES384", &k.p384.PublicKey),  // ES384 not allowed
				jwkEC("pinned", "RS256", &k.ec2.PublicKey), // an alg its key cannot serve
				map[string]string{"kty": "oct", "kid": "o", "k": b64u([]byte("-----BEGIN PUBLIC KEY-----"))},
				func() map[string]string {
					m := jwkEC("priv", "ES256", &k.ec3.PublicKey)
					m["d"] = b64u(k.ec3.D.Bytes())
					return m
				}(),
				func() map[string]string { m := jwkEC("offcurve", "ES256", &k.ec3.PublicKey); m["y"] = m["x"]; return m }(),
			))
		}, true, "no usable signing key"},
		{"too many keys", func(h *fakeHost) {
			var keys []any
			for i := range 101 {
				keys = append(keys, jwkEC(fmt.Sprint(i), "ES256", &k.ec2.PublicKey))
			}
			h.answer(200, jsonHeaders, jwks(keys...))
		}, true, "too many keys"},
		{"304 without a validator", func(h *fakeHost) { h.answer(304, nil, "") }, true, "304 Not Modified"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			a, b := r.vm(1), r.vm(2)
			tok := esToken(t, k.ec1, "k1", "j")
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, good)
			b.sync.Tick()
			r.advance(r.cfg.RefreshInterval.D())
			a.sync.Tick()
			logs := len(a.host.logs)
			tc.answer(a.host)
			b.sync.Tick()
			if !a.verifies(tok) || !b.verifies(tok) {
				t.Fatal("last good key set lost")
			}
			if got := r.metrics.get("jwks.fetch_failures"); got != 1 {
				t.Fatalf("fetch_failures = %d; want 1", got)
			}
			if got, want := r.metrics.get("jwks.rejected"), map[bool]int64{true: 1}[tc.rejected]; got != want {
				t.Fatalf("rejected = %d; want %d", got, want)
			}
			warns := a.host.logs[logs:]
			if len(warns) != 1 || !strings.Contains(warns[0], tc.want) || !strings.Contains(warns[0], "keeping the key set held (generation 1, 1 keys)") {
				t.Fatalf("logs of the failure = %q; want one line saying %q and that the set is kept", warns, tc.want)
			}
			if strings.Contains(strings.Join(a.host.logs, "\n"), "jwks-secret") {
				t.Fatal("a log carries the configured header's secret")
			}
			// Backoff: 1 s, then 2 s.
			calls := len(a.host.calls)
			r.advance(999 * time.Millisecond)
			a.sync.Tick()
			if len(a.host.calls) != calls {
				t.Fatal("retried before the 1 s backoff")
			}
			r.advance(time.Millisecond)
			a.sync.Tick()
			tc.answer(a.host)
			r.advance(1999 * time.Millisecond)
			a.sync.Tick()
			if len(a.host.calls) != calls+1 {
				t.Fatal("retried before the 2 s backoff")
			}
			r.advance(time.Millisecond)
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, good)
			if got := a.host.logged(abi.LogLevelInfo, "fetched again after 2 failed fetches"); len(got) != 1 {
				t.Fatalf("recovery logs = %q", a.host.logs)
			}
		})
	}
}

// TestSkippedKeysLoggedOnce: a document with some bad keys is used for its good ones; the
// skipped ones are named in the one log line of the change, and not again while unchanged.
func TestSkippedKeysLoggedOnce(t *testing.T) {
	r := newRig(t)
	a := r.vm(1)
	k := testKeys()
	doc := jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey), jwkRSA("weak", "RS256", &k.weakRSA.PublicKey),
		map[string]string{"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"})
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, doc)
	first := a.host.logged(abi.LogLevelInfo, "first key set fetched")
	if len(first) != 1 || !strings.Contains(first[0], `1 keys (kids "k1"); 1 skipped: key "weak": RSA key of 1024 bits`) {
		t.Fatalf("first-set logs = %q", first)
	}
	for range 3 {
		r.advance(r.cfg.RefreshInterval.D())
		a.sync.Tick()
		a.host.answer(200, jsonHeaders, doc)
	}
	if len(a.host.logs) != 1 {
		t.Fatalf("logs after unchanged fetches = %q; want only the first", a.host.logs)
	}
	if a.changes != 1 {
		t.Fatalf("key set rebuilt %d times; want once (the document did not change)", a.changes)
	}
	g, _ := ParseGeneration(mustGet(t, r, KeysFor("jtiguard.").Generation))
	if g.Number != 1 || !g.LastSuccess.Equal(r.now) {
		t.Fatalf("generation after unchanged fetches = %d at %v; want 1 at %v", g.Number, g.LastSuccess, r.now)
	}
}

func mustGet(t *testing.T, r *rig, key string) []byte {
	t.Helper()
	v, _, err := r.store.GetSharedData(key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return v
}

// TestETagAndNotModified: the ETag is kept with the key set and sent back; a 304 renews the
// last success without a new generation.
func TestETagAndNotModified(t *testing.T) {
	r := newRig(t)
	a, b := r.vm(1), r.vm(2)
	k := testKeys()
	a.sync.Tick()
	a.host.answer(200, append(jsonHeaders, [2]string{"etag", `"v1"`}), jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	r.advance(r.cfg.RefreshInterval.D())
	a.sync.Tick()
	if got := a.host.pending().header("if-none-match"); got != `"v1"` {
		t.Fatalf("if-none-match = %q; want the ETag", got)
	}
	a.host.answer(304, nil, "")
	g, _ := ParseGeneration(mustGet(t, r, KeysFor("jtiguard.").Generation))
	if g.Number != 1 || !g.LastSuccess.Equal(r.now) {
		t.Fatalf("after 304: generation %d, last success %v; want 1, %v", g.Number, g.LastSuccess, r.now)
	}
	if r.metrics.get("jwks.not_modified") != 1 || r.metrics.get("jwks.fetch_successes") != 2 {
		t.Fatalf("not_modified %d, successes %d", r.metrics.get("jwks.not_modified"), r.metrics.get("jwks.fetch_successes"))
	}
	// The lease moves to b (a stops ticking): b sends the ETag of the set it adopted.
	b.sync.Tick()
	r.advance(DefaultLeaseTTL + r.cfg.RefreshInterval.D())
	b.sync.Tick()
	if got := b.host.pending().header("if-none-match"); got != `"v1"` {
		t.Fatalf("new holder's if-none-match = %q", got)
	}
	r.advance(time.Second)
	if b.sync.Tick(); r.metrics.get("jwks.staleness_ms") != (r.cfg.RefreshInterval.D() + DefaultLeaseTTL + time.Second).Milliseconds() {
		t.Fatalf("staleness gauge = %d", r.metrics.get("jwks.staleness_ms"))
	}
}

// TestLeaseAcrossVMs: one VM fetches at a time; when it stops ticking, another takes over
// after the lease TTL and keeps its schedule and backoff.
func TestLeaseAcrossVMs(t *testing.T) {
	r := newRig(t)
	vms := []*vm{r.vm(1), r.vm(2), r.vm(3)}
	k := testKeys()
	for _, w := range vms {
		w.sync.Tick()
	}
	vms[0].host.answer(500, nil, "")
	total := func() (n int) {
		for _, w := range vms {
			n += len(w.host.calls)
		}
		return n
	}
	for range 50 { // 5 s of ticks every 100 ms: retries at 1 s and 2 s, then waits 4 s
		r.advance(100 * time.Millisecond)
		for _, w := range vms {
			w.sync.Tick()
			if w.host.inFlight() {
				w.host.answer(500, nil, "")
			}
		}
	}
	if total() != 3 || len(vms[0].host.calls) != 3 {
		t.Fatalf("fetches in 5 s of failures = %d (holder %d); want 3, all by the holder", total(), len(vms[0].host.calls))
	}
	// The holder dies. Another VM takes over after the TTL and keeps the backoff: the 4th try
	// was due at 7 s (1+2+4), the takeover comes at 5 s + TTL.
	for range 200 {
		r.advance(100 * time.Millisecond)
		for _, w := range vms[1:] {
			w.sync.Tick()
			if w.host.inFlight() {
				w.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
			}
		}
		if total() > 3 {
			break
		}
	}
	if total() != 4 {
		t.Fatalf("fetches after the holder died = %d; want 4", total())
	}
	raw := mustGet(t, r, KeysFor("jtiguard.").Lease)
	l, _ := parseLease(raw)
	if l.holder == 1 || l.failures != 0 {
		t.Fatalf("lease after takeover: holder %d, failures %d", l.holder, l.failures)
	}
	for i, w := range vms[1:] {
		w.sync.Tick()
		if !w.verifies(esToken(t, k.ec1, "k1", "j")) {
			t.Fatalf("VM %d lacks the key set fetched by the new holder", i+2)
		}
	}
}

// TestWritersRacingConverge: two VMs that both fetched (the first holder stalled past its
// TTL with its fetch in flight) publish different documents; every VM ends on the same one,
// the last written.
func TestWritersRacingConverge(t *testing.T) {
	r := newRig(t)
	a, b, c := r.vm(1), r.vm(2), r.vm(3)
	k := testKeys()
	a.sync.Tick() // a's fetch hangs
	r.advance(DefaultLeaseTTL + time.Second)
	b.sync.Tick() // b takes the lease and fetches
	b.host.answer(200, jsonHeaders, jwks(jwkEC("k2", "ES256", &k.ec2.PublicKey)))
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey))) // a's answer, late
	for _, w := range []*vm{a, b, c} {
		w.sync.Tick()
	}
	tok1, tok2 := esToken(t, k.ec1, "k1", "j"), esToken(t, k.ec2, "k2", "j")
	for name, w := range map[string]*vm{"a": a, "b": b, "c": c} {
		if !w.verifies(tok1) || w.verifies(tok2) {
			t.Fatalf("VM %s: k1 %v, k2 %v; want the last written set (k1) only", name, w.verifies(tok1), w.verifies(tok2))
		}
	}
}

// TestNeverArrivedFollowsFailMode: until a remote key set arrives, a token of an allowed
// algorithm that the inline keys cannot verify follows fail_mode; inline tokens verify, and
// what no key could fix (alg none, malformed, a disallowed algorithm, a bad signature under
// an inline kid) is refused as usual.
func TestNeverArrivedFollowsFailMode(t *testing.T) {
	k := testKeys()
	for _, open := range []bool{false, true} {
		t.Run(map[bool]string{false: "closed", true: "open"}[open], func(t *testing.T) {
			r := newRig(t)
			r.failOpen = open
			a := r.vm(1)
			a.sync.Tick()
			a.host.reset() // the endpoint is down
			remote := Unavailable
			if open {
				remote = Unchecked
			}
			forgedInline := func() string { // HS256 under the inline kid, wrong secret
				tok := hsToken(t, "inline", "f")
				return tok[:len(tok)-4] + "AAAA"
			}()
			cases := []struct {
				name string
				tok  string
				want Verdict
				ok   bool
			}{
				{"inline HS256 key", hsToken(t, "inline", "j"), Reject, true},
				{"ES256 with a kid", esToken(t, k.ec1, "k1", "j"), remote, false},
				{"ES256 without a kid", esToken(t, k.ec1, "", "j"), remote, false},
				{"HS256 without a kid, another secret", func() string {
					tok := hsToken(t, "", "j")
					return tok[:len(tok)-4] + "AAAA"
				}(), remote, false},
				{"bad signature under the inline kid", forgedInline, Reject, false},
				{"alg none", "eyJhbGciOiJub25lIn0.eyJqdGkiOiJqIn0.", Reject, false},
				{"ES384 (not allowed)", esToken(t, k.p384, "k9", "j"), Reject, false},
				{"malformed", "not.a.token", Reject, false},
			}
			for _, c := range cases {
				err, v := a.check(c.tok)
				if (err == nil) != c.ok || v != c.want {
					t.Errorf("%s: err %v, verdict %v; want ok %v, verdict %v", c.name, err, v, c.ok, c.want)
				}
			}
			a.sync.Tick()
			name := map[bool]string{false: "jwks.fail_mode_closed", true: "jwks.fail_mode_open"}[open]
			if got := r.metrics.get(name); got != 3 {
				t.Fatalf("%s = %d; want 3", name, got)
			}
			// Once a key set arrives, an unknown key is refused whatever fail_mode says.
			r.advance(time.Second)
			a.sync.Tick()
			a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
			if _, v := a.check(esToken(t, k.ec2, "k2", "j")); v != Reject {
				t.Fatalf("unknown kid with a key set held: verdict %v; want Reject", v)
			}
		})
	}
}

// TestLoadTakesNoLease: proxy_on_configure (Load) reads and adopts, and never takes the lease
// or fetches: Envoy runs it on a canary VM it kills at once.
func TestLoadTakesNoLease(t *testing.T) {
	r := newRig(t)
	canary := r.vm(9)
	canary.sync.Load()
	if len(canary.host.calls) != 0 {
		t.Fatal("Load fetched")
	}
	if _, _, err := r.store.GetSharedData(KeysFor("jtiguard.").Lease); err == nil {
		t.Fatal("Load wrote a lease")
	}
	a := r.vm(1)
	a.sync.Tick()
	if len(a.host.calls) != 1 {
		t.Fatal("the first worker's tick did not fetch at once")
	}
}

// TestOtherConfigurationSharingThePrefix: a VM whose allowlist cannot use the published keys
// keeps what it holds and says so once.
func TestOtherConfigurationSharingThePrefix(t *testing.T) {
	r := newRig(t)
	a := r.vm(1)
	k := testKeys()
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	r.inline.Algorithms = []string{"HS256", "RS256"}
	other := r.vm(2)
	for range 3 {
		other.sync.Tick()
	}
	if other.sync.HasRemote() || other.changes != 0 {
		t.Fatal("adopted a key set it cannot use")
	}
	if got := other.host.logged(abi.LogLevelError, "cannot use the key set of generation 1"); len(got) != 1 {
		t.Fatalf("logs = %q; want one error", other.host.logs)
	}
}
