// Command jtiguard-demo is what `make run` runs: in one process, on loopback only, the
// revocation source (in-process, SQLite in a temporary directory), an echo upstream and the
// local proxy hosting the module, all wired by the repository's envoy.yaml. It mints a demo
// token, prints curl commands, then shows the three steps itself — 200, revoke, 401 — and
// keeps serving until Ctrl-C.
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
	"strings"
	"sync"
	"syscall"
	"time"

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
	listen     string
	workers    int
	wasi       harness.WASIGeneration
	adminToken string
	// exitAfterSteps stops after the demonstration instead of serving until ctx ends.
	exitAfterSteps bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("jtiguard-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.configPath, "config", "envoy.yaml", "Envoy bootstrap: plugin config, upstream and revocation_source clusters")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:10000", "proxy listen address (loopback by default, whatever envoy.yaml says)")
	fs.IntVar(&o.workers, "workers", 2, "worker VMs")
	wasi := fs.String("wasi", "current", `WASI surface: "current" or "envoy-1.33"`)
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer token of the source's admin API (default: random, printed)")
	fs.BoolVar(&o.exitAfterSteps, "exit-after-steps", false, "exit after showing 200, revoke, 401 (for scripts and tests)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	g, err := harness.ParseWASIGeneration(*wasi)
	if err != nil {
		return o, fmt.Errorf("%w: -wasi: %w", errUsage, err)
	}
	o.wasi = g
	if o.adminToken == "" {
		o.adminToken = randomHex(16)
	}
	return o, nil
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

	serve := func(name, addr string, h http.Handler) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%w: %s on %s: %w", errSetup, name, addr, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := localproxy.Serve(ctx, ln, h, 5*time.Second); err != nil {
				logger.Error("server stopped", "name", name, "err", err)
			}
		}()
		return nil
	}

	// 1. The revocation source, with its SQLite default in a temporary directory.
	dir, err := os.MkdirTemp("", "jtiguard-demo-")
	if err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	store, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, DSN: filepath.Join(dir, "revocations.db"), CreateTables: true})
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
	if err := serve("revocation source", source.Address, srv.Handler()); err != nil {
		return err
	}
	// 2. The echo upstream.
	if err := serve("echo upstream", upstream.Address, echoHandler()); err != nil {
		return err
	}
	// 3. The local proxy hosting the module.
	p, err := localproxy.Load(ctx, localproxy.Options{ConfigPath: o.configPath, Workers: o.workers, WASI: o.wasi, Logger: logger})
	if err != nil {
		return fmt.Errorf("%w: %w", errSetup, err)
	}
	cleanups = append(cleanups, func() { p.Close(context.Background()) })
	if err := serve("proxy", o.listen, p); err != nil {
		return err
	}

	d := &demo{
		out: stdout, proxyURL: "http://" + o.listen + "/hello", adminURL: "http://" + source.Address + revocationsource.AdminPath,
		adminToken: o.adminToken, wait: pcfg.Sync.Interval.D() + pcfg.Sync.Timeout.D(),
		client: &http.Client{Timeout: 10 * time.Second},
	}
	d.token, d.jti, d.exp = mint(secret, pcfg)
	fmt.Fprintf(stdout, "jtiguard demo: proxy http://%s → echo upstream http://%s; revocation source http://%s (SQLite in %s)\n",
		o.listen, upstream.Address, source.Address, dir)
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

// mint makes a flask-jwt-extended style access token: random jti, valid for 15 minutes.
func mint(secret []byte, cfg *filter.Config) (token, jti string, exp int64) {
	now := time.Now()
	jti = randomHex(16)
	exp = now.Add(15 * time.Minute).Unix()
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

	revokedAt := time.Now()
	deadline = revokedAt.Add(d.wait + time.Second)
	for {
		if status, body, err = d.get(ctx); err != nil {
			return fmt.Errorf("%w: step 3: %w", errStep, err)
		}
		if status != http.StatusOK || time.Now().After(deadline) || ctx.Err() != nil {
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
