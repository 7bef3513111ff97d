package differential

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/envoyconfig"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

var (
	update     = flag.Bool("update", false, "rewrite table.md from this run")
	seed       = flag.Uint64("diff.seed", 1, "seed of the random shapes")
	randomN    = flag.Int("diff.random", 300, "random shapes per configuration")
	parallel   = flag.Int("diff.parallel", 4, "requests in flight")
	tablePath  = "table.md"
	letterOf   = map[string]string{"headers": "h", "cookies": "c", "query_string": "q", "json": "j"}
	allLocs    = []string{"headers", "cookies", "query_string", "json"}
	reqTimeout = 20 * time.Second
)

// proxyConfig is one deployment: a plugin configuration in front of the app whose
// JWT_TOKEN_LOCATION is the same list (the app a user would configure it for).
type proxyConfig struct {
	name    string
	about   string
	letters string // the app: its locations, one letter each
	plugin  []byte // nil: envoy.yaml's own
	note    string // what had to change to start it
	proxy   *localproxy.Proxy
	addr    string
	prefix  string
}

// result is what one request got, from the app or from the proxy.
type result struct {
	From   string // "app"; "filter" (its local reply); "proxy" (the local proxy's own answer); "error"
	Status int
	Auth   bool
	JTI    string
	Sub    string // integers in decimal
	Iat    int64
	Msg    string
	Took   time.Duration
	// Direct: the local proxy's Go HTTP server refused the request's bytes (400), so the
	// filter was run on them through the harness and, if it let them through, the same
	// bytes went to the app: what Envoy would do if its codec accepts them.
	Direct bool
}

