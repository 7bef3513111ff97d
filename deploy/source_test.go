package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx": the test plays the app creating its table
	corev1 "k8s.io/api/core/v1"

	"github.com/jtiguard/jtiguard/deploy"
	"github.com/jtiguard/jtiguard/revocationsource/testenv"
)

// sourceHelp is what the revocation source's --help says about its settings.
type sourceHelp struct {
	defaults map[string]string // flag name → default
	envs     map[string]string // environment variable → flag name ("" for a secret)
}

var (
	helpFlagRE    = regexp.MustCompile(`^  --([a-z0-9][a-z0-9-]*)=(.*?)  \[([A-Z][A-Z0-9_]*)\]$`)
	helpSecretsRE = regexp.MustCompile(`(?s)Secrets come only from the environment or files:(.*?)\.\s`)
	envNameRE     = regexp.MustCompile(`\b(REVOCATION_SOURCE_[A-Z0-9_]+|REDIS_PASSWORD)\b`)
)

// readSourceHelp runs bin --help, which must exit 0 and list every flag as
// `  --name=default  [ENV]` and the secrets' variables.
func readSourceHelp(t *testing.T, bin string) sourceHelp {
	t.Helper()
	out, err := exec.Command(bin, "--help").Output()
	if err != nil {
		t.Fatalf("revocation-source --help: %v\n%s", err, out)
	}
	h := sourceHelp{defaults: map[string]string{}, envs: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := helpFlagRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		def := m[2]
		if strings.HasPrefix(def, `"`) {
			if def, err = strconv.Unquote(def); err != nil {
				t.Fatalf("--help: flag --%s default %s: %v", m[1], m[2], err)
			}
		}
		h.defaults[m[1]] = def
		h.envs[m[3]] = m[1]
	}
	sec := helpSecretsRE.FindSubmatch(out)
	if len(h.defaults) < 10 || sec == nil {
		t.Fatalf("revocation-source --help lists %d flags and secrets %q: its format changed, update readSourceHelp\n%s", len(h.defaults), sec, out)
	}
	for _, m := range envNameRE.FindAllString(string(sec[1]), -1) {
		h.envs[m] = ""
	}
	return h
}

// buildSource builds cmd/revocation-source into a temporary directory.
func buildSource(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "revocation-source")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/revocation-source")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/revocation-source: %v\n%s", err, out)
	}
	return bin
}

// TestDeploymentMatchesTheSourceFlags: every container arg is a flag of the source, every
// variable the Deployment sets is one the source reads (an ignored variable is a setting silently
// lost), and so is every variable the manifest's comments and the Kubernetes docs name. The
// source's default address is the one envoy.yaml and the docs assume.
func TestDeploymentMatchesTheSourceFlags(t *testing.T) {
	o := loadSourceObjects(t)
	c := container(t, &o.dep)
	h := readSourceHelp(t, buildSource(t))
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if _, ok := h.defaults[name]; !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("container arg %q: the source has no such flag", a)
		}
	}
	for _, e := range c.Env {
		if _, ok := h.envs[e.Name]; !ok {
			t.Errorf("env %s: the source reads no such variable, so it is ignored", e.Name)
		}
	}
	for _, f := range []string{k8sManifest, "../docs/envoy-istio.md", "../README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range envNameRE.FindAllString(string(b), -1) {
			if _, ok := h.envs[name]; !ok {
				t.Errorf("%s names %s, which the source does not read", f, name)
			}
		}
	}
	want := net.JoinHostPort("127.0.0.1", strconv.Itoa(deploy.SourcePort))
	if got := h.defaults["listen"]; got != want {
		t.Errorf("the source's default --listen is %q; README, envoy.yaml and docs say %q", got, want)
	}
	if h.defaults["sql-create-tables"] != "false" {
		t.Errorf("--sql-create-tables defaults to %q: the source must not change the app's database unless asked", h.defaults["sql-create-tables"])
	}
	for _, e := range c.Env {
		if e.Name == "REVOCATION_SOURCE_SQL_CREATE_TABLES" || e.Name == "REVOCATION_SOURCE_SQL_PRUNE_INTERVAL" {
			t.Errorf("env %s: the Deployment reads the app's table; it must not create or prune it", e.Name)
		}
	}
}

