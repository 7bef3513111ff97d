package e2e

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// statusIssuer serves Status List Tokens over HTTP on 127.0.0.1, signed with an Ed25519 key:
// a status issuer as the draft describes it, which the test can change.
type statusIssuer struct {
	addr  string
	key   ed25519.PrivateKey
	mu    sync.Mutex
	lists map[string][]byte // path → one status per byte (bits 8)
	hits  int
}

func startStatusIssuer(t testing.TB) *statusIssuer {
	t.Helper()
	s := &statusIssuer{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)), lists: map[string][]byte{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *statusIssuer) fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

func (s *statusIssuer) set(path string, statuses ...byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists[path] = statuses
}

func (s *statusIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	list, ok := s.lists[r.URL.Path]
	s.hits++
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, 9)
	zw.Write(list)
	zw.Close()
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{"sub": "https://issuer.example" + r.URL.Path, "iat": now - 5, "exp": now + 3600, "ttl": 60,
		"status_list": map[string]any{"bits": 8, "lst": base64.RawURLEncoding.EncodeToString(z.Bytes())}})
	in := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"statuslist+jwt"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	w.Header().Set("content-type", "application/statuslist+jwt")
	fmt.Fprint(w, in+"."+base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(in))))
}

func (s *statusIssuer) jwks() json.RawMessage {
	pub := s.key.Public().(ed25519.PublicKey)
	return json.RawMessage(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}]}`)
}

// statusPluginConfig is the e2e plugin configuration (the blocklist written by the test) with
// a status_list section whose lists the issuer serves.
func statusPluginConfig(t testing.TB, is *statusIssuer, failMode string) []byte {
	var cfg map[string]any
	if err := json.Unmarshal(pluginConfig(cfgOpts{noSync: true, failMode: failMode}), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["status_list"] = map[string]any{
		// Short bounds so a changed list is fetched again within the test: the issuer's ttl (60s)
		// is clamped to max_ttl.
		"min_ttl": "1s", "max_ttl": "2s", "retry_interval": "1s", "max_backoff": "1s",
		"keys": map[string]any{"algorithms": []string{"EdDSA"}, "jwks": is.jwks()},
		"lists": []map[string]any{
			{"uri": "https://issuer.example/lists/1", "cluster": "issuer", "authority": "issuer.example", "path": "/lists/1"},
			{"uri_prefix": "https://issuer.example/lists/", "cluster": "issuer", "authority": "issuer.example", "path": "/lists/"},
		},
	}
	b, _ := json.Marshal(cfg)
	return b
}

func statusConfig(t testing.TB, workers int, is *statusIssuer, failMode string) harness.Config {
	return baseConfig(workers, cfgOpts{noSync: true}, "").WithPluginConfig(statusPluginConfig(t, is, failMode)).WithCluster("issuer", is.addr)
}

func statusToken(jti string, idx int, uri string) string {
	c := claims(jti, "user-1")
	c["status"] = map[string]any{"status_list": map[string]any{"idx": idx, "uri": uri}}
	return localproxytest.HS256(secret, c)
}

// TestStatusListOnTheModule: in both hosts (wazero and V8), the real module fetches a Status
// List Token through its cluster on a tick (one worker), every worker answers from it, a
// status change reaches every worker once max_ttl has passed, and a list under the prefix is
// fetched when a token first names it.
func TestStatusListOnTheModule(t *testing.T) {
	for _, eng := range hosttest.Engines {
		t.Run(string(eng), func(t *testing.T) {
			is := startStatusIssuer(t)
			is.set("/lists/1", 0, 1, 2, 3)
			h := startHost(t, eng, statusConfig(t, 3, is, "open")) // no blocklist here: fail open for it
			round := func(d time.Duration) {
				t.Helper()
				time.Sleep(d)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if _, err := h.Tick(ctx); err != nil {
					t.Fatal(err)
				}
				if err := h.WaitHTTPCalls(ctx); err != nil {
					t.Fatal(err)
				}
			}
			all := func(tok string, want outcome, what string) {
				t.Helper()
				for vm := range h.Workers() {
					if got := doHost(t, h, vm, tok); got != want {
						t.Fatalf("%s on VM %d: %v; want %v", what, vm, got, want)
					}
				}
			}
			round(0)
			if n := is.fetches(); n != 1 {
				t.Fatalf("%d fetches after the first tick round; want 1", n)
			}
			round(0) // the other workers read the list's generation
			const u = "https://issuer.example/lists/1"
			all(statusToken("st-valid", 0, u), allowed, "VALID")
			all(statusToken("st-invalid", 1, u), revoked, "INVALID")
			all(statusToken("st-suspended", 2, u), revoked, "SUSPENDED")
			all(statusToken("st-other", 3, u), outcome{Status: 422, Body: `{"msg":"Token status is not accepted"}`}, "0x03")
			all(statusToken("st-unknown", 0, "https://other.example/1"), outcome{Status: 422, Body: `{"msg":"Token status list is not trusted"}`}, "not allowed")

			// A list named for the first time: unavailable (fail open: passes), fetched, then in force.
			later := statusToken("st-later", 1, "https://issuer.example/lists/2")
			is.set("/lists/2", 0, 1)
			all(later, allowed, "a list on its way, fail_mode open")
			round(0)
			round(0)
			all(later, revoked, "the prefix list once fetched")

			// The issuer revokes index 0; after max_ttl the list is fetched again (by one worker)
			// and every worker answers from the new one.
			is.set("/lists/1", 1, 1, 2, 3)
			round(2 * time.Second)
			round(0)
			all(statusToken("st-valid", 0, u), revoked, "index 0 after the issuer revoked it")
			if n, _, err := h.Metric(harness.MetricCounter, prefix+"statuslist.fetch_failures"); err != nil || n != 0 {
				t.Fatalf("fetch failures: %d, %v", n, err)
			}
		})
	}
}

// BenchmarkStatusList times proxy_on_request_headers for a token without a status claim and
// for tokens whose status list is held (VALID: passes; INVALID: 401), in native Go (the SDK's
// emulator), wazero and V8 in the same run, as p50, p99 and max with the ratio to native. The
// blocklist is held too (one revoked jti), so the plain case is the filter's usual cached
// path and the difference is the status check. JTIGUARD_BENCH_N sets the requests per case,
// JTIGUARD_BENCH_MD a file for the table.
//
//	JTIGUARD_BENCH_MD=build/bench-status.md go test -run '^$' -bench '^BenchmarkStatusList$' -benchtime 1x -timeout 20m ./e2e/
func BenchmarkStatusList(b *testing.B) {
	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("JTIGUARD_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	is := startStatusIssuer(b)
	is.set("/lists/1", append([]byte{0, 1}, make([]byte, 1<<16)...)...) // 65538 entries at 8 bits
	hcfg := statusConfig(b, 1, is, "closed")
	const u = "https://issuer.example/lists/1"
	cases := []benchCase{
		{name: "no status claim", tokens: []string{token("bench-plain")}, want: allowed},
		{name: "status VALID", tokens: []string{statusToken("bench-valid", 0, u)}, want: allowed},
		{name: "status INVALID", tokens: []string{statusToken("bench-invalid", 1, u)}, want: revoked},
	}
	list := localproxytest.List{JTIs: []string{"bench-revoked"}}
	for b.Loop() {
		native := newNativeTarget(b, statusPluginConfig(b, is, "closed"))
		if err := native.publish(list); err != nil {
			b.Fatal(err)
		}
		nativeFetch(b, native, is)
		targets := []benchTarget{native}
		for _, e := range hosttest.Engines {
			h := startHost(b, e, hcfg)
			ht := &hostTarget{h: h}
			if err := ht.publish(list); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := h.Tick(ctx); err != nil {
				b.Fatal(err)
			}
			if err := h.WaitHTTPCalls(ctx); err != nil {
				b.Fatal(err)
			}
			cancel()
			targets = append(targets, ht)
		}
		var md strings.Builder
		fmt.Fprintf(&md, "| case | host | requests | p50 µs | p99 µs | max µs | p50 vs native |\n|---|---|---|---|---|---|---|\n")
		for _, c := range cases {
			var base stats
			for _, tg := range targets {
				// Fresh within max_staleness whatever the hosts' start took.
				if err := tg.publish(list); err != nil {
					b.Fatal(err)
				}
				s, err := tg.run(c, n)
				if err != nil {
					b.Fatal(err)
				}
				if tg.name() == "native" {
					base = s
				}
				fmt.Fprintf(&md, "| %s | %s | %d | %.1f | %.1f | %.1f | %.1f× |\n", c.name, tg.name(), s.n, s.p50/1e3, s.p99/1e3, s.max/1e3, s.p50/base.p50)
			}
		}
		native.close()
		if p := os.Getenv("JTIGUARD_BENCH_MD"); p != "" {
			if err := os.WriteFile(p, []byte(md.String()), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.Log("\n" + md.String())
	}
}

// nativeFetch answers the emulator's status list callout with the issuer's response.
func nativeFetch(tb testing.TB, n *nativeTarget, is *statusIssuer) {
	tb.Helper()
	n.host.Tick()
	calls := n.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) != 1 {
		tb.Fatalf("native callouts: %+v", calls)
	}
	resp, err := http.Get("http://" + is.addr + headerOf(calls[0].Headers, ":path"))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n.host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", strconv.Itoa(resp.StatusCode)}}, nil, body)
}

func headerOf(h [][2]string, name string) string {
	for _, kv := range h {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}