func TestDifferential(t *testing.T) {
	versions := requirePython(t)
	t.Logf("reference: %s (%s)", versions, python)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()

	dir := t.TempDir()
	module := localproxytest.WriteModule(t, dir)
	t.Logf("module: %s", localproxytest.ModuleInfo(t))
	shipped, err := envoyconfig.Load(localproxytest.WriteEnvoyYAML(t, t.TempDir()))
	if err != nil {
		t.Fatalf("the shipped envoy.yaml: %v", err)
	}
	var base map[string]any
	if err := json.Unmarshal(shipped.Plugin.Configuration, &base); err != nil {
		t.Fatalf("envoy.yaml's plugin configuration: %v", err)
	}
	secret := shippedSecret(t, base)

	a := startApp(t, secret)
	now := time.Now()
	ts, err := mintTokens(ctx, a, now)
	if err != nil {
		t.Fatalf("mint tokens with the app: %v", err)
	}
	// envoy.yaml as shipped, but its module is the one under test and its upstream the app.
	// The revocation source's port is a free one: timers are off, nothing polls it.
	envoyYAML := localproxytest.WriteEnvoyYAML(t, t.TempDir(),
		"filename: build/jtiguard.wasm", "filename: "+module,
		"port_value: 8080", "port_value: "+localproxytest.Port(t, a.addr),
		"port_value: 8081", "port_value: "+localproxytest.Port(t, localproxytest.FreeAddr(t)))

	configs := buildConfigs(t, base)
	cache := wazero.NewCompilationCache()
	for _, c := range configs {
		startProxy(t, ctx, c, envoyYAML, cache)
	}

	shapes := corpus()
	nCorpus := len(shapes)
	shapes = append(shapes, randomShapes(*seed, *randomN)...)
	t.Logf("%d corpus shapes + %d random (seed %d), %d configurations", nCorpus, len(shapes)-nCorpus, *seed, len(configs))

	t.Logf("setup (module, app, tokens, %d proxies): %s", len(configs), time.Since(start).Round(time.Millisecond))
	sent := time.Now()
	// What flask does: each app variant once per shape.
	direct := map[string][]result{}
	for _, c := range configs {
		if _, ok := direct[c.letters]; !ok {
			direct[c.letters] = runAll(ctx, target{addr: a.addr, letters: c.letters}, shapes, ts)
		}
	}
	sanityDirect(t, shapes, direct, ts)

	// What the filter lets through, per configuration.
	proxied := map[string][]result{}
	for _, c := range configs {
		publish(t, c, ts.list, now)
		proxied[c.name] = runAll(ctx, target{addr: c.addr, letters: c.letters, h: c.proxy.Harness(), appAddr: a.addr}, shapes, ts)
	}
	sanityProxied(t, shapes, configs, proxied)
	t.Logf("%d requests straight to the app and %d through the proxies in %s", len(shapes)*len(direct), len(shapes)*len(configs),
		time.Since(sent).Round(time.Millisecond))

	total := 0
	classes := map[string]map[string]int{} // class → config → violations
	for _, c := range configs {
		var lines []string
		for i, s := range shapes {
			if r := proxied[c.name][i]; violation(r, ts.list) {
				lines = append(lines, fmt.Sprintf("  [%s] %s /%s: %s %s → the app authenticated %s",
					s.Class, s.Method, s.Route, c.name, s.Name, ts.names[r.JTI]))
				if classes[s.Class] == nil {
					classes[s.Class] = map[string]int{}
				}
				classes[s.Class][c.name]++
			}
		}
		total += len(lines)
		if len(lines) > 0 {
			t.Errorf("%s: %d requests got a revoked token to the app through the proxy:\n%s", c.name, len(lines), strings.Join(lines, "\n"))
		}
	}
	if total > 0 {
		var sum []string
		for _, cls := range slices.Sorted(maps.Keys(classes)) {
			var per []string
			for _, c := range configs {
				if n := classes[cls][c.name]; n > 0 {
					per = append(per, fmt.Sprintf("%s %d", c.name, n))
				}
			}
			sum = append(sum, fmt.Sprintf("  %-60s %s", cls, strings.Join(per, ", ")))
		}
		t.Errorf("%d violations; by class of shape:\n%s", total, strings.Join(sum, "\n"))
	}
	overBlocked := 0
	for _, c := range configs {
		for i := range shapes {
			if d, p := direct[c.letters][i], proxied[c.name][i]; d.From == "app" && d.Auth && !ts.list.revoked(d.JTI, d.Sub, d.Iat) && p.From != "app" {
				overBlocked++
			}
		}
	}
	t.Logf("%d violations; %d requests whose valid token flask accepts were refused by the proxy; %s",
		total, overBlocked, time.Since(start).Round(time.Millisecond))

	table := renderTable(shapes[:nCorpus], configs, direct, proxied, ts, versions, classes)
	out := tablePath
	if !*update {
		out = dir + "/table.md"
	}
	if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("table written to %s (-update writes %s)", out, tablePath)
}

func shippedSecret(t *testing.T, base map[string]any) string {
	t.Helper()
	jwt, _ := base["jwt"].(map[string]any)
	secrets, _ := jwt["hmac_secrets"].([]any)
	if len(secrets) > 0 {
		if s, _ := secrets[0].(map[string]any)["secret"].(string); s != "" {
			return s
		}
	}
	t.Fatalf("envoy.yaml's plugin configuration has no inline jwt.hmac_secrets[0].secret for the app to share")
	return ""
}

