package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// jwt.remote_jwks end to end: the real module, in the wazero harness and in V8, fetching from
// a real HTTP JWKS endpoint (httptest on 127.0.0.1) through proxy_http_call on cluster idp.

const idpCluster = "idp"

// jwksKeys are made once per test binary.
var jwksKeys = sync.OnceValue(func() (k struct {
	k1, k2, k3, p384 *ecdsa.PrivateKey
	weak             *rsa.PrivateKey
}) {
	for _, p := range []**ecdsa.PrivateKey{&k.k1, &k.k2, &k.k3} {
		*p, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	k.p384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	k.weak, _ = rsa.GenerateKey(rand.Reader, 1024)
	return k
})

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func ecJWK(kid, alg string, k *ecdsa.PublicKey) map[string]string {
	size := (k.Curve.Params().BitSize + 7) / 8
	x, y := make([]byte, size), make([]byte, size)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	m := map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": b64url(x), "y": b64url(y)}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func jwksDoc(keys ...any) string {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return string(b)
}

// esTok signs an ES256 access token with kid.
func esTok(t testing.TB, k *ecdsa.PrivateKey, kid, jti string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(claims(jti, "user-1")))
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksServer is the issuer's JWKS endpoint; mode makes it misbehave.
type jwksServer struct {
	mu   sync.Mutex
	doc  string
	mode string // "" serves doc; "500", "huge", "garbage", "wrong-kinds", "reset"
	hits int
	srv  *httptest.Server
}

func startJWKSServer(t testing.TB, doc string) *jwksServer {
	s := &jwksServer{doc: doc}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits++
		mode, doc := s.mode, s.doc
		s.mu.Unlock()
		if r.URL.Path != "/.well-known/jwks.json" || r.Host != "idp.test" || r.Header.Get("authorization") != "Bearer idp-token" {
			http.Error(w, "unexpected request "+r.Host+r.URL.Path, http.StatusBadRequest)
			return
		}
		w.Header().Set("content-type", "application/json")
		switch mode {
		case "500":
			http.Error(w, "internal error", http.StatusInternalServerError)
		case "huge":
			fmt.Fprintf(w, `{"keys":[],"pad":"%s"}`, strings.Repeat("x", 1<<20))
		case "garbage":
			w.Write([]byte("<html>\x00\xff not json"))
		case "wrong-kinds":
			k := jwksKeys()
			weak := map[string]string{"kty": "RSA", "kid": "weak", "alg": "RS256", "n": b64url(k.weak.N.Bytes()), "e": b64url(big.NewInt(int64(k.weak.E)).Bytes())}
			priv := ecJWK("priv", "ES256", &k.k3.PublicKey)
			priv["d"] = b64url(k.k3.D.Bytes())
			offCurve := ecJWK("off", "ES256", &k.k3.PublicKey)
			offCurve["y"] = offCurve["x"]
			w.Write([]byte(jwksDoc(weak, priv, offCurve, ecJWK("p384", "ES384", &k.p384.PublicKey), ecJWK("confused", "HS256", &k.k3.PublicKey),
				map[string]string{"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64url(make([]byte, 32))})))
		case "reset":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.Write([]byte(doc))
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) set(mode, doc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if doc != "" {
		s.doc = doc
	}
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

func (s *jwksServer) addr() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// jwksPluginConfig: HS256 inline (the e2e secret, kid "inline") and ES256 from the endpoint;
// no revocation sync (the test publishes an empty list that never goes stale).
func jwksPluginConfig(refresh, failMode string) []byte {
	b, _ := json.Marshal(map[string]any{
		"prefix": prefix,
		"jwt": map[string]any{"algorithms": []string{"HS256", "ES256"}, "hmac_secrets": []map[string]string{{"kid": "inline", "secret": secret}},
			"remote_jwks": map[string]any{"cluster": idpCluster, "authority": "idp.test", "refresh_interval": refresh, "timeout": "2s",
				"max_bytes": 65536, "headers": map[string]string{"authorization": "Bearer idp-token"}}},
		"fail_mode":     failMode,
		"max_staleness": "0s",
		"sync":          map[string]any{"cluster": ""},
	})
	return b
}

func startJWKSHost(t *testing.T, e hosttest.Engine, workers int, refresh, failMode, idpAddr string) hosttest.Host {
	t.Helper()
	h := startHost(t, e, harness.NewConfig().WithWorkers(workers).WithWASI(harness.WASICurrent).
		WithPluginConfig(jwksPluginConfig(refresh, failMode)).WithTimers(false).WithLogLevel(harness.LogInfo).
		WithCluster(idpCluster, idpAddr))
	if err := localproxytest.Publish(hosttest.Store{H: h}, prefix, localproxytest.List{JTIs: []string{"revoked-jti"}}); err != nil {
		t.Fatal(err)
	}
	return h
}

// hostRound ticks every VM once and waits for the callouts they made to be answered.
func hostRound(t testing.TB, h hosttest.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
}

// untilFetched runs tick rounds every 100 ms until the endpoint has been asked once more
// (bounded), then one round more, in which the other VMs adopt what the holder published.
func untilFetched(t testing.TB, h hosttest.Host, s *jwksServer) {
	t.Helper()
	n := s.count()
	deadline := time.Now().Add(15 * time.Second)
	for s.count() == n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no fetch of the JWKS within 15 s", h.Engine())
		}
		time.Sleep(100 * time.Millisecond)
		hostRound(t, h)
	}
	hostRound(t, h)
}

func expectHost(t testing.TB, h hosttest.Host, tok string, want outcome, what string) {
	t.Helper()
	for vm := range h.Workers() {
		if got := doHost(t, h, vm, tok); got != want {
			t.Fatalf("%s: %s on VM %d: %v; want %v", h.Engine(), what, vm, got, want)
		}
	}
}

func hostCounter(t testing.TB, h hosttest.Host, name string) int64 {
	t.Helper()
	v, _, err := h.Metric(harness.MetricCounter, prefix+name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// jwksCalls returns the callouts to the JWKS cluster and the VMs that made them.
func jwksCalls(t testing.TB, h hosttest.Host) (n int, vms map[int]bool) {
	t.Helper()
	calls, err := h.HTTPCalls()
	if err != nil {
		t.Fatal(err)
	}
	vms = map[int]bool{}
	for _, c := range calls {
		if c.Cluster == idpCluster {
			n++
			vms[c.VM] = true
		}
	}
	return n, vms
}

var invalidSig = outcome{Status: 422, Body: `{"msg":"Signature verification failed"}`}

// TestRemoteJWKSRotation: old and new keys overlapping, then the old one removed. A token
// signed by the new key verifies on every worker as soon as the set is fetched; one signed by
// the old key stops verifying, on every worker, once the set without it is fetched (though
// it verified, and was cached, before). One VM fetches: the lease across VMs.
func TestRemoteJWKSRotation(t *testing.T) {
	k := jwksKeys()
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			idp := startJWKSServer(t, jwksDoc(ecJWK("k1", "ES256", &k.k1.PublicKey)))
			h := startJWKSHost(t, e, 3, "1s", "closed", idp.addr())
			tok1, tok2 := esTok(t, k.k1, "k1", "e2e-old"), esTok(t, k.k2, "k2", "e2e-new")
			inline := token("e2e-inline")
			untilFetched(t, h, idp)
			expectHost(t, h, tok1, allowed, "k1 token, k1 published")
			expectHost(t, h, inline, allowed, "inline HS256 token beside the remote keys")
			expectHost(t, h, esTok(t, k.k1, "k1", "revoked-jti"), revoked, "revoked token")

			idp.set("", jwksDoc(ecJWK("k1", "ES256", &k.k1.PublicKey), ecJWK("k2", "ES256", &k.k2.PublicKey)))
			untilFetched(t, h, idp)
			expectHost(t, h, tok2, allowed, "k2 token once the overlap is fetched")
			expectHost(t, h, tok1, allowed, "k1 token in the overlap")

			idp.set("", jwksDoc(ecJWK("k2", "ES256", &k.k2.PublicKey)))
			untilFetched(t, h, idp)
			expectHost(t, h, tok1, invalidSig, "k1 token once k1 is removed")
			expectHost(t, h, tok2, allowed, "k2 token after the removal")
			expectHost(t, h, inline, allowed, "inline token after the removal")

			n, vms := jwksCalls(t, h)
			if n < 3 || len(vms) != 1 {
				t.Fatalf("%d JWKS fetches from VMs %v; want at least 3, all from the one lease holder", n, vms)
			}
		})
	}
}

// TestRemoteJWKSKidMiss: a token naming a kid the proxy does not hold is refused at once and
// makes the lease holder fetch early (refresh_interval is an hour here); the next token with
// that kid verifies. Another miss right after does not fetch again (rate-limited for the
// whole proxy).
func TestRemoteJWKSKidMiss(t *testing.T) {
	k := jwksKeys()
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			idp := startJWKSServer(t, jwksDoc(ecJWK("k1", "ES256", &k.k1.PublicKey)))
			h := startJWKSHost(t, e, 3, "1h", "closed", idp.addr())
			untilFetched(t, h, idp)
			tok2 := esTok(t, k.k2, "k2", "e2e-miss")
			idp.set("", jwksDoc(ecJWK("k1", "ES256", &k.k1.PublicKey), ecJWK("k2", "ES256", &k.k2.PublicKey)))
			if got := doHost(t, h, 2, tok2); got != invalidSig {
				t.Fatalf("first k2 token on VM 2: %v; want %v (answered with the keys held)", got, invalidSig)
			}
			untilFetched(t, h, idp)
			expectHost(t, h, tok2, allowed, "k2 token after the early fetch")
			if got := hostCounter(t, h, "jwks.early_fetches"); got != 1 {
				t.Fatalf("jwks.early_fetches = %d; want 1", got)
			}
			// Another unknown kid at once, on another VM: refused, and no fetch for 30 s.
			before := idp.count()
			tok3 := esTok(t, k.k3, "k3", "e2e-miss-2")
			if got := doHost(t, h, 1, tok3); got != invalidSig {
				t.Fatalf("k3 token: %v", got)
			}
			for range 5 {
				time.Sleep(100 * time.Millisecond)
				hostRound(t, h)
			}
			if idp.count() != before {
				t.Fatalf("a second miss within 30 s fetched again (%d fetches, %d before)", idp.count(), before)
			}
		})
	}
}

// TestRemoteJWKSHostileEndpoint: before any key set, fail_mode closed answers the ES256 token
// 503 (inline tokens pass); then every bad answer (500, a body over max_bytes, garbage, keys
// of the wrong kind, a connection reset) keeps the last good key set on every worker, and is
// counted.
func TestRemoteJWKSHostileEndpoint(t *testing.T) {
	k := jwksKeys()
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			good := jwksDoc(ecJWK("k1", "ES256", &k.k1.PublicKey))
			idp := startJWKSServer(t, good)
			idp.set("500", "")
			h := startJWKSHost(t, e, 2, "1s", "closed", idp.addr())
			tok := esTok(t, k.k1, "k1", "e2e-hostile")
			untilFetched(t, h, idp)
			expectHost(t, h, tok, unavailabe, "ES256 token before any key set (fail_mode closed)")
			expectHost(t, h, token("e2e-inline"), allowed, "inline token before any key set")
			idp.set("", "")
			untilFetched(t, h, idp)
			expectHost(t, h, tok, allowed, "ES256 token once the key set arrived")

			modes := []string{"500", "huge", "garbage", "wrong-kinds", "reset"}
			for _, mode := range modes {
				idp.set(mode, "")
				untilFetched(t, h, idp)
				expectHost(t, h, tok, allowed, "after a "+mode+" answer")
				idp.set("", "")
				untilFetched(t, h, idp) // a success resets the backoff
			}
			if got := hostCounter(t, h, "jwks.fetch_failures"); got < int64(len(modes))+1 {
				t.Fatalf("jwks.fetch_failures = %d; want at least %d", got, len(modes)+1)
			}
			if got := hostCounter(t, h, "jwks.rejected"); got < 3 {
				t.Fatalf("jwks.rejected = %d; want at least 3 (huge, garbage, wrong kinds)", got)
			}
		})
	}
}

