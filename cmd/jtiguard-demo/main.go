// Command jtiguard-demo is what `make run` runs: in one process, on loopback only, the
// revocation source (in-process, SQLite in a temporary directory), an echo upstream and the
// local proxy hosting the module, all wired by the repository's envoy.yaml. It mints a demo
// token, prints curl commands, then shows the three steps itself — 200, revoke, 401 — and
// keeps serving until Ctrl-C.
//
// Ports: the demo takes envoy.yaml's (proxy 10000, source 8081, upstream 8080) when they are
// free and a free one in place of each that is taken, saying so; a port given on the command
// line (make run PROXY_PORT=…) is used or the demo stops and says what to do.
//
// Two helper modes serve the docs' step-by-step quick start, where a real Envoy runs:
// -echo-only serves just the echo upstream where envoy.yaml expects it, and -mint prints a
// fresh demo token as shell assignments (TOKEN, JTI, EXP).
//
// It builds nothing: `make run` builds build/jtiguard.wasm first. See docs/local-proxy.md.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/jtiguard/jtiguard/envoyconfig"
	"github.com/jtiguard/jtiguard/filter"
	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy"
	"github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

// Sentinel errors.
var (
	errUsage = errors.New("usage")
	// errSetup: a component could not start (port in use, bad config, missing module).
	errSetup = errors.New("demo setup failed")
	// errStep: a demo step did not give the expected answer.
	errStep = errors.New("demo step failed")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jtiguard-demo:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type options struct {
	configPath string
	// listen, sourceListen, upstreamListen: "" means envoy.yaml's address, or a free port when
	// that one is taken; an address given explicitly must be free.
	listen, sourceListen, upstreamListen string
	workers                              int
	wasi                                 harness.WASIGeneration
	adminToken                           string
	// exitAfterSteps stops after the demonstration instead of serving until ctx ends.
	exitAfterSteps bool
	// echoOnly serves only the echo upstream (for a real Envoy started from envoy.yaml).
	echoOnly bool
	// mint prints a fresh token as shell assignments and exits.
	mint    bool
	mintJTI string
	mintTTL time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("jtiguard-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.configPath, "config", "envoy.yaml", "Envoy bootstrap: plugin config, upstream and revocation_source clusters")
	fs.StringVar(&o.listen, "listen", "", "proxy address (default 127.0.0.1 and envoy.yaml's listener port, or a free port if taken)")
	fs.StringVar(&o.sourceListen, "source-listen", "", "revocation source address (default: cluster revocation_source of envoy.yaml, or a free port if taken)")
	fs.StringVar(&o.upstreamListen, "upstream-listen", "", "echo upstream address (default: the route's cluster in envoy.yaml, or a free port if taken)")
	fs.IntVar(&o.workers, "workers", 2, "worker VMs")
	wasi := fs.String("wasi", "current", `WASI surface: "current" or "envoy-1.33"`)
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token of the source's admin API (default: random, printed)")
	fs.BoolVar(&o.exitAfterSteps, "exit-after-steps", false, "exit after showing 200, revoke, 401 (for scripts and tests)")
	fs.BoolVar(&o.echoOnly, "echo-only", false, "serve only the echo upstream, where envoy.yaml's route cluster expects it (for a real Envoy)")
	fs.BoolVar(&o.mint, "mint", false, "print a fresh demo token as shell assignments TOKEN=… JTI=… EXP=… and exit")
	fs.StringVar(&o.mintJTI, "jti", "", "with -mint: the token's jti (default: random)")
	fs.DurationVar(&o.mintTTL, "ttl", 15*time.Minute, "with -mint: the token's lifetime")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	g, err := harness.ParseWASIGeneration(*wasi)
	if err != nil {
		return o, fmt.Errorf("%w: -wasi: %w", errUsage, err)
	}
	o.wasi = g
	if o.workers < 1 {
		return o, fmt.Errorf("%w: -workers=%d: want at least 1", errUsage, o.workers)
	}
	if o.mintTTL <= 0 {
		return o, fmt.Errorf("%w: -ttl=%s: want a positive duration such as 15m", errUsage, o.mintTTL)
	}
	if o.echoOnly && o.mint {
		return o, fmt.Errorf("%w: -echo-only and -mint exclude each other", errUsage)
	}
	for _, a := range []struct{ flag, v string }{{"-listen", o.listen}, {"-source-listen", o.sourceListen}, {"-upstream-listen", o.upstreamListen}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return o, fmt.Errorf("%w: %s=%q: want host:port such as 127.0.0.1:10000 (port 0 picks a free one)", errUsage, a.flag, a.v)
		}
	}
	if o.adminToken == "" {
		o.adminToken = randomHex(16)
	}
	return o, nil
}

// makeVar names the make variable that sets each address, for the hint printed when a port is taken.
var makeVar = map[string]string{"proxy": "PROXY_PORT", "revocation source": "SOURCE_PORT", "echo upstream": "UPSTREAM_PORT"}

// listen binds what for a component. An explicit address must be free; the default (envoy.yaml's)
// falls back to a free port on the same host when taken, and says so on out.
func listen(out io.Writer, what, explicit, fallback string) (net.Listener, error) {
	addr := explicit
	if addr == "" {
		addr = fallback
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: %s on %s: %w", errSetup, what, addr, err)
	}
	if explicit != "" {
		return nil, fmt.Errorf("%w: %s: %s is in use. Stop what listens there, or choose another port: make run %s=<port> (0 picks a free one)",
			errSetup, what, addr, makeVar[what])
	}
	host, _, _ := net.SplitHostPort(addr)
	ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errSetup, what, err)
	}
	fmt.Fprintf(out, "note: %s is in use; the %s listens on %s instead (make run %s=<port> chooses one)\n",
		addr, what, ln.Addr(), makeVar[what])
	return ln, nil
}

