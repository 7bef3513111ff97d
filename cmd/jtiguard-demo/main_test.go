package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// demoSecretOfExample is the HMAC secret of docs/plugin-config.example.json, which envoy.yaml embeds.
const demoSecretOfExample = "change-me-demo-secret-at-least-32-bytes"

// holdPort listens on a free loopback port for the test's duration and returns its port.
func holdPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestDemoSteps runs what `make run` runs with a 1s sync interval instead of envoy.yaml's 5s,
// and checks the person would see 200, the revocation (listed in the feed with the token's exp),
// then 401 — and that the process stops cleanly afterwards. The ports envoy.yaml names for the
// source and the upstream are held by the test, so the demo must fall back to free ones and say so.
func TestDemoSteps(t *testing.T) {
	dir := t.TempDir()
	wasm := localproxytest.WriteModule(t, dir)
	sourcePort, upstreamPort := holdPort(t), holdPort(t)
	cfg := localproxytest.WriteEnvoyYAML(t, dir,
		"filename: build/jtiguard.wasm", "filename: "+wasm,
		"port_value: 8080", "port_value: "+upstreamPort,
		"port_value: 8081", "port_value: "+sourcePort,
		`"interval": "5s"`, `"interval": "1s"`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	err := run(ctx, []string{"-config", cfg, "-listen", "127.0.0.1:0", "-exit-after-steps"}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errs.String())
	}
	for _, want := range []string{
		"note: 127.0.0.1:" + sourcePort + " is in use; the revocation source listens on 127.0.0.1:",
		"note: 127.0.0.1:" + upstreamPort + " is in use; the echo upstream listens on 127.0.0.1:",
		"make run SOURCE_PORT=<port>",
		"curl -i -H \"Authorization: Bearer $TOKEN\"",
		"/v1/admin/revocations",
		"1. GET ", "→ 200 ",
		"2. POST ", "{jti} → 200 ",
		"lists the jti until exp ", "the token's own expiry",
		"3. GET ", `→ 401 {"msg":"Token has been revoked"}`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestExplicitPortTaken: a port the user chose is never silently replaced; the error says which
// component, which address, and the make variable to change.
func TestExplicitPortTaken(t *testing.T) {
	taken := "127.0.0.1:" + holdPort(t)
	for _, tc := range []struct{ flag, what, makeVar string }{
		{"-listen", "proxy", "PROXY_PORT"},
		{"-source-listen", "revocation source", "SOURCE_PORT"},
		{"-upstream-listen", "echo upstream", "UPSTREAM_PORT"},
	} {
		dir := t.TempDir()
		cfg := localproxytest.WriteEnvoyYAML(t, dir, "filename: build/jtiguard.wasm", "filename: "+filepath.Join(dir, "none.wasm"))
		args := []string{"-config", cfg, "-listen", "127.0.0.1:0", "-source-listen", "127.0.0.1:0", "-upstream-listen", "127.0.0.1:0", tc.flag, taken}
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, errSetup) {
			t.Fatalf("%s %s taken: err = %v, want errSetup", tc.flag, taken, err)
		}
		for _, want := range []string{tc.what + ": " + taken + " is in use", "make run " + tc.makeVar + "=<port>"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s taken: error %q lacks %q", tc.flag, err, want)
			}
		}
	}
}

// TestMint: -mint prints shell assignments of a token signed with the configuration's secret,
// carrying the jti asked for and an exp ttl from now.
func TestMint(t *testing.T) {
	dir := t.TempDir()
	cfg := localproxytest.WriteEnvoyYAML(t, dir)
	var out bytes.Buffer
	before := time.Now()
	if err := run(context.Background(), []string{"-config", cfg, "-mint", "-jti", "demo-1", "-ttl", "10m"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("line %q is not NAME=value", sc.Text())
		}
		vars[k] = v
	}
	if vars["JTI"] != "demo-1" {
		t.Errorf("JTI = %q, want demo-1", vars["JTI"])
	}
	exp, err := strconv.ParseInt(vars["EXP"], 10, 64)
	if err != nil || exp < before.Add(10*time.Minute).Unix() || exp > time.Now().Add(10*time.Minute).Unix()+1 {
		t.Errorf("EXP = %q, want about now+10m", vars["EXP"])
	}
	parts := strings.Split(vars["TOKEN"], ".")
	if len(parts) != 3 {
		t.Fatalf("TOKEN %q is not a JWS", vars["TOKEN"])
	}
	mac := hmac.New(sha256.New, []byte(demoSecretOfExample))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if got := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); got != parts[2] {
		t.Error("TOKEN is not signed with the configuration's HMAC secret")
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		JTI  string `json:"jti"`
		Exp  int64  `json:"exp"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI != "demo-1" || claims.Exp != exp || claims.Type != "access" {
		t.Errorf("claims %s: want jti demo-1, exp %d, type access", payload, exp)
	}
}

// TestEchoOnly: -echo-only serves the echo upstream alone, on the address asked for.
func TestEchoOnly(t *testing.T) {
	addr := localproxytest.FreeAddr(t)
	dir := t.TempDir()
	cfg := localproxytest.WriteEnvoyYAML(t, dir, "port_value: 8080", "port_value: "+localproxytest.Port(t, addr))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- run(ctx, []string{"-config", cfg, "-echo-only"}, &lockedWriter{w: &out}, io.Discard) }()
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/some/path"); err == nil {
			break
		}
	}
	if err != nil {
		cancel()
		t.Fatalf("echo upstream on %s (from the config's upstream cluster): %v", addr, err)
	}
	var body struct {
		Upstream, Path string
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if body.Upstream != "echo" || body.Path != "/some/path" {
		t.Errorf("echo answered %+v", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

// lockedWriter lets the test read what a running demo wrote.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-wasi", "envoy-1.33", "-workers", "4"}, true},
		{[]string{"-listen", "127.0.0.1:0", "-source-listen", "127.0.0.1:18081", "-upstream-listen", "[::1]:0"}, true},
		{[]string{"-wasi", "envoy-1.20"}, false},
		{[]string{"-workers", "0"}, false},
		{[]string{"-listen", "10000"}, false},
		{[]string{"-mint", "-ttl", "0s"}, false},
		{[]string{"-mint", "-echo-only"}, false},
		{[]string{"extra"}, false},
		{[]string{"-nope"}, false},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{})
		if (err == nil) != tc.ok {
			t.Errorf("parseFlags(%q) = %v; want ok=%v", tc.args, err, tc.ok)
		}
	}
}