// lifetime parses a token lifetime as the source does: a Go duration, or days ("30d").
func lifetime(t *testing.T, name, v string) time.Duration {
	t.Helper()
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			t.Fatalf("env %s=%q: %v", name, v, err)
		}
		return time.Duration(n) * 24 * time.Hour
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("env %s=%q: %v", name, v, err)
	}
	return d
}

// TestDeploymentRunsTheSource runs the real source as a pod would: the Deployment's args (only
// --listen moved to a free loopback port) and environment, with the Secret exactly as the docs'
// kubectl steps create it except for its postgres-dsn, which becomes a schema of its own in the
// test PostgreSQL (scripts/test-services.sh). It then plays the cluster: the probes while the
// app has not created its table yet and after, the WasmPlugin's poll with the headers the docs
// give it, the app's logout, and the admin API with the Secret's token.
func TestDeploymentRunsTheSource(t *testing.T) {
	steps := kubernetesDocSteps(t)
	_, plugin := pluginConfig(t, steps.wasmPlugin)
	o := loadSourceObjects(t)
	c := container(t, &o.dep)

	docDSN, err := url.Parse(steps.secret[deploy.PostgresDSNKey])
	if err != nil || (docDSN.Scheme != "postgres" && docDSN.Scheme != "postgresql") || docDSN.Host == "" {
		t.Fatalf("the docs' %s %q is not a postgres:// URL (%v)", deploy.PostgresDSNKey, steps.secret[deploy.PostgresDSNKey], err)
	}
	dsn, db := appDatabase(t)
	secret := map[string]string{}
	for k, v := range steps.secret {
		secret[k] = v
	}
	secret[deploy.PostgresDSNKey] = dsn

	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var access, refresh time.Duration
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref == nil {
				t.Fatalf("env %s: only secretKeyRef is played here", e.Name)
			}
			var ok bool
			if v, ok = secret[ref.Key]; !ok {
				if ref.Optional != nil && *ref.Optional {
					continue // Kubernetes leaves the variable unset
				}
				t.Fatalf("env %s: Secret key %s missing: the pod would not start", e.Name, ref.Key)
			}
		}
		switch e.Name {
		case "REVOCATION_SOURCE_JWT_ACCESS_TOKEN_EXPIRES":
			access = lifetime(t, e.Name, v)
		case "REVOCATION_SOURCE_JWT_REFRESH_TOKEN_EXPIRES":
			refresh = lifetime(t, e.Name, v)
		}
		env = append(env, e.Name+"="+v)
	}
	if access <= 0 || refresh <= 0 {
		t.Fatalf("the Deployment sets no token lifetimes (access %s, refresh %s): rows of flask's tables would never leave the feed", access, refresh)
	}
	args := []string{}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--listen=") {
			a = "--listen=127.0.0.1:0"
		}
		args = append(args, a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildSource(t), args...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	logs := &syncBuffer{}
	base := "http://" + boundAddr(t, stderr, logs)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string, header map[string]string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		for k, v := range header {
			if k == "Host" {
				req.Host = v // the callout's :authority
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	probe := func(p *corev1.Probe) string { return p.HTTPGet.Path }

	// Before the app created its table: alive (no restarts), not ready (no traffic).
	if st, _ := get(probe(c.LivenessProbe), nil); st != http.StatusOK {
		t.Errorf("livenessProbe %s → %d while the app's table is missing, want 200 (else the kubelet restarts a pod that only waits)", probe(c.LivenessProbe), st)
	}
	if st, _ := get(probe(c.ReadinessProbe), nil); st != http.StatusServiceUnavailable {
		t.Errorf("readinessProbe %s → %d while the app's table is missing, want 503", probe(c.ReadinessProbe), st)
	}

	// The app starts (Flask-SQLAlchemy's db.create_all() of flask-jwt-extended's
	// blocklist_database.py), and a user logs out.
	created := time.Now().UTC().Truncate(time.Second)
	appJTI := "3f5c0d1e-8a4b-4c2d-9e6f-7a8b9c0d1e2f"
	for _, q := range []string{
		`CREATE TABLE token_blocklist (id SERIAL PRIMARY KEY, jti VARCHAR(36) NOT NULL, created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL)`,
		`INSERT INTO token_blocklist (jti, created_at) VALUES ('` + appJTI + `', '` + created.Format("2006-01-02 15:04:05") + `')`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ready := false
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st, _ := get(probe(c.ReadinessProbe), nil); st == http.StatusOK {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatalf("readinessProbe %s never answered 200 after the app created its table\n%s", probe(c.ReadinessProbe), logs)
	}
	if st, _ := get(o.dep.Spec.Template.Annotations["prometheus.io/path"], nil); st != http.StatusOK {
		t.Errorf("GET %s (the Prometheus annotation's path) → %d, want 200", o.dep.Spec.Template.Annotations["prometheus.io/path"], st)
	}

	// The WasmPlugin's poll: its path, its authority, its headers (the feed token).
	pollHeaders := map[string]string{"Host": plugin.Sync.Authority}
	for k, v := range plugin.Sync.Headers {
		pollHeaders[k] = v
	}
	if st, _ := get(plugin.Sync.Path, map[string]string{"Host": plugin.Sync.Authority}); st != http.StatusUnauthorized {
		t.Errorf("GET %s without the feed token → %d, want 401 (the Secret has a feed-token)", plugin.Sync.Path, st)
	}
	feedExp := func(jti string) (int64, bool) {
		st, body := get(plugin.Sync.Path, pollHeaders)
		if st != http.StatusOK {
			t.Fatalf("the WasmPlugin's poll GET %s → %d %s, want 200", plugin.Sync.Path, st, body)
		}
		var feed struct {
			Entries []struct {
				JTI string `json:"jti"`
				Exp int64  `json:"exp"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(body, &feed); err != nil {
			t.Fatalf("feed: %v: %s", err, body)
		}
		for _, e := range feed.Entries {
			if e.JTI == jti {
				return e.Exp, true
			}
		}
		return 0, false
	}
	exp, ok := feedExp(appJTI)
	// No type column in this version of flask's table: the longer of the two lifetimes.
	if want := created.Add(max(access, refresh)).Unix(); !ok || exp != want {
		t.Errorf("the app's revoked jti in the feed: listed %v, exp %d; want exp %d (created_at + %s, the Deployment's lifetimes)", ok, exp, want, max(access, refresh))
	}

	// The admin API with the Secret's token.
	body := fmt.Sprintf(`{"jti":"deploy-admin-test","exp":%d}`, time.Now().Add(time.Hour).Unix())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/admin/revocations", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret[deploy.AdminTokenKey])
	req.Header.Set("content-type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin revoke with the Secret's %s → %d %s, want 200\n%s", deploy.AdminTokenKey, resp.StatusCode, rb, logs)
	}
	listed := false
	for deadline := time.Now().Add(20 * time.Second); !listed && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_, listed = feedExp("deploy-admin-test")
	}
	if !listed {
		t.Errorf("the admin revocation never reached the feed\n%s", logs)
	}
}

// appDatabase gives the test an empty PostgreSQL schema of its own, as the app's database: the
// URL the pod gets (search_path at the schema, sessions in UTC) and a connection for the app.
func appDatabase(t *testing.T) (string, *sql.DB) {
	t.Helper()
	base := testenv.PGDSN(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("deploy_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := admin.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(`DROP SCHEMA "` + schema + `" CASCADE`)
		_ = admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+schema+" -c TimeZone=UTC")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + literally
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return u.String(), db
}

// syncBuffer keeps the source's log for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return "--- the source's log:\n" + b.buf.String()
}

// boundAddr reads the source's log (JSON lines) until it says where it listens; the rest of the
// log goes to keep.
func boundAddr(t *testing.T, r io.Reader, keep io.Writer) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			_, _ = fmt.Fprintln(keep, line)
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Addr != "" && strings.Contains(rec.Msg, "listening") {
				select {
				case found <- rec.Addr:
				default:
				}
			}
		}
	}()
	select {
	case a := <-found:
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("the source did not log its listen address within 30s\n%s", keep)
	}
	return ""
}