// loopback keeps the port of a configured address but binds it on 127.0.0.1: the demo never
// listens beyond this machine, whatever envoy.yaml's listener says.
func loopback(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// run starts everything, shows the demo and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Teardown order matters: stop the servers and the source's syncer first, then release
	// what they use (the VMs, the SQLite store, the temporary directory).
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var cleanups []func()
	defer func() {
		cancel()
		wg.Wait()
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	ecfg, err := envoyconfig.Load(o.configPath)
	if err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}
	pcfg, err := filter.ParseConfig(ecfg.Plugin.Configuration, os.Getenv)
	if err != nil {
		return fmt.Errorf("%w: plugin configuration in %s: %w", errSetup, o.configPath, err)
	}
	upstream, ok := ecfg.Clusters[ecfg.RouteCluster]
	if !ok {
		return fmt.Errorf("%w: route cluster %q undefined", errSetup, ecfg.RouteCluster)
	}
	source, ok := ecfg.Clusters[pcfg.Sync.Cluster]
	if !ok || pcfg.Sync.Cluster == "" {
		return fmt.Errorf("%w: the plugin has no sync cluster defined in %s", errSetup, o.configPath)
	}
	secret, err := demoSecret(pcfg)
	if err != nil {
		return err
	}
	if o.mint {
		token, jti, exp := mint(secret, pcfg, o.mintJTI, o.mintTTL)
		fmt.Fprintf(stdout, "TOKEN=%s\nJTI=%s\nEXP=%d\n", token, jti, exp)
		return nil
	}

	serve := func(name string, ln net.Listener, h http.Handler) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := localproxy.Serve(ctx, ln, h, 5*time.Second); err != nil {
				logger.Error("server stopped", "name", name, "err", err)
			}
		}()
	}

	if o.echoOnly {
		// A real Envoy expects the upstream exactly where envoy.yaml says: no fallback port.
		addr := o.upstreamListen
		if addr == "" {
			addr = upstream.Address
		}
		ln, err := listen(stdout, "echo upstream", addr, "")
		if err != nil {
			return err
		}
		serve("echo upstream", ln, echoHandler())
		fmt.Fprintf(stdout, "echo upstream on http://%s (cluster %q of %s); Ctrl-C stops it\n", ln.Addr(), ecfg.RouteCluster, o.configPath)
		<-ctx.Done()
		return nil
	}

	// Bind everything first, so the bootstrap the proxy loads names the real addresses.
	sourceLn, err := listen(stdout, "revocation source", o.sourceListen, source.Address)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { sourceLn.Close() })
	upstreamLn, err := listen(stdout, "echo upstream", o.upstreamListen, upstream.Address)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { upstreamLn.Close() })
	proxyLn, err := listen(stdout, "proxy", o.listen, loopback(ecfg.ListenAddress))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { proxyLn.Close() })
	sourceAddr, upstreamAddr, proxyAddr := sourceLn.Addr().String(), upstreamLn.Addr().String(), proxyLn.Addr().String()

	dir, err := os.MkdirTemp("", "jtiguard-demo-")
	if err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	bootstrap, err := deriveBootstrap(o.configPath, ecfg, dir, map[string]string{
		pcfg.Sync.Cluster: sourceAddr, ecfg.RouteCluster: upstreamAddr,
	})
	if err != nil {
		return err
	}

	// 1. The revocation source, with SQLite in the temporary directory. The table keeps each
	// revocation's expiry (the token's exp), so entries leave the feed once their token expires.
	store, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, DSN: filepath.Join(dir, "revocations.db"),
		ExpiresColumn: sqlstore.Named("expires"), CreateTables: true})
	if err != nil {
		return fmt.Errorf("%w: revocation store: %w", errSetup, err)
	}
	cleanups = append(cleanups, func() { store.Close() })
	idx := revocationsource.NewIndex(time.Now, 0)
	syncer := &revocationsource.Syncer{Store: store, Index: idx, Logger: logger, ReconcileEvery: time.Minute}
	if err := syncer.ReconcileOnce(ctx); err != nil { // ready before the first poll
		return fmt.Errorf("%w: revocation store: %w", errSetup, err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = syncer.Run(ctx) }()
	srv := &revocationsource.Server{Index: idx, Store: store, Logger: logger, AdminToken: o.adminToken, Ready: syncer.Ready}
	serve("revocation source", sourceLn, srv.Handler())
	// 2. The echo upstream.
	serve("echo upstream", upstreamLn, echoHandler())
	// 3. The local proxy hosting the module.
	p, err := localproxy.Load(ctx, localproxy.Options{ConfigPath: bootstrap, Workers: o.workers, WASI: o.wasi, Logger: logger})
	if err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}
	cleanups = append(cleanups, func() { p.Close(context.Background()) })
	serve("proxy", proxyLn, p)

	d := &demo{
		out: stdout, proxyURL: "http://" + proxyAddr + "/hello", adminURL: "http://" + sourceAddr + revocationsource.AdminPath,
		feedURL: "http://" + sourceAddr + revocationsource.FeedPath, adminToken: o.adminToken,
		wait: pcfg.Sync.Interval.D() + pcfg.Sync.Timeout.D(), client: &http.Client{Timeout: 10 * time.Second},
	}
	d.token, d.jti, d.exp = mint(secret, pcfg, "", 15*time.Minute)
	fmt.Fprintf(stdout, "jtiguard demo: proxy http://%s → echo upstream http://%s; revocation source http://%s (SQLite in %s)\n",
		proxyAddr, upstreamAddr, sourceAddr, dir)
	fmt.Fprintf(stdout, "module %s in %d worker VMs (%s WASI); sync every %s\n\n", p.WasmPath, o.workers, o.wasi, pcfg.Sync.Interval.D())
	d.printCommands()
	if err := d.steps(ctx); err != nil {
		return err
	}
	if o.exitAfterSteps {
		return nil
	}
	fmt.Fprintln(stdout, "\nStill serving; try the commands above. Ctrl-C stops everything.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return nil
}