// buildConfigs derives the configurations from the shipped one, so each keeps whatever
// envoy.yaml sets that the suite does not vary.
func buildConfigs(t *testing.T, base map[string]any) []*proxyConfig {
	t.Helper()
	locs := func(m map[string]any) []string {
		var out []string
		if tok, ok := m["token"].(map[string]any); ok {
			if l, ok := tok["locations"].([]any); ok {
				for _, x := range l {
					out = append(out, x.(string))
				}
			}
		}
		if len(out) == 0 {
			out = []string{"headers"}
		}
		return out
	}
	letters := func(ls []string) string {
		var b strings.Builder
		for _, l := range ls {
			b.WriteString(letterOf[l])
		}
		return b.String()
	}
	with := func(missing, invalid string) []byte {
		m := deepCopy(base)
		tok, _ := m["token"].(map[string]any)
		if tok == nil {
			tok = map[string]any{}
			m["token"] = tok
		}
		tok["locations"] = allLocs
		tok["cookie_name"] = "access_token_cookie"
		tok["query_string_name"] = "jwt"
		m["missing_token"], m["invalid_token"] = missing, invalid
		b, _ := json.Marshal(m)
		return b
	}
	defaults, _ := json.Marshal(map[string]any{"prefix": base["prefix"],
		"jwt": map[string]any{"hmac_secrets": base["jwt"].(map[string]any)["hmac_secrets"]}, "sync": map[string]any{"cluster": ""}})
	return []*proxyConfig{
		{name: "shipped", about: "envoy.yaml as shipped", letters: letters(locs(base))},
		{name: "defaults", about: "the filter's defaults (only a secret) before flask's defaults (headers)", letters: "h", plugin: defaults},
		{name: "all", about: "every location, missing_token allow, invalid_token deny", letters: "hcqj", plugin: with("allow", "deny")},
		{name: "all/m-deny", about: "every location, missing_token deny, invalid_token deny", letters: "hcqj", plugin: with("deny", "deny")},
		{name: "all/i-allow", about: "every location, missing_token allow, invalid_token allow", letters: "hcqj", plugin: with("allow", "allow")},
		{name: "all/m-deny/i-allow", about: "every location, missing_token deny, invalid_token allow", letters: "hcqj", plugin: with("deny", "allow")},
	}
}

