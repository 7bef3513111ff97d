//go:build long

package deploy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/jtiguard/jtiguard/deploy"
)

// The docs' commands, run as a reader runs them: each document's runnable ```sh blocks, in order, as
// one bash script (servers started with & keep running for the blocks after them), in a copy of the
// repository. What differs from a reader's machine, and why:
//
//   - ports: envoy.yaml's 10000, 8080, 8081 and 9901 become free ports, in the commands and in the
//     copy's envoy.yaml (whose listener also moves from 0.0.0.0 to 127.0.0.1), so the test never
//     depends on a fixed port; the revocation source started without --listen gets its free port
//     through REVOCATION_SOURCE_LISTEN (its default, 127.0.0.1:8081, is checked by
//     TestDeploymentMatchesTheSourceFlags);
//   - `envoy` is a shim for the local stand-in (cmd/jtiguard-proxy reads the same bootstrap;
//     --mode validate maps to -validate): no Envoy binary can be installed here;
//   - registry.example.com is an in-memory registry (go-containerregistry's) on a free port;
//   - `make run` gets RUN_FLAGS=-exit-after-steps (a reader presses Ctrl-C), and `make test` is not
//     run: it is the suite this test belongs to;
//   - the README's native benchmarks run each benchmark once (-benchtime 1x): the command is
//     checked, not the numbers, and at full length it takes three minutes of CI.
//
// A command whose comment says `# → text` must print text; every command must succeed (set -e).

// commandRewrites replace a whole command line (comment removed).
var commandRewrites = map[string]string{
	"make run":  "make run RUN_FLAGS=-exit-after-steps",
	"make test": ": make test is the suite this test runs in",
	"go test -run '^$' -bench . -benchmem ./blocklistsync ./filter": "go test -run '^$' -bench . -benchmem -benchtime 1x ./blocklistsync ./filter",
}

var docPorts = []int{deploy.ListenerPort, deploy.UpstreamPort, deploy.SourcePort, deploy.AdminPort}

func TestDocsReadme(t *testing.T)     { runDoc(t, "../README.md", nil) }
func TestDocsLocalProxy(t *testing.T) { runDoc(t, "../docs/local-proxy.md", nil) }

// TestDocsEnvoyIstio also pulls what the doc pushed, as Istio's fetcher does, and compares the
// module with the copy's build/jtiguard.wasm byte for byte.
func TestDocsEnvoyIstio(t *testing.T) {
	runDoc(t, "../docs/envoy-istio.md", func(t *testing.T, repo, registryHost string) {
		want, err := os.ReadFile(filepath.Join(repo, "build/jtiguard.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(registryHost+"/jtiguard/jtiguard:0.1.0", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("the pushed plugin image: %v", err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("pushed plugin image: %d layers (%v), want 1", len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got := untarFile(t, rc, "plugin.wasm")
		if !bytes.Equal(got, want) {
			t.Errorf("pushed plugin.wasm: %d bytes, want build/jtiguard.wasm's %d, byte for byte", len(got), len(want))
		}
		for _, repo := range []string{"jtiguard/revocation-source:0.1.0"} {
			r, _ := name.ParseReference(registryHost+"/"+repo, name.Insecure)
			if _, err := remote.Head(r); err != nil {
				t.Errorf("%s was not pushed: %v", repo, err)
			}
		}
	})
}

// runDoc runs the document's runnable blocks and then check, if any.
func runDoc(t *testing.T, doc string, check func(t *testing.T, repo, registryHost string)) {
	repo := copyRepo(t)
	ports := map[int]int{}
	for _, p := range docPorts {
		ports[p] = freePort(t)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	registryHost := strings.TrimPrefix(reg.URL, "http://")

	// The copy's envoy.yaml on the test's ports and on loopback.
	envoyPath := filepath.Join(repo, "envoy.yaml")
	b, err := os.ReadFile(envoyPath)
	if err != nil {
		t.Fatal(err)
	}
	boot := strings.ReplaceAll(string(b), "address: 0.0.0.0", "address: 127.0.0.1")
	for from, to := range ports {
		old := "port_value: " + strconv.Itoa(from)
		if !strings.Contains(boot, old) {
			t.Fatalf("envoy.yaml has no %q: update the doc test", old)
		}
		boot = strings.ReplaceAll(boot, old, "port_value: "+strconv.Itoa(to))
	}
	if err := os.WriteFile(envoyPath, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "jtiguard-proxy"), "./cmd/jtiguard-proxy")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/jtiguard-proxy: %v\n%s", err, out)
	}
	shim := `#!/bin/sh
# doc tests: the local stand-in for envoy (no Envoy binary can be installed here).
cfg=envoy.yaml; validate=
while [ $# -gt 0 ]; do
  case "$1" in
    -c|--config-path) cfg=$2; shift ;;
    --mode) [ "$2" = validate ] && validate=-validate; shift ;;
    -l|--log-level|--concurrency|--base-id) shift ;;
  esac
  shift
done
exec jtiguard-proxy -config "$cfg" $validate
`
	if err := os.WriteFile(filepath.Join(bin, "envoy"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}

	script, n := docScript(t, doc, ports, registryHost)
	if n == 0 {
		t.Fatalf("%s: no runnable block", doc)
	}
	logPath := filepath.Join(t.TempDir(), "background.log")
	scriptPath := filepath.Join(t.TempDir(), "doc.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", scriptPath)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "GOBIN="+bin,
		"DOCTEST_LOG="+logPath, "REVOCATION_SOURCE_LOG_FORMAT=text",
		"REVOCATION_SOURCE_LISTEN=127.0.0.1:"+strconv.Itoa(ports[deploy.SourcePort]))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	// The servers the doc started in the background: stop them all (same process group).
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		bg, _ := os.ReadFile(logPath)
		t.Fatalf("%s (%d blocks, %s): %v\n--- script output:\n%s\n--- background servers:\n%s\n--- script:\n%s",
			doc, n, time.Since(start).Round(time.Second), err, out.String(), tail(bg, 6000), script)
	}
	t.Logf("%s: %d blocks ran in %s", doc, n, time.Since(start).Round(time.Second))
	if check != nil {
		check(t, repo, registryHost)
	}
}

