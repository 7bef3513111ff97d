package revocationsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

const (
	testOP     = "https://op.example.com"
	testClient = "mesh-client"
)

// pyTokens is what testdata/logout_tokens.py mints with PyJWT.
type pyTokens struct {
	JWKS        json.RawMessage   `json:"jwks"`
	RotatedJWKS json.RawMessage   `json:"rotated_jwks"`
	Tokens      map[string]string `json:"tokens"`
}

var (
	pyOnce sync.Once
	pyOut  pyTokens
	pyErr  error
)

// mintedByPyJWT runs the script once per test binary: generating its RSA keys
// takes a moment.
func mintedByPyJWT(t *testing.T) pyTokens {
	t.Helper()
	py := testenv.PythonWithPyJWT(t)
	pyOnce.Do(func() {
		in, _ := json.Marshal(map[string]any{"now": t0, "iss": testOP, "aud": testClient})
		cmd := exec.Command(py, filepath.Join("testdata", "logout_tokens.py"))
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			pyErr = errors.New(err.Error() + ": " + stderr.String())
			return
		}
		pyErr = json.Unmarshal(out, &pyOut)
	})
	if pyErr != nil {
		t.Fatalf("logout_tokens.py: %v", pyErr)
	}
	return pyOut
}

// jwksServer serves a JWKS that the test can replace, and counts requests.
type jwksServer struct {
	*httptest.Server
	body  atomic.Value // []byte
	calls atomic.Int64
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	j := &jwksServer{}
	j.body.Store(body)
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.calls.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(j.body.Load().([]byte))
	}))
	t.Cleanup(j.Close)
	return j
}

type bcRig struct {
	bc    *Backchannel
	srv   *Server
	idx   *Index
	store memClaimStore
	h     http.Handler
	clock *fakeClock
	jwks  *jwksServer
	log   *bytes.Buffer
}

func newBCRig(t *testing.T, toks pyTokens, tweak func(*BackchannelConfig)) *bcRig {
	t.Helper()
	r := &bcRig{clock: newFakeClock(t0), store: memClaimStore{newMemStore()}, log: &bytes.Buffer{}}
	r.idx = NewIndex(r.clock.Now, 0)
	r.jwks = newJWKSServer(t, toks.JWKS)
	cfg := BackchannelConfig{
		Issuer: testOP, Audiences: []string{testClient}, SessionLifetime: 24 * time.Hour,
		Keys: &JWKSKeys{URL: r.jwks.URL, Algorithms: []string{"RS256", "ES256"}, Now: r.clock.Now},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	b, err := NewBackchannel(cfg, r.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.bc = b
	r.srv = &Server{Index: r.idx, Store: r.store, Backchannel: b, Now: r.clock.Now, Logger: slog.New(slog.NewTextHandler(r.log, nil))}
	r.h = r.srv.Handler()
	return r
}

// post sends a logout token as the OP does (§2.5).
func (r *bcRig) post(t *testing.T, token string) (int, map[string]string) {
	t.Helper()
	form := url.Values{"logout_token": {token}}.Encode()
	req := httptest.NewRequest("POST", BackchannelPath, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q; want no-store", cc)
	}
	var body map[string]string
	if w.Code != http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
			t.Errorf("error body %q is not an OAuth error object", w.Body)
		}
	}
	return w.Code, body
}

func (r *bcRig) entries() []Entry { _, es, _ := r.idx.Snapshot(); return es }