// TestRemoteJWKSFailOpen: with fail_mode open and the endpoint down, a token of an allowed
// algorithm passes on its claims, an expired one is still 401, and a revoked one 401.
func TestRemoteJWKSFailOpen(t *testing.T) {
	k := jwksKeys()
	for _, e := range hosttest.Engines {
		t.Run(string(e), func(t *testing.T) {
			h := startJWKSHost(t, e, 2, "1s", "open", refusedAddr(t))
			hostRound(t, h)
			expectHost(t, h, esTok(t, k.k1, "k1", "e2e-open"), allowed, "unverifiable ES256 token, fail_mode open")
			c := claims("e2e-open-expired", "user-1")
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			expired := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims(c))
			expired.Header["kid"] = "k1"
			expTok, _ := expired.SignedString(k.k1)
			expectHost(t, h, expTok, outcome{Status: 401, Body: `{"msg":"Token has expired"}`}, "expired token, fail_mode open")
			expectHost(t, h, esTok(t, k.k1, "k1", "revoked-jti"), revoked, "revoked token, fail_mode open")
			hostRound(t, h)
			if got := hostCounter(t, h, "jwks.fail_mode_open"); got < 2 {
				t.Fatalf("jwks.fail_mode_open = %d; want at least 2", got)
			}
		})
	}
}
