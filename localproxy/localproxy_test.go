package localproxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

const secret = "localproxy-test-secret-at-least-32-bytes"

// pluginJSON configures the filter without syncing: the tests publish the list themselves,
// so no timer or callout takes part and every answer is deterministic.
var pluginJSON = []byte(`{"jwt":{"hmac_secrets":[{"secret":"` + secret + `"}]},"sync":{"cluster":""}}`)

func tok(jti string) string {
	now := time.Now().Unix()
	return localproxytest.HS256(secret, map[string]any{"jti": jti, "sub": "u", "type": "access",
		"iat": now - 5, "nbf": now - 5, "exp": now + 600})
}

// seen is what the upstream received.
type seen struct {
	Method, Path, RawQuery, Host, Body string
	Header                             http.Header
}

func newUpstream(t *testing.T) (*httptest.Server, func() []seen) {
	var mu sync.Mutex
	var got []seen
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, string(b), r.Header.Clone()})
		mu.Unlock()
		w.Header().Set("x-upstream", "echo")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "from upstream")
	}))
	t.Cleanup(up.Close)
	return up, func() []seen { mu.Lock(); defer mu.Unlock(); return append([]seen(nil), got...) }
}

func startProxy(t *testing.T, upstream string) (*localproxy.Proxy, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	h, err := harness.New(ctx, localproxytest.Module(t), harness.NewConfig().WithWorkers(2).
		WithWASI(harness.WASICurrent).WithPluginConfig(pluginJSON).WithTimers(false))
	if err != nil {
		t.Fatalf("start module: %v", err)
	}
	t.Cleanup(func() { h.Close(ctx) })
	err = localproxytest.Publish(localproxytest.HarnessStore{H: h}, "jtiguard.", localproxytest.List{JTIs: []string{"revoked-jti"}})
	if err != nil {
		t.Fatal(err)
	}
	p := localproxy.New(h, upstream, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

// TestServeHTTP: allowed requests reach the upstream with method, path, query, authority
// and body intact plus the headers Envoy adds; denied ones get the filter's local reply and
// never reach it. Requests alternate between the VMs (round robin), so both are exercised.
func TestServeHTTP(t *testing.T) {
	up, upstreamSaw := newUpstream(t)
	_, srv := startProxy(t, strings.TrimPrefix(up.URL, "http://"))
	for _, tc := range []struct {
		name       string
		method     string
		path, body string
		auth       string
		wantStatus int
		wantBody   string
		upstream   bool
	}{
		{name: "no token goes upstream", method: "GET", path: "/a/b?x=1&y=2", wantStatus: 418, wantBody: "from upstream", upstream: true},
		{name: "valid token with a body goes upstream", method: "POST", path: "/post", body: "payload", auth: "Bearer " + tok("ok-jti"), wantStatus: 418, wantBody: "from upstream", upstream: true},
		{name: "valid token on the other VM", method: "GET", path: "/again", auth: "Bearer " + tok("ok-jti"), wantStatus: 418, wantBody: "from upstream", upstream: true},
		{name: "revoked token", method: "GET", path: "/r", auth: "Bearer " + tok("revoked-jti"), wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "malformed token", method: "GET", path: "/m", auth: "Bearer not-a-jwt", wantStatus: 422},
		{name: "two bearer credentials", method: "GET", path: "/two", auth: "Bearer a, Bearer b", wantStatus: 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(upstreamSaw())
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.body == "" {
				req.Body = http.NoBody
			}
			req.Host = "app.example"
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || tc.wantBody != "" && string(b) != tc.wantBody {
				t.Fatalf("got %d %s; want %d %s", resp.StatusCode, b, tc.wantStatus, tc.wantBody)
			}
			after := upstreamSaw()
			if !tc.upstream {
				if len(after) != before {
					t.Fatalf("a denied request reached the upstream")
				}
				if ct := resp.Header.Get("content-type"); ct != "application/json" {
					t.Fatalf("local reply content-type %q; want application/json", ct)
				}
				return
			}
			if len(after) != before+1 {
				t.Fatalf("upstream got %d requests; want 1", len(after)-before)
			}
			s := after[len(after)-1]
			wantPath, wantQuery, _ := strings.Cut(tc.path, "?")
			if s.Method != tc.method || s.Path != wantPath || s.RawQuery != wantQuery || s.Host != "app.example" || s.Body != tc.body {
				t.Fatalf("upstream saw %s %s?%s host %s body %q; want %s %s host app.example body %q",
					s.Method, s.Path, s.RawQuery, s.Host, s.Body, tc.method, tc.path, tc.body)
			}
			if s.Header.Get("x-request-id") == "" || s.Header.Get("x-forwarded-proto") != "http" {
				t.Fatalf("upstream headers lack x-request-id / x-forwarded-proto added as Envoy does: %v", names(s.Header))
			}
			if tc.auth != "" && s.Header.Get("authorization") != tc.auth {
				t.Fatalf("authorization header not forwarded unchanged")
			}
		})
	}
}

func names(h http.Header) []string {
	var out []string
	for k := range h {
		out = append(out, k)
	}
	return out
}

// TestClientHangupDoesNotFailVM: a request whose client is gone must not take its VM down
// (the harness closes a module when the context of a call ends).
func TestClientHangupDoesNotFailVM(t *testing.T) {
	up, _ := newUpstream(t)
	p, _ := startProxy(t, strings.TrimPrefix(up.URL, "http://"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 4 { // both VMs, twice
		req := httptest.NewRequest("GET", "/x", nil).WithContext(ctx)
		req.Header.Set("Authorization", "Bearer "+tok("revoked-jti"))
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Fatalf("status %d; want 401", rec.Code)
		}
	}
	for i := range p.Harness().Workers() {
		if err := p.Harness().VM(i).Failed(); err != nil {
			t.Fatalf("VM %d failed after a cancelled request: %v", i, err)
		}
	}
}

// TestLoad reads an envoy.yaml whose wasm path is relative to the file's directory (the
// working directory is elsewhere), serves on its own listener and shuts down on cancel.
func TestLoad(t *testing.T) {
	up, upstreamSaw := newUpstream(t)
	dir := t.TempDir()
	localproxytest.WriteModule(t, dir)
	cfgPath := localproxytest.WriteEnvoyYAML(t, dir,
		"filename: build/jtiguard.wasm", "filename: jtiguard.wasm",
		"port_value: 8080", "port_value: "+localproxytest.Port(t, strings.TrimPrefix(up.URL, "http://")),
		"port_value: 8081", "port_value: "+localproxytest.Port(t, localproxytest.FreeAddr(t)))
	ctx := context.Background()
	p, err := localproxy.Load(ctx, localproxy.Options{ConfigPath: cfgPath, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	if p.WasmPath != filepath.Join(dir, "jtiguard.wasm") || p.Harness().Workers() != 3 || p.Config.RouteCluster != "upstream" {
		t.Fatalf("loaded %s with %d workers, route %s", p.WasmPath, p.Harness().Workers(), p.Config.RouteCluster)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- localproxy.Serve(sctx, ln, p, 5*time.Second) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/no-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 418 || len(upstreamSaw()) != 1 {
		t.Fatalf("no-token request: %d, upstream saw %d; want 418 from the upstream", resp.StatusCode, len(upstreamSaw()))
	}
	// envoy.yaml disables the filter on exactly /healthz (FilterConfig{disabled: true}); everywhere
	// else a malformed token is answered by the filter and never reaches the upstream.
	for _, tc := range []struct {
		path     string
		upstream bool
	}{{"/healthz", true}, {"/healthz?x=1", true}, {"/healthz/", false}, {"/healthzz", false}, {"/%68ealthz", false}, {"/api", false}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+tc.path, nil)
		req.Header.Set("Authorization", "Bearer not.a.jwt")
		before := len(upstreamSaw())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if reached := len(upstreamSaw()) > before; reached != tc.upstream || (resp.StatusCode == 418) != tc.upstream {
			t.Errorf("%s with a malformed token: %d, upstream reached %v; want upstream %v", tc.path, resp.StatusCode, reached, tc.upstream)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v; want nil (graceful shutdown)", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}

// TestLoadErrors: each way Load can fail wraps its sentinel.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		yaml func(t *testing.T) string
		want error
	}{
		{"missing config", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.yaml") }, localproxy.ErrConfig},
		{"missing module", func(t *testing.T) string {
			return localproxytest.WriteEnvoyYAML(t, t.TempDir(), "filename: build/jtiguard.wasm", "filename: /nonexistent/x.wasm")
		}, localproxy.ErrModule},
		{"module that does not compile", func(t *testing.T) string {
			return localproxytest.WriteEnvoyYAML(t, t.TempDir(), "filename: build/jtiguard.wasm", "filename: "+garbage)
		}, localproxy.ErrStart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := localproxy.Load(context.Background(), localproxy.Options{ConfigPath: tc.yaml(t)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v; want %v", err, tc.want)
			}
		})
	}
}
