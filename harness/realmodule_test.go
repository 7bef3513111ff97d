package harness

// Tests that drive the real module, build/jtiguard.wasm. With CI=true a
// missing module fails the tests; locally it is built into a temporary
// directory from the repository root. JTIGUARD_WASM points at another file;
// Each scenario runs on both WASI surfaces (JTIGUARD_WASI pins one). On
// envoy-1.33 a module that Envoy 1.33 would refuse to load (ErrImportNotProvided)
// is reported with a skip naming the missing imports; once it loads there, the
// same scenario runs in full.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/moduletest"
)

// loadRealModule returns the bytes of the real module, or fails the test.
func loadRealModule(t *testing.T) []byte { return moduletest.Module(t) }

// forEachWASI runs f once per WASI generation, as subtests.
func forEachWASI(t *testing.T, f func(t *testing.T, g WASIGeneration)) {
	gens := []WASIGeneration{WASICurrent, WASIEnvoy133}
	if s := os.Getenv("JTIGUARD_WASI"); s != "" {
		g, err := ParseWASIGeneration(s)
		if err != nil {
			t.Fatal(err)
		}
		gens = []WASIGeneration{g}
	}
	for _, g := range gens {
		t.Run(g.String(), func(t *testing.T) { f(t, g) })
	}
}

const testSecret = "harness-test-secret-at-least-32-bytes!!"

// pluginConfig is a jtiguard configuration with a sync cluster.
func pluginConfig(cluster string) []byte {
	cfg := map[string]any{
		"prefix": "jtiguard.",
		"token": map[string]any{
			"locations": []string{"headers"}, "header_name": "Authorization", "header_type": "Bearer",
		},
		"jwt":           map[string]any{"algorithms": []string{"HS256"}, "hmac_secrets": []map[string]string{{"secret": testSecret}}},
		"missing_token": "allow",
		"invalid_token": "deny",
		"fail_mode":     "closed",
	}
	if cluster != "" {
		cfg["sync"] = map[string]any{"cluster": cluster, "authority": "revocation-source", "path": "/v1/revocations",
			"interval": "1s", "timeout": "2s"}
	}
	b, _ := json.Marshal(cfg)
	return b
}

// hs256 signs a flask-jwt-extended style access token.
func hs256(t *testing.T, jti string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	now := time.Now().Unix()
	hdr := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"jti": jti, "sub": "user-1", "iat": now - 10, "nbf": now - 10,
		"exp": now + 3600, "type": "access", "fresh": false})
	signing := hdr + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(testSecret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

func bearer(tok string) Pairs { return Pairs{{"Authorization", "Bearer " + tok}} }

// feedServer serves a plain-text revocation list and counts polls.
type feedServer struct {
	*httptest.Server
	polls atomic.Int64
	host  atomic.Value
	path  atomic.Value
}

func newFeedServer(t *testing.T, body string) *feedServer {
	f := &feedServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.polls.Add(1)
		f.host.Store(r.Host)
		f.path.Store(r.URL.Path)
		w.Header().Set("content-type", "text/plain")
		io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func startReal(t *testing.T, cfg Config) *Harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := New(ctx, loadRealModule(t), cfg)
	if err != nil {
		t.Fatalf("start real module: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("module logs:\n%s", h.Logs())
		}
		_ = h.Close(context.Background())
	})
	return h
}

func realConfig(g WASIGeneration) Config {
	return testConfig().WithWASI(g).WithLogLevel(LogDebug)
}

func TestRealModuleStartsAndAllowsMissingToken(t *testing.T) { forEachWASI(t, testRealStarts) }

func testRealStarts(t *testing.T, g WASIGeneration) {
	h := startReal(t, realConfig(g).WithWorkers(2).WithPluginConfig(pluginConfig("")))
	if !h.Logs().Contains(LogInfo, "jtiguard: started") {
		t.Fatalf("no start log; logs:\n%s", h.Logs())
	}
	ctx := context.Background()
	for vm := 0; vm < 2; vm++ {
		res, err := h.Do(ctx, Request{Path: "/api", VM: vm})
		if err != nil {
			t.Fatal(err)
		}
		if res.Action != ActionContinue || res.LocalResponse != nil || res.VMFailure != nil {
			t.Fatalf("VM %d, no token: %v; want Continue", vm, res)
		}
	}
	// A token signed with another key is invalid → denied with a local reply.
	res, err := h.Do(ctx, Request{Path: "/api", Headers: bearer(hs256(t, "x")[:20] + "AAAA.BBBB.CCCC")})
	if err != nil {
		t.Fatal(err)
	}
	if res.LocalResponse == nil || res.LocalResponse.Status < 400 {
		t.Fatalf("malformed token: %v; want a 4xx local reply", res)
	}
	for i := 0; i < h.Workers(); i++ {
		if mb := h.VM(i).MemoryBytes(); mb == 0 || mb%65536 != 0 {
			t.Fatalf("VM %d memory = %d bytes; want a positive multiple of 64 KiB", i, mb)
		}
	}
}