var (
	expectRE   = regexp.MustCompile(`\s#\s*→\s*(.+?)\s*$`)
	commentRE  = regexp.MustCompile(`\s{2,}#.*$`) // the docs put two spaces or more before a comment
	portNumRE  = regexp.MustCompile(`\b(10000|8080|8081|9901)\b`)
	registryRE = regexp.MustCompile(`registry\.example\.com`)
)

// docScript turns a document's runnable blocks into one bash script.
func docScript(t *testing.T, doc string, ports map[int]int, registryHost string) (string, int) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("set -euo pipefail\n")
	n := 0
	for _, b := range shellBlocks(t, doc) {
		if b.skip != "" {
			continue
		}
		n++
		for _, c := range logicalCommands(b) {
			text := portNumRE.ReplaceAllStringFunc(c.text, func(p string) string {
				v, _ := strconv.Atoi(p)
				return strconv.Itoa(ports[v])
			})
			text = registryRE.ReplaceAllString(text, registryHost)
			want := ""
			if m := expectRE.FindStringSubmatch(text); m != nil {
				want = m[1]
			}
			bare := strings.TrimSpace(commentRE.ReplaceAllString(text, ""))
			if bare == "" {
				continue
			}
			if r, ok := commandRewrites[bare]; ok {
				bare = r
			}
			where := fmt.Sprintf("%s:%d", filepath.Base(doc), c.line)
			fmt.Fprintf(&sb, "echo %s >&2\n", shellQuote("+ "+where+": "+bare))
			switch {
			case strings.HasSuffix(bare, "&"):
				fmt.Fprintf(&sb, "( %s ) >>\"$DOCTEST_LOG\" 2>&1 &\n", strings.TrimSuffix(bare, "&"))
			case want != "":
				fmt.Fprintf(&sb, "__out=$( %s ) || { echo %s >&2; exit 1; }\nprintf '%%s\\n' \"$__out\"\n", bare, shellQuote("doctest: "+where+" failed"))
				fmt.Fprintf(&sb, "case \"$__out\" in *%s*) ;; *) echo %s >&2; exit 1;; esac\n",
					shellQuote(want), shellQuote("doctest: "+where+": the output lacks "+want))
			default:
				fmt.Fprintf(&sb, "%s\n", bare)
			}
		}
	}
	return sb.String(), n
}

type command struct {
	line int
	text string
}

// logicalCommands joins backslash continuations.
func logicalCommands(b block) []command {
	var out []command
	var cur strings.Builder
	start := 0
	for i, l := range b.lines {
		if cur.Len() == 0 {
			start = b.line + 1 + i
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		out = append(out, command{start, cur.String()})
		cur.Reset()
	}
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// copyRepo copies the repository's files (tracked and untracked, not ignored) into a temporary
// directory: the docs' commands write build/, revocations.db and the like there.
func copyRepo(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "-C", "..", "ls-files", "-co", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join("..", f)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or not a file
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// untarFile returns one file of a tar stream.
func untarFile(t *testing.T, r io.Reader, name string) []byte {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in the layer: %v", name, err)
		}
		if h.Name == name {
			b, _ := io.ReadAll(tr)
			return b
		}
	}
}