// TestBackchannelLogoutAccepts: every valid logout token PyJWT makes is
// answered 200 and becomes a sid entry (scoped to the OP, until the longest
// session lifetime) or, for a subject alone, a cutoff at its iat; the store
// holds what the index does.
func TestBackchannelLogoutAccepts(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	until := int64(t0 + 24*3600 + 1)
	for name, wantSID := range map[string]string{
		"sid":                         "08a5019c-17e1-4977-8f42-65a12843ea02", // with sub too: the session only
		"ES256":                       "sid-es256",
		"typ JWT":                     "sid-typ-jwt",
		"no typ":                      "sid-no-typ",
		"typ application/logout+jwt":  "sid-typ-app",
		"aud list":                    "sid-aud-list",
		"without exp":                 "sid-no-exp",
		"iat within the leeway ahead": "sid-ahead",
		"other claims ignored":        "sid-extra",
	} {
		if code, body := r.post(t, toks.Tokens[name]); code != 200 {
			t.Errorf("%s: %d %v; want 200", name, code, body)
			continue
		}
		k := EntryKey{Iss: testOP, JTI: wantSID, Claim: "sid"}
		if exp, ok := r.idx.entries[k]; !ok || exp != until {
			t.Errorf("%s: the index holds %v, %v for %+v; want exp %d", name, exp, ok, k, until)
		}
		if e, ok := r.store.entries[k]; !ok || e.Exp != until {
			t.Errorf("%s: the store holds %+v, %v", name, e, ok)
		}
	}
	if code, body := r.post(t, toks.Tokens["sub only"]); code != 200 {
		t.Fatalf("sub only: %d %v", code, body)
	}
	c, ok := r.idx.Cutoff(CutoffKey{Iss: testOP, Sub: "user-17"})
	if !ok || c.RevokedBefore != t0-10 || c.Exp != until {
		t.Fatalf("the subject's cutoff: %+v, %v; want revoked_before = the token's iat %d, exp %d", c, ok, t0-10, until)
	}
	if _, ok := r.store.cutoffs[CutoffKey{Iss: testOP, Sub: "user-17"}]; !ok {
		t.Fatal("the store does not hold the cutoff")
	}
	for _, e := range r.entries() {
		if e.Claim != "sid" {
			t.Fatalf("a logout wrote %+v: only sid entries", e)
		}
	}
	if !strings.Contains(r.log.String(), "back-channel logout") {
		t.Fatalf("no log line for the logouts:\n%s", r.log)
	}
}

// TestBackchannelLogoutRefuses: each rule of §2.6 refuses the token PyJWT
// made to break it, with 400 and an error object naming why, and writes
// nothing.
func TestBackchannelLogoutRefuses(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	for name, says := range map[string]string{
		"bad signature":                   "Signature verification failed",
		"unknown kid":                     "Signature verification failed",
		"alg none":                        "alg value is not allowed",
		"HS256":                           "alg value is not allowed",
		"missing events":                  "events claim is required",
		"events without the logout event": "not a logout token",
		"events member not an object":     "must be a JSON object",
		"events not an object":            "events must be a JSON object",
		"nonce present":                   "nonce",
		"wrong aud":                       "Invalid audience",
		"missing aud":                     `missing the "aud" claim`,
		"wrong iss":                       "Invalid issuer",
		"missing iss":                     `missing the "iss" claim`,
		"old iat":                         "issued too long ago",
		"iat in the future":               "not yet valid (iat)",
		"missing iat":                     "iat is required",
		"expired":                         "Signature has expired",
		"missing jti":                     "jti is required",
		"neither sid nor sub":             "names a sid or a sub",
		"sid not a string":                "sid must be a string",
		"sub not a string":                "Subject must be a string",
		"typ at+jwt":                      "typ",
	} {
		code, body := r.post(t, toks.Tokens[name])
		if code != 400 || body["error"] != "invalid_request" || !strings.Contains(body["error_description"], says) {
			t.Errorf("%s: %d %v; want 400 invalid_request saying %q", name, code, body, says)
		}
	}
	if n, c := r.idx.Len(); n+c != 0 || len(r.store.entries)+len(r.store.cutoffs) != 0 {
		t.Fatalf("refused tokens wrote %d entries, %d cutoffs", n, c)
	}
	if strings.Contains(r.log.String(), toks.Tokens["bad signature"][:40]) {
		t.Fatal("a logout token was logged")
	}
}

