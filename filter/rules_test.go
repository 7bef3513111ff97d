package filter

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

func TestRulesConfigErrors(t *testing.T) {
	tests := []struct {
		rules, want string
	}{
		{`[{"match":{},"skip":true}]`, "rules[0].match: needs at least one of"},
		{`[{"match":{"path":"/a"}}]`, "rules[0]: changes nothing"},
		{`[{"match":{"path":"/a"},"skip":true,"missing_token":"deny"}]`, "rules[0]: skip requires nothing"},
		{`[{"match":{"path":"/a","path_prefix":"/b"},"skip":true}]`, "give path or path_prefix, not both"},
		{`[{"match":{"path":"a"},"skip":true}]`, "rules[0].match.path: must be a path in normal form"},
		{`[{"match":{"path_prefix":"/a/../b"},"skip":true}]`, "rules[0].match.path"},
		{`[{"match":{"path":"/a%2Fb"},"skip":true}]`, "rules[0].match.path"},
		{`[{"match":{"path":"/a?x=1"},"skip":true}]`, "rules[0].match.path"},
		{`[{"match":{"path":"//a"},"skip":true}]`, "rules[0].match.path"},
		{`[{"match":{"methods":["get"]},"skip":true}]`, "rules[0].match.methods: a method is an upper-case token"},
		{`[{"match":{"host":"a b"},"skip":true}]`, "rules[0].match.host"},
		{`[{"match":{"path":"/a"},"missing_token":"maybe"}]`, `rules[0].missing_token: must be "allow" or "deny"`},
		{`[{"match":{"path":"/a"},"invalid_token":"x"}]`, `rules[0].invalid_token`},
		{`[{"match":{"path":"/a"},"token_types":[]}]`, `rules[0].token_types: must allow at least one`},
		{`[{"match":{"path":"/a"},"token_types":["id"]}]`, `rules[0].token_types: unknown token type "id"`},
		{`[{"match":{"path":"/a"},"skip":true},{"match":{"route_name":"` + strings.Repeat("r", 300) + `"},"skip":true}]`, "rules[1].match.route_name"},
		{`[` + strings.Repeat(`{"match":{"path":"/a"},"skip":true},`, maxRules) + `{"match":{"path":"/a"},"skip":true}]`, "rules: at most 64 rules"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s3cret-s3cret-s3cret-s3cret-s3cret"}]},"rules":`+tt.rules+`}`), nil)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("rules %.80s: %v; want an error containing %q", tt.rules, err, tt.want)
		}
	}
}

// TestRoutePolicy: which rule a request matches, first match winning.
func TestRoutePolicy(t *testing.T) {
	cfg := hsConfig(`,"missing_token":"deny","rules":[
		{"match":{"path_prefix":"/public"},"skip":true},
		{"match":{"path":"/auth/refresh","methods":["POST"]},"token_types":["refresh"]},
		{"match":{"host":"open.example.com"},"missing_token":"allow"},
		{"match":{"host":"ops.example.com:8443","methods":["GET"]},"skip":true},
		{"match":{"route_name":"webhooks"},"invalid_token":"allow","missing_token":"allow"},
		{"match":{"path_prefix":"/"},"token_types":["access"]}]`)
	var p *pluginContext
	f := &fixture{t: t, now: testNow}
	opt := proxytest.NewEmulatorOption().
		WithVMContext(&capturingVM{vmContext: newVMContext(func() time.Time { return f.now }), got: &p}).
		WithPluginConfiguration([]byte(cfg)).
		WithProperty([]string{"xds", "route_name"}, []byte("webhooks"))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("start: %v %q", st, host.GetCriticalLogs())
	}
	// The route name property is set for every request here, so the webhooks rule matches
	// whatever got past the rules before it; the catch-all after it is never reached.
	tests := []struct {
		method, authority, path string
		want                    int // index of the matching rule
	}{
		{"GET", "app", "/public", 0},
		{"GET", "app", "/public/", 0},
		{"GET", "app", "/public/css/site.css?v=1", 0},
		{"GET", "app", "/publicity", 4},
		{"GET", "app", "/pub%6cic/x", 0}, // decoded as the application decodes it
		{"POST", "app", "/auth/refresh", 1},
		{"GET", "app", "/auth/refresh", 4},
		{"POST", "app", "/auth/refresh/", 4},
		{"GET", "OPEN.example.com:80", "/x", 2},
		{"GET", "ops.example.com:8443", "/x", 3},
		{"HEAD", "ops.example.com:8443", "/x", 3},
		{"get", "ops.example.com:8443", "/x", 3}, // werkzeug upper-cases the method
		{"head", "ops.example.com:8443", "/x", 3},
		{"GET", "ops.example.com", "/x", 4},
		{"DELETE", "ops.example.com:8443", "/x", 4},
	}
	for _, tt := range tests {
		pol, amb := p.routePolicy([][2]string{{":method", tt.method}, {":authority", tt.authority}, {":path", tt.path}})
		if amb != "" {
			t.Errorf("%s %s%s: ambiguous %q", tt.method, tt.authority, tt.path, amb)
			continue
		}
		if want := &p.cfg.rules[tt.want].pol; pol != want {
			t.Errorf("%s %s%s: matched %+v; want rule %d", tt.method, tt.authority, tt.path, *pol, tt.want)
		}
	}
}

