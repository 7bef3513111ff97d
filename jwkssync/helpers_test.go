package jwkssync

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/internal/sharedtest"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// Keys are made once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() (k struct {
	ec1, ec2, ec3 *ecdsa.PrivateKey
	p384          *ecdsa.PrivateKey
	rsa           *rsa.PrivateKey
	weakRSA       *rsa.PrivateKey
}) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var err error
	for _, p := range []**ecdsa.PrivateKey{&k.ec1, &k.ec2, &k.ec3} {
		*p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
	}
	k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.weakRSA, err = rsa.GenerateKey(rand.Reader, 1024)
	must(err)
	return k
})

// hsSecret is the inline HMAC secret of the tests.
const hsSecret = "inline-secret-of-at-least-32-bytes!!"

var testNow = time.Unix(1_767_000_000, 0)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkEC(kid, alg string, k *ecdsa.PublicKey) map[string]string {
	size := (k.Curve.Params().BitSize + 7) / 8
	x, y := make([]byte, size), make([]byte, size)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return clean(map[string]string{"kty": "EC", "kid": kid, "alg": alg, "crv": k.Curve.Params().Name, "x": b64u(x), "y": b64u(y)})
}

func jwkRSA(kid, alg string, k *rsa.PublicKey) map[string]string {
	return clean(map[string]string{"kty": "RSA", "kid": kid, "alg": alg, "n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())})
}

func clean(m map[string]string) map[string]string {
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return m
}

func jwks(keys ...any) string {
	if keys == nil {
		keys = []any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// esToken signs an ES256 (or ES384 for a P-384 key) token with kid.
func esToken(t testing.TB, k *ecdsa.PrivateKey, kid, jti string) string {
	t.Helper()
	m := jwt.SigningMethod(jwt.SigningMethodES256)
	if k.Curve == elliptic.P384() {
		m = jwt.SigningMethodES384
	}
	tok := jwt.NewWithClaims(m, claims(jti))
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hsToken(t testing.TB, kid, jti string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(jti))
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString([]byte(hsSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(jti string) jwt.MapClaims {
	return jwt.MapClaims{"jti": jti, "sub": "user-1", "type": "access",
		"iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix()}
}

// fakeHost plays Envoy for one worker VM: it records callouts and lets the test answer them.
type fakeHost struct {
	t       testing.TB
	metrics *fakeMetrics
	calls   []*call
	resp    response
	logs    []string
	levels  []abi.LogLevel
}

type call struct {
	cluster string
	headers [][2]string
	timeout uint32
	cb      func(int, int, int)
	done    bool
}

func (c *call) header(name string) string { return header(c.headers, name) }

type response struct {
	headers [][2]string
	body    []byte
}

type fakeMetrics struct {
	mu     sync.Mutex
	values map[string]int64
}

func (m *fakeMetrics) get(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.values["jtiguard."+name]
}

type fakeCounter struct {
	m    *fakeMetrics
	name string
}

func (c fakeCounter) Increment(d uint64) {
	c.m.mu.Lock()
	c.m.values[c.name] += int64(d)
	c.m.mu.Unlock()
}
func (c fakeCounter) Set(v int64) {
	c.m.mu.Lock()
	c.m.values[c.name] = v
	c.m.mu.Unlock()
}

func (h *fakeHost) DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeout uint32, cb func(int, int, int)) (uint32, error) {
	h.calls = append(h.calls, &call{cluster: cluster, headers: headers, timeout: timeout, cb: cb})
	return uint32(len(h.calls)), nil
}
func (h *fakeHost) GetHTTPCallResponseHeaders() ([][2]string, error) { return h.resp.headers, nil }
func (h *fakeHost) GetHTTPCallResponseBody(start, max int) ([]byte, error) {
	return h.resp.body[start:min(len(h.resp.body), start+max)], nil
}
func (h *fakeHost) Log(level abi.LogLevel, msg string) {
	h.logs = append(h.logs, msg)
	h.levels = append(h.levels, level)
}
func (h *fakeHost) DefineCounter(name string) abi.Counter { return fakeCounter{h.metrics, name} }
func (h *fakeHost) DefineGauge(name string) abi.Gauge     { return fakeCounter{h.metrics, name} }

// logged returns the logs at level that contain substr.
func (h *fakeHost) logged(level abi.LogLevel, substr string) []string {
	var out []string
	for i, l := range h.logs {
		if h.levels[i] == level && strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// answer delivers a reply to the pending callout, as Envoy does on the VM that made it.
// bodySize is what the host announces (the body's length when -1).
func (h *fakeHost) answerSized(status int, headers [][2]string, body string, bodySize int) {
	h.t.Helper()
	c := h.pending()
	h.resp = response{headers: append([][2]string{{":status", strconv.Itoa(status)}}, headers...), body: []byte(body)}
	if bodySize < 0 {
		bodySize = len(body)
	}
	c.done = true
	c.cb(len(h.resp.headers), bodySize, 0)
}

func (h *fakeHost) answer(status int, headers [][2]string, body string) {
	h.t.Helper()
	h.answerSized(status, headers, body, -1)
}

// reset delivers what Envoy delivers on a reset or timeout: no headers, no body.
func (h *fakeHost) reset() {
	h.t.Helper()
	c := h.pending()
	h.resp = response{}
	c.done = true
	c.cb(0, 0, 0)
}

func (h *fakeHost) pending() *call {
	h.t.Helper()
	if len(h.calls) == 0 || h.calls[len(h.calls)-1].done {
		h.t.Fatalf("no callout pending (%d made)", len(h.calls))
	}
	return h.calls[len(h.calls)-1]
}

func (h *fakeHost) inFlight() bool { return len(h.calls) > 0 && !h.calls[len(h.calls)-1].done }

// rig is one test world: a shared store, a clock, the configuration and worker VMs.
type rig struct {
	t        testing.TB
	store    *sharedtest.Store
	now      time.Time
	metrics  *fakeMetrics
	cfg      Config
	inline   jwtverify.Keys
	failOpen bool
}

func newRig(t testing.TB) *rig {
	cfg := DefaultConfig()
	cfg.Cluster, cfg.Authority, cfg.Path = "issuer", "issuer.example", "/jwks.json"
	cfg.Headers = map[string]string{"Authorization": "Bearer jwks-secret"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return &rig{
		t: t, store: sharedtest.New(), now: testNow, metrics: &fakeMetrics{values: map[string]int64{}}, cfg: cfg,
		inline: jwtverify.Keys{Algorithms: []string{"HS256", "ES256", "RS256"}, HMAC: []jwtverify.HMACKey{{KID: "inline", Secret: []byte(hsSecret)}}},
	}
}

func (r *rig) clock() time.Time        { return r.now }
func (r *rig) advance(d time.Duration) { r.now = r.now.Add(d) }

// idle advances the clock by d in one-second steps, ticking every VM given at each, as
// Envoy's timers would; it stops as soon as a VM has a callout in flight, for the test to
// answer.
func (r *rig) idle(d time.Duration, vms ...*vm) {
	r.t.Helper()
	for end := r.now.Add(d); r.now.Before(end); {
		r.advance(min(time.Second, end.Sub(r.now)))
		for _, w := range vms {
			w.sync.Tick()
			if w.host.inFlight() {
				return
			}
		}
	}
}

// vm is one worker VM: its syncer, and the verifier the filter would keep in step with it.
type vm struct {
	t       testing.TB
	host    *fakeHost
	sync    *Syncer
	v       *jwtverify.Verifier
	changes int // OnChange calls
}

func (r *rig) vm(id uint64) *vm {
	r.t.Helper()
	b, err := NewBuilder(r.inline)
	if err != nil {
		r.t.Fatal(err)
	}
	v, err := jwtverify.New(b.Inline(), jwtverify.Options{Now: r.clock})
	if err != nil {
		r.t.Fatal(err)
	}
	w := &vm{t: r.t, host: &fakeHost{t: r.t, metrics: r.metrics}, v: v}
	w.sync = NewSyncer(r.cfg, Options{
		Keys: KeysFor("jtiguard."), Store: r.store, Host: w.host, Now: r.clock, Builder: b, FailOpen: r.failOpen,
		OnChange: func(ks *jwtverify.KeySet) { w.changes++; v.SetKeys(ks) }, MetricsPrefix: "jtiguard.", HolderID: id,
		Rand: func() float64 { return 0.5 }, // no jitter
	})
	return w
}

// check verifies tok as the filter does: Verify, and on failure the syncer's verdict.
func (w *vm) check(tok string) (error, Verdict) {
	var c jwtverify.Claims
	err := w.v.Verify(tok, &c)
	if err == nil {
		return nil, Reject
	}
	return err, w.sync.OnVerifyFailure(tok, err)
}

// verifies reports whether tok verifies on this VM now.
func (w *vm) verifies(tok string) bool {
	err, _ := w.check(tok)
	return err == nil
}

var jsonHeaders = [][2]string{{"content-type", "application/json"}}

func pemOf(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