func deepCopy(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// startProxy runs c's plugin configuration in the local proxy (envoy.yaml's VM, root and
// plugin settings, the real module), in front of the app, on 127.0.0.1:0. A configuration
// the module refuses is retried without the locations it names that the filter does not
// know (json today), and says so: the app still reads them, so the suite shows what a user
// who cannot configure them gets.
func startProxy(t *testing.T, ctx context.Context, c *proxyConfig, envoyYAML string, cache wazero.CompilationCache) {
	t.Helper()
	load := func(plugin []byte) (*localproxy.Proxy, error) {
		return localproxy.Load(ctx, localproxy.Options{ConfigPath: envoyYAML, Workers: 2,
			ConfigureHarness: func(hc harness.Config) harness.Config {
				hc = hc.WithTimers(false).WithCompilationCache(cache)
				if plugin != nil {
					hc = hc.WithPluginConfig(plugin)
				}
				return hc
			}})
	}
	p, err := load(c.plugin)
	if err != nil && c.plugin != nil {
		var m map[string]any
		_ = json.Unmarshal(c.plugin, &m)
		if tok, ok := m["token"].(map[string]any); ok && slices.Contains(anyStrings(tok["locations"]), "json") {
			tok["locations"] = []string{"headers", "cookies", "query_string"}
			b, _ := json.Marshal(m)
			if p2, err2 := load(b); err2 == nil {
				c.note = fmt.Sprintf("the filter refuses token.locations \"json\" (%s); it runs with headers, cookies, query_string while the app also reads JSON bodies", firstLine(err))
				t.Logf("NOTE %s: %s", c.name, c.note)
				c.plugin, p, err = b, p2, nil
			}
		}
	}
	if err != nil {
		t.Fatalf("%s: the proxy does not start: %v", c.name, err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	var m map[string]any
	_ = json.Unmarshal(orDefault(c.plugin, p.Config.Plugin.Configuration), &m)
	c.prefix, _ = m["prefix"].(string)
	if c.prefix == "" {
		c.prefix = "jtiguard."
	}
	c.proxy = p
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localproxy.Serve(sctx, ln, c.proxy, time.Second) }()
	t.Cleanup(func() { stop(); <-done })
	c.addr = ln.Addr().String()
}

func anyStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func orDefault(a, b []byte) []byte {
	if a != nil {
		return a
	}
	return b
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// publish writes the revoked set into the proxy's shared data, fresh now (the shipped
// max_staleness counts from here, so each configuration's run publishes again).
func publish(t *testing.T, c *proxyConfig, l revokedList, now time.Time) {
	t.Helper()
	list := localproxytest.List{Cutoffs: map[string]time.Time{}, Exp: now.Add(2 * time.Hour)}
	for j := range l.jtis {
		list.JTIs = append(list.JTIs, j)
	}
	for sub, before := range l.cutoffs {
		list.Cutoffs[sub] = time.Unix(before, 0)
	}
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: c.proxy.Harness()}, c.prefix, list); err != nil {
		t.Fatalf("%s: publish the list: %v", c.name, err)
	}
}

func violation(r result, l revokedList) bool {
	return r.From == "app" && r.Auth && l.revoked(r.JTI, r.Sub, r.Iat)
}

// sanityDirect: the reference app must authenticate the plain revoked token, or every
// "no violation" would be vacuous.
func sanityDirect(t *testing.T, shapes []shape, direct map[string][]result, ts *tokens) {
	t.Helper()
	for letters, rs := range direct {
		for i, s := range shapes {
			if s.Class == "baseline" && strings.Contains(s.Name, "{R}") && strings.HasPrefix(s.Name, "Authorization") {
				if r := rs[i]; !(r.From == "app" && r.Auth && ts.list.jtis[r.JTI]) {
					t.Fatalf("app %s: %s /%s %s = %+v; want the revoked token authenticated (the reference app is broken)", letters, s.Method, s.Route, s.Name, r)
				}
			}
		}
	}
}

// sanityProxied: through each proxy the plain revoked header token gets the filter's 401 and
// the plain valid one reaches the app, so the filter runs with the list and the secret.
func sanityProxied(t *testing.T, shapes []shape, configs []*proxyConfig, proxied map[string][]result) {
	t.Helper()
	for _, c := range configs {
		for i, s := range shapes {
			if s.Class != "baseline" || !strings.HasPrefix(s.Name, "Authorization") || s.Route != "protected" {
				continue
			}
			r := proxied[c.name][i]
			switch {
			case strings.Contains(s.Name, "{R}") && !(r.From == "filter" && r.Status == 401):
				t.Fatalf("%s: %s = %+v; want the filter's 401 (is the list published?)", c.name, s.Name, r)
			case strings.Contains(s.Name, "{D}") && !(r.From == "app" && r.Auth):
				t.Fatalf("%s: %s = %+v; want the app to authenticate the valid token", c.name, s.Name, r)
			}
		}
	}
}

// target is where runAll sends: the app, or a proxy in front of it (h, appAddr set).
type target struct {
	addr, letters string
	h             *harness.Harness
	appAddr       string
}

// runAll sends every shape to t, parallel*-wide.
func runAll(ctx context.Context, t target, shapes []shape, ts *tokens) []result {
	out := make([]result, len(shapes))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(*parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t0 := time.Now()
				out[i] = send(ctx, t.addr, t.letters, shapes[i], ts)
				if t.h != nil && out[i].From == "proxy" && out[i].Status == http.StatusBadRequest {
					out[i] = throughHarness(ctx, t, shapes[i], ts)
				}
				out[i].Took = time.Since(t0)
			}
		}()
	}
	for i := range shapes {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return out
}

// rawRequest writes the request byte for byte: Go's client would canonicalize or refuse
// some of the shapes, and the point is that both sides see the same bytes.
func rawRequest(s shape, letters string, ts *tokens) []byte {
	target, headers, body := materialized(s, letters, ts)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.test\r\n", s.Method, target)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
	}
	switch {
	case s.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 7)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
	case body != "" || s.Method == "POST" || s.Method == "PUT" || s.Method == "PATCH":
		fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	default:
		b.WriteString("Connection: close\r\n\r\n")
	}
	return b.Bytes()
}

// materialized returns s's request target, headers and body with the tokens in.
func materialized(s shape, letters string, ts *tokens) (target string, headers []header, body string) {
	kind := "access"
	if s.Route == "refresh" {
		kind = "refresh"
	}
	target = "/" + letters + "/" + s.Route
	if s.Query != "" {
		target += "?" + ts.materialize(s.Query, kind)
	}
	for _, h := range s.Headers {
		headers = append(headers, header{h.Name, ts.materialize(h.Value, kind)})
	}
	if rest, ok := strings.CutPrefix(s.Body, utf16Marker); ok {
		body = encodeUTF16LE(ts.materialize(rest, kind))
	} else {
		body = ts.materialize(s.Body, kind)
	}
	return target, headers, body
}