// TestRulesNeverSkipRevocation: what a rule relaxes is validation; a revoked token is refused
// on every route, and a path a rule cannot be chosen for with confidence is refused.
func TestRulesNeverSkipRevocation(t *testing.T) {
	f := start(t, hsConfig(`,"missing_token":"deny","rules":[
		{"match":{"path_prefix":"/public"},"skip":true},
		{"match":{"path":"/auth/refresh"},"token_types":["refresh"]},
		{"match":{"path":"/open"},"missing_token":"allow"}]`))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked"}}, nil)
	access := hs256(t, claimsAt(testNow, "ok"))
	refresh := func() string { c := claimsAt(testNow, "ok-r"); c["type"] = "refresh"; return hs256(t, c) }()
	revoked := hs256(t, claimsAt(testNow, "revoked"))
	status := func(path string, h [][2]string) int {
		t.Helper()
		_, resp := f.request(append([][2]string{{":path", path}}, h...))
		if resp == nil {
			return 200
		}
		return int(resp.StatusCode)
	}
	tests := []struct {
		name, path string
		headers    [][2]string
		want       int
	}{
		{"skip: no token", "/public/x", nil, 200},
		{"skip: a bad token", "/public/x", bearer("not.a.token"), 200},
		{"skip: a revoked token", "/public/x", bearer(revoked), 401},
		{"skip: a revoked token in a cookie", "/public/x", [][2]string{{"cookie", "access_token_cookie=" + revoked}}, 401},
		{"top level: no token", "/api", nil, 401},
		{"refresh route: an access token", "/auth/refresh", bearer(access), 422},
		{"refresh route: a refresh token", "/auth/refresh", bearer(refresh), 200},
		{"refresh route: a revoked token", "/auth/refresh", bearer(revoked), 401},
		{"open route: no token", "/open", nil, 200},
		{"open route: a revoked token", "/open", bearer(revoked), 401},
		{"a dot segment", "/public/../api", nil, 422},
		{"an encoded slash", "/public%2F..%2Fapi", nil, 422},
		{"an encoded dot segment", "/public/%2e%2e/api", nil, 422},
		{"an empty segment", "//public/x", nil, 422},
		{"a backslash", "/public\\..\\api", nil, 422},
		{"a semicolon", "/public;/api", nil, 422},
		{"a bad escape", "/public/%zz", nil, 422},
		{"a revoked token on a path not in normal form", "/public/../api", bearer(revoked), 401},
	}
	for _, tt := range tests {
		if got := status(tt.path, tt.headers); got != tt.want {
			t.Errorf("%s (%s): %d; want %d", tt.name, tt.path, got, tt.want)
		}
	}
	f.host.Tick()
	if n, _ := f.host.GetCounterMetric("jtiguard.requests.skipped"); n != 2 {
		t.Errorf("requests.skipped = %d; want 2", n)
	}
}