// TestBackchannelReplay: a logout token is accepted once; the same token
// again is refused while it could still be accepted (§2.6 step 7), and its
// jti is forgotten afterwards.
func TestBackchannelReplay(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	tok := toks.Tokens["replayed"]
	if code, body := r.post(t, tok); code != 200 {
		t.Fatalf("first: %d %v", code, body)
	}
	if code, body := r.post(t, tok); code != 400 || !strings.Contains(body["error_description"], "already received") {
		t.Fatalf("replay: %d %v; want 400, already received", code, body)
	}
	// Past its exp + leeway it is refused as expired, and its jti is gone
	// from memory.
	r.clock.Add(121 + 30)
	if code, body := r.post(t, tok); code != 400 || !strings.Contains(body["error_description"], "expired") {
		t.Fatalf("after its lifetime: %d %v", code, body)
	}
	if code, _ := r.post(t, toks.Tokens["ES256"]); code != 400 { // too old by now; its check expires the memory
		t.Fatalf("an old token: %d", code)
	}
	r.bc.mu.Lock()
	defer r.bc.mu.Unlock()
	r.bc.expireLocked(r.clock.Now().Unix())
	if len(r.bc.seen) != 0 {
		t.Fatalf("%d jtis remembered past their tokens' lifetimes", len(r.bc.seen))
	}
}

