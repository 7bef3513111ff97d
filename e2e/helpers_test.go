package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
	"github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

const (
	secret      = "e2e-test-secret-of-at-least-32-bytes!!"
	otherSecret = "another-secret-of-at-least-32-bytes!!!"
	// interval is the plugin's sync interval in these tests: short, so "within one interval"
	// is cheap to wait for. timeout stays below the default lease TTL (3 intervals), which
	// the sync config requires.
	interval   = 200 * time.Millisecond
	timeout    = 500 * time.Millisecond
	maxBackoff = 400 * time.Millisecond
	cluster    = "revocation_source"
	prefix     = "jtiguard."
)

// compiled caches wazero's compilation of the module across the harnesses of one test binary.
var compiled = sync.OnceValue(func() wazero.CompilationCache { return wazero.NewCompilationCache() })

// cfgOpts selects what differs between scenarios.
type cfgOpts struct {
	failMode string // "closed" (default) or "open"
	noSync   bool   // sync.cluster "": the list is written into shared data by the test
	interval time.Duration
	// watch is sync.watch.wait. 0 turns the long poll off: the tests that drive polls tick
	// by tick need every callout answered at once (watch_test.go turns it on).
	watch time.Duration
}

// pluginConfig is the plugin JSON of the tests: HS256 with secret, tokens in the
// Authorization header, flask-jwt-extended replies, and a jitter-free sync.
func pluginConfig(o cfgOpts) []byte {
	if o.failMode == "" {
		o.failMode = "closed"
	}
	if o.interval == 0 {
		o.interval = interval
	}
	sync := map[string]any{"cluster": cluster, "authority": "revocation-source", "path": revocationsource.FeedPath,
		"interval": o.interval.String(), "timeout": timeout.String(), "jitter": 0, "max_backoff": max(maxBackoff, o.interval).String(),
		"watch": map[string]any{"wait": o.watch.String()}}
	if o.noSync {
		sync = map[string]any{"cluster": ""}
	}
	b, _ := json.Marshal(map[string]any{
		"prefix":        prefix,
		"token":         map[string]any{"locations": []string{"headers"}, "header_name": "Authorization", "header_type": "Bearer"},
		"jwt":           map[string]any{"algorithms": []string{"HS256"}, "hmac_secrets": []map[string]string{{"secret": secret}}, "token_types": []string{"access", "refresh"}},
		"missing_token": "allow",
		"invalid_token": "deny",
		"fail_mode":     o.failMode,
		"max_staleness": "60s",
		"sync":          sync,
	})
	return b
}

// claims are a flask-jwt-extended access token's, issued a minute ago, valid for an hour.
func claims(jti, sub string) map[string]any {
	now := time.Now().Unix()
	return map[string]any{"jti": jti, "sub": sub, "type": "access", "fresh": false,
		"iat": now - 60, "nbf": now - 60, "exp": now + 3600}
}

func token(jti string) string { return localproxytest.HS256(secret, claims(jti, "user-1")) }

// sessionToken is a token of the session sid (an OpenID Connect sid claim).
func sessionToken(jti, sid string) string {
	c := claims(jti, "user-1")
	c["sid"] = sid
	return localproxytest.HS256(secret, c)
}

func bearer(tok string) harness.Pairs { return harness.Pairs{{"authorization", "Bearer " + tok}} }

// startHarness starts the real module; it fails the test (never skips) when the module
// cannot be had or does not start, whatever the WASI surface.
func startHarness(t testing.TB, cfg harness.Config) *harness.Harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := harness.New(ctx, localproxytest.Module(t), cfg.WithCompilationCache(compiled()))
	if err != nil {
		t.Fatalf("start the module (%s): %v", localproxytest.ModuleInfo(t), err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("module logs:\n%s", lastLines(h.Logs().String(), 60))
		}
		_ = h.Close(context.Background())
	})
	return h
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// baseConfig is a harness with timers off: the test decides when which VM ticks.
func baseConfig(workers int, o cfgOpts, sourceAddr string) harness.Config {
	c := harness.NewConfig().WithWorkers(workers).WithWASI(harness.WASICurrent).
		WithPluginConfig(pluginConfig(o)).WithTimers(false).WithLogLevel(harness.LogInfo)
	if sourceAddr != "" {
		c = c.WithCluster(cluster, sourceAddr)
	}
	return c
}

// outcome is a filter decision as a client sees it.
type outcome struct {
	Continue bool
	Status   uint32
	Body     string
}

func (o outcome) String() string {
	if o.Continue {
		return "continue"
	}
	return fmt.Sprintf("%d %s", o.Status, o.Body)
}

var (
	allowed    = outcome{Continue: true}
	revoked    = outcome{Status: 401, Body: `{"msg":"Token has been revoked"}`}
	unavailabe = outcome{Status: 503, Body: `{"msg":"Token revocation list unavailable"}`}
)

// do runs one request with tok (none if "") on VM vm and returns the decision.
func do(t testing.TB, h *harness.Harness, vm int, tok string) outcome {
	t.Helper()
	r := harness.Request{Path: "/api", VM: vm}
	if tok != "" {
		r.Headers = bearer(tok)
	}
	res, err := h.Do(context.Background(), r)
	if err != nil {
		t.Fatalf("Do on VM %d: %v", vm, err)
	}
	if res.VMFailure != nil {
		t.Fatalf("VM %d failed: %v", vm, res.VMFailure)
	}
	if lr := res.LocalResponse; lr != nil {
		return outcome{Status: lr.Status, Body: string(lr.Body)}
	}
	if res.Action != harness.ActionContinue {
		t.Fatalf("VM %d paused without a local reply", vm)
	}
	return allowed
}