// deriveBootstrap writes a copy of the bootstrap into dir with each named cluster's endpoint at
// the given address and the module's path made absolute (resolved as Envoy and localproxy do:
// against the working directory, then the bootstrap's directory), and returns its path. The
// copy is JSON, which is YAML.
func deriveBootstrap(path string, cfg *envoyconfig.Config, dir string, addrs map[string]string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errSetup, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%w: %s: %w", errSetup, path, err)
	}
	sr, _ := doc["static_resources"].(map[string]any)
	clusters, _ := sr["clusters"].([]any)
	done := map[string]bool{}
	for _, c := range clusters {
		cm, _ := c.(map[string]any)
		name, _ := cm["name"].(string)
		addr, ok := addrs[name]
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("%w: cluster %q address %q: %w", errSetup, name, addr, err)
		}
		n, _ := strconv.Atoi(port)
		la, _ := cm["load_assignment"].(map[string]any)
		eps, _ := la["endpoints"].([]any)
		if len(eps) == 0 {
			return "", fmt.Errorf("%w: cluster %q has no endpoints to move", errSetup, name)
		}
		lbs, _ := eps[0].(map[string]any)["lb_endpoints"].([]any)
		if len(lbs) == 0 {
			return "", fmt.Errorf("%w: cluster %q has no lb_endpoints to move", errSetup, name)
		}
		ep, _ := lbs[0].(map[string]any)["endpoint"].(map[string]any)
		ad, _ := ep["address"].(map[string]any)
		ad["socket_address"] = map[string]any{"address": host, "port_value": n}
		done[name] = true
	}
	for name := range addrs {
		if !done[name] {
			return "", fmt.Errorf("%w: cluster %q not found in %s", errSetup, name, path)
		}
	}
	wasm := cfg.Plugin.WasmFile
	if !filepath.IsAbs(wasm) {
		if _, err := os.Stat(wasm); err != nil {
			wasm = filepath.Join(filepath.Dir(path), wasm)
		}
		if wasm, err = filepath.Abs(wasm); err != nil {
			return "", fmt.Errorf("%w: %w", errSetup, err)
		}
	}
	replaceString(doc, "filename", cfg.Plugin.WasmFile, wasm)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return "", fmt.Errorf("%w: %w", errSetup, err)
	}
	p := filepath.Join(dir, "envoy.json")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		return "", fmt.Errorf("%w: %w", errSetup, err)
	}
	return p, nil
}