// TestBackchannelReplayMemoryIsBounded: the replay memory forgets a jti once
// its token can no longer be accepted, holds at most MaxReplay, and a failed
// write forgets the jti so that the OP's retry works.
func TestBackchannelReplayMemoryIsBounded(t *testing.T) {
	clock := newFakeClock(t0)
	b, err := NewBackchannel(BackchannelConfig{Issuer: testOP, Audiences: []string{testClient}, SessionLifetime: time.Hour,
		Keys: &JWKSKeys{File: "x", Algorithms: []string{"RS256"}}, MaxReplay: 3}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	l := func(jti string) Logout { return Logout{Iss: testOP, JTI: jti, Until: clock.Now().Unix() + 10} }
	for _, j := range []string{"a", "b", "c"} {
		if err := b.reserve(l(j)); err != nil {
			t.Fatal(err)
		}
		b.release(l(j), true)
	}
	if err := b.reserve(l("d")); !errors.Is(err, errReplayFull) {
		t.Fatalf("a fourth jti within the lifetimes: %v; want the memory full", err)
	}
	if err := b.reserve(l("a")); !errors.Is(err, ErrLogoutToken) {
		t.Fatalf("a replay: %v", err)
	}
	clock.Add(11)
	if err := b.reserve(l("d")); err != nil {
		t.Fatalf("after the others' lifetimes: %v", err)
	}
	if len(b.seen) != 1 {
		t.Fatalf("%d jtis remembered; want 1", len(b.seen))
	}
	b.release(l("d"), false) // the write failed
	if err := b.reserve(l("d")); err != nil {
		t.Fatalf("the OP's retry after a failed write: %v", err)
	}
}

// TestBackchannelKeyRotation: a token signed with a key the JWKS did not
// have is accepted once the OP publishes it: the unknown key makes the
// source read the JWKS again (at most once per MinInterval).
func TestBackchannelKeyRotation(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	if code, _ := r.post(t, toks.Tokens["rotated key"]); code != 400 {
		t.Fatalf("a token of a key not yet published: %d; want 400", code)
	}
	calls := r.jwks.calls.Load()
	r.jwks.body.Store([]byte(toks.RotatedJWKS))
	if code, _ := r.post(t, toks.Tokens["rotated key"]); code != 400 || r.jwks.calls.Load() != calls {
		t.Fatalf("within MinInterval the JWKS was read again (%d → %d calls)", calls, r.jwks.calls.Load())
	}
	r.clock.Add(31)
	if code, body := r.post(t, toks.Tokens["rotated key"]); code != 200 {
		t.Fatalf("after MinInterval: %d %v; want 200", code, body)
	}
	if _, ok := r.idx.entries[EntryKey{Iss: testOP, JTI: "sid-rotated", Claim: "sid"}]; !ok {
		t.Fatalf("the token of the rotated key was not accepted after the JWKS was read again (%d calls)", r.jwks.calls.Load())
	}
}

// TestBackchannelRequest: the request is a form with one logout_token
// (§2.5); anything else is 400, and only POST is served.
func TestBackchannelRequest(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	for _, c := range []struct {
		name, ctype, body string
	}{
		{"JSON body", "application/json", `{"logout_token":"` + toks.Tokens["sid"] + `"}`},
		{"no content type", "", "logout_token=" + toks.Tokens["sid"]},
		{"no logout_token", "application/x-www-form-urlencoded", "token=x"},
		{"two logout_tokens", "application/x-www-form-urlencoded", "logout_token=" + toks.Tokens["sid"] + "&logout_token=" + toks.Tokens["ES256"]},
		{"empty logout_token", "application/x-www-form-urlencoded", "logout_token="},
		{"not a form", "application/x-www-form-urlencoded", "logout_token=%zz"},
		{"a JWE", "application/x-www-form-urlencoded", "logout_token=a.b.c.d.e"},
		{"garbage", "application/x-www-form-urlencoded", "logout_token=not-a-jwt"},
		{"too large", "application/x-www-form-urlencoded", "logout_token=" + strings.Repeat("a", maxBackchannelBody)},
	} {
		req := httptest.NewRequest("POST", BackchannelPath, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		w := httptest.NewRecorder()
		r.h.ServeHTTP(w, req)
		var body map[string]string
		if w.Code != 400 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %s; want 400 invalid_request", c.name, w.Code, w.Body)
		}
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, httptest.NewRequest("GET", BackchannelPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", w.Code)
	}
	if n, _ := r.idx.Len(); n != 0 {
		t.Fatal("a refused request wrote an entry")
	}
	// Off without a configuration.
	w = httptest.NewRecorder()
	(&Server{Index: NewIndex(nil, 0), Store: newMemStore()}).Handler().ServeHTTP(w, httptest.NewRequest("POST", BackchannelPath, strings.NewReader("")))
	if w.Code != http.StatusNotFound {
		t.Fatalf("without a back-channel configuration: %d; want 404", w.Code)
	}
}

// TestBackchannelOptions: RequireType refuses tokens without typ
// logout+jwt; AnyIssuer writes entries that match any issuer; a store
// without claim entries answers 400 temporarily_unavailable and remembers
// nothing, so that the OP's retry is not a replay.
func TestBackchannelOptions(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, func(c *BackchannelConfig) { c.RequireType, c.AnyIssuer = true, true })
	for _, name := range []string{"typ JWT", "no typ"} {
		if code, body := r.post(t, toks.Tokens[name]); code != 400 || !strings.Contains(body["error_description"], "typ") {
			t.Errorf("RequireType, %s: %d %v", name, code, body)
		}
	}
	if code, body := r.post(t, toks.Tokens["typ application/logout+jwt"]); code != 200 {
		t.Fatalf("RequireType, logout+jwt: %d %v", code, body)
	}
	if _, ok := r.idx.entries[EntryKey{JTI: "sid-typ-app", Claim: "sid"}]; !ok {
		t.Fatal("AnyIssuer: the sid entry is scoped to an issuer")
	}

	r = newBCRig(t, toks, nil)
	r.srv.Store = newMemStore() // no claim entries
	tok := toks.Tokens["sid"]
	if code, body := r.post(t, tok); code != 400 || body["error"] != "temporarily_unavailable" || !strings.Contains(body["error_description"], "claim") {
		t.Fatalf("a store without claim entries: %d %v; want 400 temporarily_unavailable", code, body)
	}
	if n, _ := r.idx.Len(); n != 0 {
		t.Fatal("a logout the store refused reached the index")
	}
	r.srv.Store = memClaimStore{newMemStore()}
	if code, body := r.post(t, tok); code != 200 {
		t.Fatalf("the OP's retry once the store can: %d %v", code, body)
	}
}

// TestBackchannelSubjectCutoffNeverMovesBack: a logout of a subject keeps
// the later cutoff and the longer expiry of the one held.
func TestBackchannelSubjectCutoffNeverMovesBack(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	k := CutoffKey{Iss: testOP, Sub: "user-17"}
	r.idx.Apply([]Change{{Op: OpPutCutoff, Cutoff: Cutoff{Sub: k.Sub, Iss: k.Iss, RevokedBefore: t0 + 5, Exp: 0}}})
	if code, body := r.post(t, toks.Tokens["sub only"]); code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	if c, _ := r.idx.Cutoff(k); c.RevokedBefore != t0+5 || c.Exp != 0 {
		t.Fatalf("cutoff %+v; want the later revoked_before and no expiry kept", c)
	}
}

func TestNewBackchannelNamesWhatIsMissing(t *testing.T) {
	_, err := NewBackchannel(BackchannelConfig{Audiences: []string{""}}, nil)
	for _, want := range []string{"Issuer", "Audiences[0]", "Keys", "SessionLifetime"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

// TestKeySetFromJWKS: keys for algorithms not allowed, and encryption keys,
// are left out; a JWKS with nothing usable, or an algorithm that a JWKS
// cannot serve, is an error.
func TestKeySetFromJWKS(t *testing.T) {
	toks := mintedByPyJWT(t)
	if ks, err := KeySetFromJWKS(toks.JWKS, []string{"RS256"}); err != nil || strings.Join(ks.Algorithms(), ",") != "RS256" {
		t.Fatalf("RS256 only, beside an EC and an encryption key: %v, %v", ks, err)
	}
	if ks, err := KeySetFromJWKS(toks.JWKS, []string{"RS256", "PS256", "ES256", "EdDSA"}); err != nil || strings.Join(ks.Algorithms(), ",") != "RS256,ES256" {
		t.Fatalf("only the algorithms a key serves: %v, %v", ks, err)
	}
	for _, c := range []struct {
		jwks string
		algs []string
	}{
		{string(toks.JWKS), []string{"ES384"}},
		{string(toks.JWKS), []string{"HS256"}},
		{string(toks.JWKS), []string{"none"}},
		{string(toks.JWKS), nil},
		{`{"keys":[]}`, []string{"RS256"}},
		{`{"no":"keys"}`, []string{"RS256"}},
		{`[]`, []string{"RS256"}},
	} {
		if _, err := KeySetFromJWKS([]byte(c.jwks), c.algs); err == nil {
			t.Errorf("KeySetFromJWKS(%.40s, %v) accepted", c.jwks, c.algs)
		}
	}
}

// TestJWKSKeysFromAFile: the file is read on first use; a broken file
// later keeps the keys held.
func TestJWKSKeysFromAFile(t *testing.T) {
	toks := mintedByPyJWT(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, toks.JWKS, 0o600); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock(t0)
	j := &JWKSKeys{File: path, Algorithms: []string{"RS256"}, Now: clock.Now}
	ks, err := j.KeySet(context.Background())
	if err != nil || ks == nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(DefaultJWKSMaxAge/time.Second) + 1)
	if ks2, err := j.KeySet(context.Background()); err != nil || ks2 != ks {
		t.Fatalf("a broken file replaced the keys held: %v, %v", ks2, err)
	}
	if _, err := (&JWKSKeys{File: filepath.Join(t.TempDir(), "missing"), Algorithms: []string{"RS256"}}).KeySet(context.Background()); err == nil {
		t.Fatal("a missing file gave keys")
	}
}

// TestTopLevelMembers: a claim given twice is refused.
func TestTopLevelMembers(t *testing.T) {
	if _, err := topLevelMembers([]byte(`{"sid":"a","sid":"b"}`)); err == nil {
		t.Fatal("a duplicate sid was accepted")
	}
	m, err := topLevelMembers([]byte(`{"sid":"a","events":{"x":{}}}`))
	if err != nil || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{`[]`, `"x"`, `{"a":}`, ``} {
		if _, err := topLevelMembers([]byte(bad)); err == nil {
			t.Errorf("topLevelMembers(%q) accepted", bad)
		}
	}
}

// TestBackchannelConcurrentReplays: the same logout token posted many
// times at once is accepted exactly once.
func TestBackchannelConcurrentReplays(t *testing.T) {
	toks := mintedByPyJWT(t)
	r := newBCRig(t, toks, nil)
	tok := toks.Tokens["sid"]
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{"logout_token": {tok}}.Encode()
			req := httptest.NewRequest("POST", BackchannelPath, strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			r.h.ServeHTTP(w, req)
			switch w.Code {
			case 200:
				ok.Add(1)
			case 400:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || refused.Load() != 15 {
		t.Fatalf("%d accepted, %d refused; want 1 and 15", ok.Load(), refused.Load())
	}
}