// TestNoPathRulesNoPathChecks: without a rule on paths, the path is not the filter's business.
func TestNoPathRulesNoPathChecks(t *testing.T) {
	f := start(t, hsConfig(`,"rules":[{"match":{"methods":["OPTIONS"]},"skip":true}]`))
	f.publish("jtiguard.", testNow, nil, nil)
	if _, resp := f.request([][2]string{{":path", "/a/../b;c"}}); resp != nil {
		t.Fatalf("a path not in normal form without path rules: %d %s; want allowed", resp.StatusCode, resp.Data)
	}
}

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		in, out string
		ok      bool
	}{
		{"/", "/", true},
		{"/a/b/", "/a/b/", true},
		{"/a?x=/../", "/a", true},
		{"/a#f", "/a", true},
		{"/%61%62", "/ab", true},
		{"/a%20b", "/a b", true},
		{"/a.b/..c/.d", "/a.b/..c/.d", true},
		{"", "", false},
		{"a", "", false},
		{"*", "", false},
		{"/a//b", "", false},
		{"/a/./b", "", false},
		{"/a/..", "", false},
		{"/a/%2E", "", false},
		{"/a%2fb", "", false},
		{"/a%5Cb", "", false},
		{"/a%25", "", false},
		{"/a%", "", false},
		{"/a%0", "", false},
		{"/a%0a", "", false},
		{"/a\x7f", "", false},
	}
	var buf []byte
	for _, tt := range tests {
		out, ok := canonicalPath(tt.in, &buf)
		if ok != tt.ok || ok && out != tt.out {
			t.Errorf("canonicalPath(%q) = %q, %v; want %q, %v", tt.in, out, ok, tt.out, tt.ok)
		}
	}
}

// FuzzCanonicalPath: a path accepted as normal is one a router cannot resolve to another:
// no empty, '.' or '..' segment, no separator but '/', and nothing left to decode.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/%2e%2e/", "/a%2f", "/a;b", "/a\\b", "/%61"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := canonicalPath(in, nil)
		if !ok {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.Contains(out, "//") || strings.ContainsAny(out, "\\;") {
			t.Fatalf("canonicalPath(%q) = %q", in, out)
		}
		for _, seg := range strings.Split(out[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("canonicalPath(%q) = %q: a dot segment", in, out)
			}
		}
		if !strings.Contains(in, "%") && !strings.HasPrefix(in, out) {
			t.Fatalf("canonicalPath(%q) = %q changed a path with nothing to decode", in, out)
		}
	})
}

// TestRoutePolicyAllocatesNothing: matching rules, decoding included, costs no allocation
// once the path buffer has grown.
func TestRoutePolicyAllocatesNothing(t *testing.T) {
	var p *pluginContext
	f := &fixture{t: t, now: testNow}
	opt := proxytest.NewEmulatorOption().
		WithVMContext(&capturingVM{vmContext: newVMContext(func() time.Time { return f.now }), got: &p}).
		WithPluginConfiguration([]byte(hsConfig(`,"rules":[{"match":{"path_prefix":"/public","methods":["GET"]},"skip":true},{"match":{"host":"h"},"skip":true}]`)))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	host.StartPlugin()
	headers := [][2]string{{":method", "POST"}, {":authority", "app:80"}, {":path", "/pub%6cic/x?y=1"}}
	p.routePolicy(headers)
	if n := testing.AllocsPerRun(100, func() { p.routePolicy(headers) }); n != 0 {
		t.Fatalf("routePolicy: %.0f allocations; want 0", n)
	}
}

// TestREADMERulesExampleParses: the rules example in the README is a valid configuration.
func TestREADMERulesExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := doc[bytes.Index(doc, []byte("### Per-route rules")):]
	m := regexp.MustCompile("(?s)```json\n(.*?)```").FindSubmatch(section)
	if m == nil {
		t.Fatal("no json block under Per-route rules in README.md")
	}
	cfg, err := ParseConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s3cret-s3cret-s3cret-s3cret-s3cret"}]},`+string(m[1])+`}`), nil)
	if err != nil {
		t.Fatalf("README rules example: %v", err)
	}
	if len(cfg.rules) != 4 || !cfg.rules[0].pol.skip || cfg.rules[1].pol.kinds != [2]bool{false, true} {
		t.Fatalf("README rules example compiled to %+v", cfg.rules)
	}
}

// TestSkipStillRemovesForgedClaimHeaders: a route a rule skips still goes upstream without
// the client's headers of jwt.claims_to_headers names, so they cannot be forged there.
func TestSkipStillRemovesForgedClaimHeaders(t *testing.T) {
	f := start(t, claimsConfig(`,"rules":[{"match":{"path_prefix":"/public"},"skip":true}]`))
	f.publish("jtiguard.", testNow, nil, nil)
	id := f.host.InitializeHttpContext()
	defer f.host.CompleteHttpContext(id)
	action := f.host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":authority", "app"}, {":path", "/public/x"},
		{"x-user-id", "admin"}}, true)
	if action != types.ActionContinue || f.host.GetSentLocalResponse(id) != nil {
		t.Fatal("a skipped route's request was not let through")
	}
	if got := values(f.host.GetCurrentRequestHeaders(id), "x-user-id"); len(got) != 0 {
		t.Fatalf("x-user-id upstream = %q; want the forged one removed", got)
	}
}