// replaceString sets every map entry key: old in v to new.
func replaceString(v any, key, old, new string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == key && s == old {
				x[k] = new
				continue
			}
			replaceString(c, key, old, new)
		}
	case []any:
		for _, c := range x {
			replaceString(c, key, old, new)
		}
	}
}

// demoSecret returns the first HMAC secret of the plugin configuration.
func demoSecret(cfg *filter.Config) ([]byte, error) {
	if !slices.Contains(cfg.JWT.Algorithms, "HS256") || len(cfg.JWT.HMACSecrets) == 0 {
		return nil, fmt.Errorf("%w: the demo mints HS256 tokens; the plugin configuration has no HS256 secret", errSetup)
	}
	s := cfg.JWT.HMACSecrets[0]
	switch {
	case s.Secret != "":
		return []byte(s.Secret), nil
	case s.SecretBase64 != "":
		b, err := base64.StdEncoding.DecodeString(s.SecretBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: secret_base64: %w", errSetup, err)
		}
		return b, nil
	case s.SecretEnv != "" && os.Getenv(s.SecretEnv) != "":
		return []byte(os.Getenv(s.SecretEnv)), nil
	}
	return nil, fmt.Errorf("%w: cannot read the first HMAC secret", errSetup)
}

// mint makes a flask-jwt-extended style access token: the given jti (random when empty), valid for ttl.
func mint(secret []byte, cfg *filter.Config, jti string, ttl time.Duration) (token, _ string, exp int64) {
	now := time.Now()
	if jti == "" {
		jti = randomHex(16)
	}
	exp = now.Add(ttl).Unix()
	claims := map[string]any{"jti": jti, "sub": "demo-user", "type": "access", "fresh": false,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": exp}
	if len(cfg.JWT.Issuers) > 0 {
		claims["iss"] = cfg.JWT.Issuers[0]
	}
	if len(cfg.JWT.Audiences) > 0 {
		claims["aud"] = cfg.JWT.Audiences[0]
	}
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), jti, exp
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// echoHandler answers with what it received, header names only: values may hold tokens.
func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, strings.ToLower(k))
		}
		slices.Sort(names)
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"upstream": "echo", "method": r.Method, "path": r.URL.Path, "host": r.Host,
			"x-request-id": r.Header.Get("x-request-id"), "header_names": names,
		})
	})
}

// demo holds what the printed commands and the steps share. The token is printed on
// purpose — to stdout, for the person running the demo — and never logged.
type demo struct {
	out                io.Writer
	client             *http.Client
	proxyURL, adminURL string
	feedURL            string
	adminToken         string
	token, jti         string
	exp                int64
	wait               time.Duration
}

func (d *demo) revokeBody() string { return fmt.Sprintf(`{"jti":%q,"exp":%d}`, d.jti, d.exp) }