// expectAll asserts the decision for tok on every VM.
func expectAll(t testing.TB, h *harness.Harness, tok string, want outcome, what string) {
	t.Helper()
	for vm := 0; vm < h.Workers(); vm++ {
		if got := do(t, h, vm, tok); got != want {
			t.Fatalf("%s on VM %d: %v; want %v", what, vm, got, want)
		}
	}
}

// waitCalls waits (bounded) for every callout in flight to be delivered.
func waitCalls(t testing.TB, h *harness.Harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.WaitHTTPCalls(ctx); err != nil {
		t.Fatal(err)
	}
}

// tickRound waits d, then ticks the given VMs (all when none given) and waits for the
// callouts they made: one round of each worker's timer, deterministic.
func tickRound(t testing.TB, h *harness.Harness, d time.Duration, vms ...int) {
	t.Helper()
	time.Sleep(d)
	ctx := context.Background()
	if len(vms) == 0 {
		h.Tick(ctx)
	}
	for _, vm := range vms {
		if err := h.VM(vm).Tick(ctx); err != nil {
			t.Fatalf("tick VM %d: %v", vm, err)
		}
	}
	waitCalls(t, h)
	// A list written by the callout's answer reaches the other VMs' requests within the
	// filter's recheck period (100 ms): the promise is one interval plus that.
	time.Sleep(listRecheck)
}

// listRecheck is the filter's bound on how stale a request's view of the list may be.
const listRecheck = 100 * time.Millisecond

func counter(h *harness.Harness, name string) int64 {
	v, _ := h.Metrics().Counter(prefix + name)
	return v
}

// source is the real revocation source (revocationsource.Server over its SQLite store) on
// 127.0.0.1, which the tests can stop (the port then refuses connections) and restart.
type source struct {
	t          testing.TB
	addr       string
	adminToken string
	store      *sqlstore.Store
	mu         sync.Mutex
	srv        *http.Server
}

func startSource(t testing.TB) *source {
	t.Helper()
	store, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite,
		DSN: filepath.Join(t.TempDir(), "revocations.db"), CreateTables: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &source{t: t, store: store, adminToken: "e2e-admin-token"}
	s.up("127.0.0.1:0")
	t.Cleanup(func() { s.down(); store.Close() })
	return s
}

// up starts a fresh source process on addr: a new index loaded from the store, as after a
// restart (its change log is empty, so the filter's next poll gets a snapshot).
func (s *source) up(addr string) {
	s.t.Helper()
	idx := revocationsource.NewIndex(time.Now, 0)
	sy := &revocationsource.Syncer{Store: s.store, Index: idx}
	if err := sy.ReconcileOnce(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	var ln net.Listener
	var err error
	for range 50 { // the old socket may linger for a moment after down
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("listen %s: %v", addr, err)
	}
	srv := &http.Server{Handler: (&revocationsource.Server{Index: idx, Store: s.store, AdminToken: s.adminToken, Ready: sy.Ready}).Handler()}
	go srv.Serve(ln)
	s.mu.Lock()
	s.addr, s.srv = ln.Addr().String(), srv
	s.mu.Unlock()
}

// down stops the source: its port refuses connections until up.
func (s *source) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

var errAdmin = errors.New("admin call failed")

// revoke revokes jti through the admin API, as an application's logout would.
func (s *source) revoke(jti string) error {
	body := fmt.Sprintf(`{"jti":%q,"exp":%d}`, jti, time.Now().Add(2*time.Hour).Unix())
	return s.admin(body)
}

// revokeSession logs a session out: every token whose sid is sid (a claim entry).
func (s *source) revokeSession(sid string) error {
	return s.admin(fmt.Sprintf(`{"claim":"sid","value":%q,"exp":%d}`, sid, time.Now().Add(2*time.Hour).Unix()))
}

// revokeSubject logs a subject out everywhere (cutoff at now).
func (s *source) revokeSubject(sub string) error { return s.admin(fmt.Sprintf(`{"sub":%q}`, sub)) }

func (s *source) admin(body string) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.addr+revocationsource.AdminPath, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errAdmin, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %d %s", errAdmin, resp.StatusCode, b)
	}
	return nil
}

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// ci reports whether the tests run under CI, where nothing may be skipped silently.
func ci() bool { return os.Getenv("CI") == "true" }

// localproxyHS256 signs a token for sub issued ageSeconds from now (negative: in the past).
func localproxyHS256(jti, sub string, ageSeconds int64) string {
	c := claims(jti, sub)
	iat := time.Now().Unix() + ageSeconds
	c["iat"], c["nbf"] = iat, iat
	return localproxytest.HS256(secret, c)
}

func revocationEntry(jti string) revocationsource.Entry {
	return revocationsource.Entry{JTI: jti, Exp: time.Now().Add(2 * time.Hour).Unix()}
}

// reportTable logs a benchmark's markdown table and writes it to the file the environment
// variable env names, if set (the make targets read it from there).
func reportTable(b *testing.B, env, md string) {
	if p := os.Getenv(env); p != "" {
		if err := os.WriteFile(p, []byte(md), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.Log("\n" + md)
}

// runDocSection runs, from the repository root and as a reader would, every line of the ```sh
// blocks of docs/benchmarks.md's section titled title (up to the next "## " heading), with env
// added to the environment, and returns what they printed. A line that fails fails the test.
func runDocSection(t *testing.T, title string, env ...string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/benchmarks.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/benchmarks.md has no section %q", title)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) == 0 {
		t.Fatalf("no shell block in the section %q of docs/benchmarks.md", title)
	}
	var out strings.Builder
	for _, b := range blocks {
		for _, line := range strings.Split(strings.TrimSpace(b[1]), "\n") {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, "sh", "-c", line)
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), env...)
			res, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\n%s", line, err, res)
			}
			out.Write(res)
		}
	}
	return out.String()
}