func TestRealModuleRejectsBadConfig(t *testing.T) {
	ctx := context.Background()
	_, err := New(ctx, loadRealModule(t), realConfig(WASICurrent).WithWorkers(1).WithPluginConfig([]byte(`{"missing_token":"maybe"}`)))
	if err == nil || !strings.Contains(err.Error(), "proxy_on_configure") {
		t.Fatalf("New(bad config) = %v; want a proxy_on_configure start failure", err)
	}
}

// TestRealModuleSyncAcrossVMs: the VM holding the lease polls the feed
// through a callout delivered back to it, writes the list to shared data,
// and the other VM rejects the revoked token.
func TestRealModuleSyncAcrossVMs(t *testing.T) { forEachWASI(t, testRealSync) }

func testRealSync(t *testing.T, g WASIGeneration) {
	feed := newFeedServer(t, "# revoked\nrevoked-jti-1\n")
	h := startReal(t, realConfig(g).WithWorkers(2).
		WithPluginConfig(pluginConfig("revocation_source")).
		WithCluster("revocation_source", feed.Listener.Addr().String()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first poll comes from the first tick, never from proxy_on_configure (which Envoy
	// also runs on a configuration canary VM it kills at once).
	if n := len(h.HTTPCalls()); n != 0 {
		t.Fatalf("%d callouts before any tick; want none", n)
	}
	h.Tick(ctx)
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
	calls := h.HTTPCalls()
	if len(calls) == 0 {
		t.Fatalf("no callout after start; logs:\n%s", h.Logs())
	}
	c := calls[0]
	if !c.Delivered || c.ResponseStatus != 200 || c.Cluster != "revocation_source" {
		t.Fatalf("first callout = %v; want delivered 200 from revocation_source", c)
	}
	if feed.host.Load() != "revocation-source" || feed.path.Load() != "/v1/revocations" {
		t.Fatalf("feed saw host %v path %v", feed.host.Load(), feed.path.Load())
	}
	if keys := h.SharedData().Keys(h.VMID()); len(keys) == 0 {
		t.Fatalf("no shared data after the sync")
	}
	other := 1 - c.VM
	// The other VM re-reads the list on its next tick, or on a request once 100 ms passed
	// since it last looked: tick, rather than wait.
	h.Tick(ctx)
	revoked, fine := hs256(t, "revoked-jti-1"), hs256(t, "fine-jti")
	res, err := h.Do(ctx, Request{Path: "/api", VM: other, Headers: bearer(revoked)})
	if err != nil {
		t.Fatal(err)
	}
	if res.LocalResponse == nil || res.LocalResponse.Status != 401 {
		t.Fatalf("revoked token on VM %d (synced by VM %d): %+v; want 401", other, c.VM, res.LocalResponse)
	}
	res, err = h.Do(ctx, Request{Path: "/api", VM: other, Headers: bearer(fine)})
	if err != nil {
		t.Fatal(err)
	}
	if res.LocalResponse != nil || res.Action != ActionContinue {
		t.Fatalf("valid token: %v; want Continue", res)
	}
	// Ticks on every VM: only the lease holder polls again.
	before := feed.polls.Load()
	time.Sleep(1100 * time.Millisecond)
	h.Tick(ctx)
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
	if got := feed.polls.Load() - before; got > 1 {
		t.Fatalf("%d polls after one tick round on %d VMs; want at most 1 (lease)", got, h.Workers())
	}
}

// TestRealModuleConcurrentStreams hammers the VM locks: P goroutines × N
// requests on round-robin VMs, with valid and absent tokens, while real tick
// timers run. Any interleaving of two callbacks on one VM would corrupt the
// Go runtime inside it and show as a trap.
func TestRealModuleConcurrentStreams(t *testing.T) {
	const P, N = 6, 40
	feed := newFeedServer(t, "other-jti\n")
	h := startReal(t, realConfig(WASICurrent).WithWorkers(3).WithTimers(true).
		WithPluginConfig(pluginConfig("revocation_source")).
		WithCluster("revocation_source", feed.Listener.Addr().String()))
	tok := hs256(t, "concurrent-jti")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// fail_mode closed: tokens are refused until the first list arrives.
	h.Tick(ctx)
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
	h.Tick(ctx) // every VM reads the new list at once (requests would within 100 ms)
	var wg sync.WaitGroup
	for p := 0; p < P; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				r := Request{Path: "/c", VM: AnyVM}
				if i%2 == 0 {
					r.Headers = bearer(tok)
				}
				res, err := h.Do(ctx, r)
				if err != nil {
					t.Errorf("Do: %v", err)
					return
				}
				if res.VMFailure != nil || res.LocalResponse != nil || res.Action != ActionContinue {
					t.Errorf("request %d: %v; want Continue", i, res)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < h.Workers(); i++ {
		if err := h.VM(i).Failed(); err != nil {
			t.Fatalf("VM %d failed: %v", i, err)
		}
	}
}