func (d *demo) printCommands() {
	fmt.Fprintf(d.out, "A fresh HS256 access token (jti %s, expires in 15 min):\n\n  TOKEN=%s\n\n", d.jti, d.token)
	fmt.Fprintf(d.out, "1. Through the proxy, with the token (200 from the echo server):\n\n  curl -i -H \"Authorization: Bearer $TOKEN\" %s\n\n", d.proxyURL)
	fmt.Fprintf(d.out, "2. Revoke it at the revocation source:\n\n  curl -i -X POST -H 'Authorization: Bearer %s' -H 'content-type: application/json' \\\n    -d '%s' %s\n\n",
		d.adminToken, d.revokeBody(), d.adminURL)
	fmt.Fprintf(d.out, "3. The same request, within one sync interval + callout (%s): 401 {\"msg\":\"Token has been revoked\"}\n\n  curl -i -H \"Authorization: Bearer $TOKEN\" %s\n\n", d.wait, d.proxyURL)
}

// steps performs the three commands and prints what came back.
func (d *demo) steps(ctx context.Context) error {
	fmt.Fprintln(d.out, "Running them now:")
	// The first list is fetched when the module starts; until it lands, fail_mode closed
	// answers 503. Wait for it (bounded), as a person would retry.
	var status int
	var body string
	deadline := time.Now().Add(d.wait + 2*time.Second)
	for {
		var err error
		if status, body, err = d.get(ctx); err != nil {
			return fmt.Errorf("%w: step 1: %w", errStep, err)
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	fmt.Fprintf(d.out, "\n  1. GET %s with the token → %d %s\n", d.proxyURL, status, oneLine(body))
	if status != http.StatusOK {
		return fmt.Errorf("%w: step 1: got %d, want 200 from the echo server", errStep, status)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.adminURL, strings.NewReader(d.revokeBody()))
	req.Header.Set("Authorization", "Bearer "+d.adminToken)
	req.Header.Set("content-type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: step 2: %w", errStep, err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Fprintf(d.out, "  2. POST %s {jti} → %d %s\n", d.adminURL, resp.StatusCode, oneLine(string(rb)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: step 2: revoke answered %d", errStep, resp.StatusCode)
	}
	exp, err := d.feedExp(ctx)
	if err != nil {
		return fmt.Errorf("%w: step 2: %w", errStep, err)
	}
	fmt.Fprintf(d.out, "     the feed %s lists the jti until exp %d (%s), the token's own expiry\n",
		d.feedURL, exp, time.Unix(exp, 0).UTC().Format(time.RFC3339))
	if exp != d.exp {
		return fmt.Errorf("%w: step 2: the feed lists the jti with exp %d, want the token's exp %d", errStep, exp, d.exp)
	}

	revokedAt := time.Now()
	deadline = revokedAt.Add(2*d.wait + time.Second)
	for {
		if status, body, err = d.get(ctx); err != nil {
			return fmt.Errorf("%w: step 3: %w", errStep, err)
		}
		// 200 until the proxy has the new list; a 503 while a worker has none usable is
		// fail_mode closed doing its job: retry both, as a person would.
		if status != http.StatusOK && status != http.StatusServiceUnavailable || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 100*time.Millisecond)
	}
	fmt.Fprintf(d.out, "  3. GET %s with the same token, %s after the revocation → %d %s\n",
		d.proxyURL, time.Since(revokedAt).Round(10*time.Millisecond), status, oneLine(body))
	if status != http.StatusUnauthorized || !strings.Contains(body, "Token has been revoked") {
		return fmt.Errorf("%w: step 3: got %d %s, want 401 Token has been revoked", errStep, status, oneLine(body))
	}
	return nil
}

// feedExp reads the full feed and returns the exp it lists for the demo's jti: an entry without
// one would stay on every proxy's list for ever.
func (d *demo) feedExp(ctx context.Context) (int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.feedURL, nil)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var feed struct {
		Entries []struct {
			JTI string `json:"jti"`
			Exp int64  `json:"exp"`
		} `json:"entries"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&feed); err != nil {
		return 0, fmt.Errorf("feed %s: %d: %w", d.feedURL, resp.StatusCode, err)
	}
	for _, e := range feed.Entries {
		if e.JTI == d.jti {
			return e.Exp, nil
		}
	}
	return 0, fmt.Errorf("feed %s does not list the revoked jti", d.feedURL)
}

func (d *demo) get(ctx context.Context) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.proxyURL, nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func oneLine(s string) string { return string(bytes.TrimSpace([]byte(s))) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
