package differential

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/envoyconfig"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestBodyHeadersNamedWithUnderscores sends two requests byte for byte to the real app
// (werkzeug 2.2.2's server, flask-jwt-extended 4.4.4), straight and through the local proxy
// running the real module, with the suite's "all" configurations (every location, json
// included). werkzeug keys headers by name.upper().replace("-", "_"), so a header named
// Content_Type sets CONTENT_TYPE (the body then parses as JSON though Content-Type says
// text/plain) and one named Transfer_Encoding makes it de-chunk the body (joining a token the
// framing cut in two). Straight, the app must authenticate the revoked token (else the shapes
// test nothing); through the proxy, the filter must answer (credentials.bodyHeaderVariant).
func TestBodyHeadersNamedWithUnderscores(t *testing.T) {
	requirePython(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	module := localproxytest.WriteModule(t, dir)
	shipped, err := envoyconfig.Load(localproxytest.WriteEnvoyYAML(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	var base map[string]any
	if err := json.Unmarshal(shipped.Plugin.Configuration, &base); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, shippedSecret(t, base))
	now := time.Now()
	ts, err := mintTokens(ctx, a, now)
	if err != nil {
		t.Fatal(err)
	}
	envoyYAML := localproxytest.WriteEnvoyYAML(t, t.TempDir(),
		"filename: build/jtiguard.wasm", "filename: "+module,
		"port_value: 8080", "port_value: "+localproxytest.Port(t, a.addr),
		"port_value: 8081", "port_value: "+localproxytest.Port(t, localproxytest.FreeAddr(t)))
	cache := wazero.NewCompilationCache()
	var configs []*proxyConfig
	for _, c := range buildConfigs(t, base) {
		if strings.HasPrefix(c.name, "all") {
			startProxy(t, ctx, c, envoyYAML, cache)
			publish(t, c, ts.list, now)
			configs = append(configs, c)
		}
	}

	revoked := ts.byKind["access"]["R"]
	doc := `{"access_token":"` + revoked + `"}`
	p := strings.Split(revoked, ".")[1]
	cut := strings.Index(doc, p) + len(p)/2
	chunked := fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", cut, doc[:cut], len(doc)-cut, doc[cut:])
	shapes := []struct{ name, headers, body string }{
		{"Content-Type: text/plain + Content_Type: application/json, JSON body",
			"Content-Type: text/plain\r\nContent_Type: application/json\r\n", doc},
		{"Content-Type: application/json + Transfer_Encoding: chunked, Content-Length body framed as chunks cutting the payload",
			"Content-Type: application/json\r\nTransfer_Encoding: chunked\r\n", chunked},
	}
	violations := 0
	for _, s := range shapes {
		raw := []byte("POST /hcqj/protected HTTP/1.1\r\nHost: app.test\r\n" + s.headers +
			fmt.Sprintf("Content-Length: %d\r\nConnection: close\r\n\r\n", len(s.body)) + s.body)
		d := sendBytes(ctx, a.addr, "POST", raw)
		t.Logf("%s\n  straight to the app: %s", s.name, describeResult(d, ts))
		if !d.Auth || d.JTI != "rev-access" { // specs: R of kind access
			t.Errorf("%s: straight to the app %s, want the revoked token authenticated: the shape no longer probes anything", s.name, describeResult(d, ts))
		}
		for _, c := range configs {
			r := sendBytes(ctx, c.addr, "POST", raw)
			t.Logf("  through %s: %s", c.name, describeResult(r, ts))
			if violation(r, ts.list) {
				violations++
				t.Errorf("%s: %s → the app authenticated %s through the proxy", c.name, s.name, ts.names[r.JTI])
			}
			if r.From != "filter" {
				t.Errorf("%s: %s → %s, want the filter's answer", c.name, s.name, describeResult(r, ts))
			}
		}
	}
	t.Logf("%d violations", violations)
}