// throughHarness runs a request that the local proxy's Go HTTP server refuses (control
// bytes in a header value) through the filter directly, as Envoy would present it (values
// trimmed of spaces and tabs at both ends), and sends the same bytes to the app if the
// filter lets it through.
func throughHarness(ctx context.Context, t target, s shape, ts *tokens) result {
	path, headers, body := materialized(s, t.letters, ts)
	var pairs harness.Pairs
	for _, h := range headers {
		pairs = append(pairs, [2]string{strings.ToLower(h.Name), strings.Trim(h.Value, " \t")})
	}
	if body != "" {
		if s.Chunked {
			pairs = append(pairs, [2]string{"transfer-encoding", "chunked"})
		} else {
			pairs = append(pairs, [2]string{"content-length", strconv.Itoa(len(body))})
		}
	}
	ctx = context.WithoutCancel(ctx)
	st, err := t.h.NewStream(ctx, harness.AnyVM)
	if err != nil {
		return result{From: "error", Msg: err.Error(), Direct: true}
	}
	defer st.End(ctx)
	act, err := st.RequestHeaders(ctx, harness.RequestHeadersFor(harness.Request{Method: s.Method, Path: path,
		Authority: "app.test", Headers: pairs}), body == "")
	if err == nil && body != "" && st.LocalResponse() == nil && act != harness.ActionContinue {
		_, err = st.RequestBody(ctx, []byte(body), true)
	}
	if err != nil {
		return result{From: "error", Msg: err.Error(), Direct: true}
	}
	if lr := st.LocalResponse(); lr != nil {
		var msg struct {
			Msg string `json:"msg"`
		}
		_ = json.Unmarshal(lr.Body, &msg)
		return result{From: "filter", Status: int(lr.Status), Msg: msg.Msg, Direct: true}
	}
	r := send(ctx, t.appAddr, t.letters, s, ts)
	r.Direct = true
	return r
}

func send(ctx context.Context, addr, letters string, s shape, ts *tokens) result {
	return sendBytes(ctx, addr, s.Method, rawRequest(s, letters, ts))
}

// sendBytes sends a request already written out and reads what answered it.
func sendBytes(ctx context.Context, addr, method string, raw []byte) result {
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return result{From: "error", Msg: err.Error()}
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Write and read at once: a server may answer (413, 400) before it read the whole body.
	go func() { _, _ = conn.Write(raw) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return result{From: "error", Msg: "read response: " + err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	r := result{Status: resp.StatusCode}
	var msg struct {
		Msg string `json:"msg"`
	}
	_ = json.Unmarshal(body, &msg)
	r.Msg = msg.Msg
	switch {
	case resp.Header.Get("X-Diffapp") != "":
		r.From = "app"
		if resp.Header.Get("X-Diffapp-Auth") == "1" {
			r.Auth = true
			_ = json.Unmarshal([]byte(resp.Header.Get("X-Diffapp-Jti")), &r.JTI)
			var sub any
			_ = json.Unmarshal([]byte(resp.Header.Get("X-Diffapp-Sub")), &sub)
			switch v := sub.(type) {
			case string:
				r.Sub = v
			case float64:
				r.Sub = strconv.FormatFloat(v, 'f', -1, 64)
			}
			_ = json.Unmarshal([]byte(resp.Header.Get("X-Diffapp-Iat")), &r.Iat)
		}
		if r.Msg == "" && !r.Auth && r.Status == 200 {
			r.Msg = "no token"
		}
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		// The filter's local replies are JSON; the local proxy's own answers (its HTTP
		// server's 400, 413 past the buffer limit, 500/503) are plain text.
		r.From = "filter"
		if r.Msg == "" {
			r.Msg = strings.TrimSpace(string(body))
		}
	default:
		r.From = "proxy"
		r.Msg = strings.TrimSpace(string(body))
	}
	return r
}
