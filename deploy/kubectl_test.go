package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/jtiguard/jtiguard/deploy"
	"github.com/jtiguard/jtiguard/filter"
)

// The Kubernetes steps of the docs (the ```sh blocks marked <!-- doctest: kubectl: … -->) cannot
// reach a cluster here, but they can still run: with a recording kubectl first on PATH, which is
// this test binary started under that name. It does what a kubectl with a server would do to the
// objects (create a Secret from literals, patch a file with --local), writes down every command,
// and refuses what it does not know, so a doc that drifts into another command fails. What the
// steps create is then checked against the manifests, and fed to the real source
// (TestDeploymentRunsTheSource): a Secret whose keys the Deployment does not read, or a WasmPlugin
// whose feed token differs from the Secret's, fails here instead of in a cluster.

const fakeKubectlEnv = "JTIGUARD_FAKE_KUBECTL_LOG"

func TestMain(m *testing.M) {
	if logPath := os.Getenv(fakeKubectlEnv); logPath != "" {
		os.Exit(fakeKubectl(os.Args[1:], logPath, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// kubectlCall is one recorded kubectl command.
type kubectlCall struct {
	Args      []string `json:"args"`
	Verb      string   `json:"verb"` // "apply", "create secret", "patch", "rollout status"
	Namespace string   `json:"namespace,omitempty"`
	// Files are apply's and patch's -f files; Stdin is what `apply -f -` read.
	Files []string `json:"files,omitempty"`
	Stdin string   `json:"stdin,omitempty"`
	// Name and Data: the Secret that `create secret generic` made.
	Name string            `json:"name,omitempty"`
	Data map[string]string `json:"data,omitempty"`
}

var (
	errFakeKubectl = errors.New("recording kubectl")
	secretKeyRE    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// fakeKubectl is the recording kubectl's main; it returns the exit status.
func fakeKubectl(args []string, logPath string, stdin io.Reader, stdout, stderr io.Writer) int {
	call, out, err := fakeKubectlRun(args, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "kubectl %s: %v\n", strings.Join(args, " "), err)
		return 1
	}
	b, _ := json.Marshal(call)
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

func fakeKubectlRun(args []string, stdin io.Reader) (kubectlCall, []byte, error) {
	call := kubectlCall{Args: args}
	valued := map[string]string{"-n": "namespace", "--namespace": "namespace", "-f": "filename", "--filename": "filename",
		"-p": "patch", "--patch": "patch", "--type": "type", "-o": "output", "--output": "output",
		"--timeout": "timeout", "--from-literal": "from-literal"}
	flags := map[string][]string{}
	local := false
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch {
		case a == "--local" || a == "--local=true":
			local = true
		case strings.HasPrefix(a, "-") && valued[name] != "":
			if !hasVal {
				if i+1 >= len(args) {
					return call, nil, fmt.Errorf("%w: %s needs a value", errFakeKubectl, a)
				}
				i++
				val = args[i]
			}
			flags[valued[name]] = append(flags[valued[name]], val)
		case strings.HasPrefix(a, "-"):
			return call, nil, fmt.Errorf("%w: flag %s is not one the docs use; teach deploy/kubectl_test.go what it does", errFakeKubectl, a)
		default:
			words = append(words, a)
		}
	}
	if ns := flags["namespace"]; len(ns) > 0 {
		call.Namespace = ns[len(ns)-1]
	}
	call.Files = flags["filename"]
	switch {
	case slices.Equal(words, []string{"apply"}):
		call.Verb = "apply"
		if len(call.Files) == 0 {
			return call, nil, fmt.Errorf("%w: apply needs -f", errFakeKubectl)
		}
		for _, f := range call.Files {
			if f == "-" {
				b, err := io.ReadAll(stdin)
				if err != nil || len(bytes.TrimSpace(b)) == 0 {
					return call, nil, fmt.Errorf("%w: apply -f -: nothing on stdin (%v)", errFakeKubectl, err)
				}
				call.Stdin = string(b)
			} else if _, err := os.Stat(f); err != nil {
				return call, nil, fmt.Errorf("%w: apply: %v", errFakeKubectl, err)
			}
		}
		return call, []byte("applied\n"), nil
	case len(words) == 4 && words[0] == "create" && words[1] == "secret" && words[2] == "generic":
		call.Verb, call.Name, call.Data = "create secret", words[3], map[string]string{}
		for _, lit := range flags["from-literal"] {
			k, v, ok := strings.Cut(lit, "=")
			if !ok || !secretKeyRE.MatchString(k) {
				return call, nil, fmt.Errorf("%w: --from-literal=%q: want key=value with a key of [-._a-zA-Z0-9]", errFakeKubectl, lit)
			}
			if _, dup := call.Data[k]; dup {
				return call, nil, fmt.Errorf("%w: key %q given twice", errFakeKubectl, k)
			}
			call.Data[k] = v
		}
		return call, []byte("secret/" + call.Name + " created\n"), nil
	case slices.Equal(words, []string{"patch"}):
		call.Verb = "patch"
		// Only --local: a patch against the live object would leave a window in which the
		// applied object lacks it. Custom resources take no strategic merge patch.
		if !local || len(call.Files) != 1 || !slices.Equal(flags["type"], []string{"merge"}) ||
			!slices.Equal(flags["output"], []string{"yaml"}) || len(flags["patch"]) != 1 {
			return call, nil, fmt.Errorf("%w: want patch --local -f FILE --type=merge -o yaml -p PATCH", errFakeKubectl)
		}
		b, err := os.ReadFile(call.Files[0])
		if err != nil {
			return call, nil, fmt.Errorf("%w: %v", errFakeKubectl, err)
		}
		var obj, patch any
		if err := yaml.Unmarshal(b, &obj); err != nil {
			return call, nil, fmt.Errorf("%w: %s: %v", errFakeKubectl, call.Files[0], err)
		}
		if err := yaml.Unmarshal([]byte(flags["patch"][0]), &patch); err != nil { // kubectl takes JSON or YAML
			return call, nil, fmt.Errorf("%w: -p: %v", errFakeKubectl, err)
		}
		out, err := yaml.Marshal(mergePatch(obj, patch))
		return call, out, err
	case len(words) == 3 && words[0] == "rollout" && words[1] == "status":
		call.Verb = "rollout status"
		call.Name = words[2]
		return call, []byte(words[2] + " successfully rolled out\n"), nil
	}
	return call, nil, fmt.Errorf("%w: command %q is not one the docs use; teach deploy/kubectl_test.go what it does", errFakeKubectl, words)
}

// mergePatch applies a JSON merge patch (RFC 7386), kubectl's --type=merge.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

// kubernetesSteps runs the docs' kubectl blocks in order, as one bash script with the recording
// kubectl first on PATH, from the repository root, and returns what kubectl was asked to do.
func kubernetesSteps(t *testing.T) []kubectlCall {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	n := 0
	for _, f := range docFiles {
		for _, b := range shellBlocks(t, f) {
			if b.kubectl {
				n++
				fmt.Fprintf(&script, "# %s:%d\n%s\n", f, b.line, strings.Join(b.lines, "\n"))
			}
		}
	}
	if n == 0 {
		t.Fatalf("no block of %v is marked <!-- doctest: kubectl: … -->: the Kubernetes steps are not checked", docFiles)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte("#!/bin/sh\nexec '"+self+"' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "kubectl.log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), fakeKubectlEnv+"="+logPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the docs' kubectl blocks: %v\n%s\n--- script:\n%s", err, out, script.String())
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatalf("the docs' kubectl blocks ran no kubectl: %v", err)
	}
	defer f.Close()
	var calls []kubectlCall
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c kubectlCall
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, c)
	}
	return calls
}

// docSteps is what the docs' Kubernetes steps leave in a cluster.
type docSteps struct {
	secret     map[string]string // the source's Secret
	wasmPlugin []byte            // the WasmPlugin as applied, YAML
}

// kubernetesDocSteps runs the steps and checks their order and targets.
func kubernetesDocSteps(t *testing.T) docSteps {
	t.Helper()
	var s docSteps
	appliedManifest := false
	for _, c := range kubernetesSteps(t) {
		switch c.Verb {
		case "apply":
			if slices.Contains(c.Files, filepath.Join("deploy", k8sManifest)) {
				appliedManifest = true
			}
			if c.Stdin != "" {
				var head struct{ Kind string }
				if err := yaml.Unmarshal([]byte(c.Stdin), &head); err == nil && head.Kind == "WasmPlugin" {
					s.wasmPlugin = []byte(c.Stdin)
				}
			}
		case "create secret":
			if c.Name != deploy.SourceSecret || c.Namespace != deploy.Namespace {
				t.Errorf("the docs create secret %s/%s; the Deployment reads %s/%s", c.Namespace, c.Name, deploy.Namespace, deploy.SourceSecret)
				continue
			}
			if !appliedManifest {
				t.Errorf("the docs create the Secret before applying deploy/%s, which creates namespace %s", k8sManifest, deploy.Namespace)
			}
			s.secret = c.Data
		}
	}
	if !appliedManifest || s.secret == nil || s.wasmPlugin == nil {
		t.Fatalf("the docs' Kubernetes steps must apply deploy/%s, create Secret %s/%s and apply a WasmPlugin (have: manifest %v, Secret %v, WasmPlugin %v)",
			k8sManifest, deploy.Namespace, deploy.SourceSecret, appliedManifest, s.secret != nil, s.wasmPlugin != nil)
	}
	return s
}

// pluginConfig returns the applied WasmPlugin's pluginConfig as JSON and as the filter parses it.
func pluginConfig(t *testing.T, wasmPlugin []byte) ([]byte, *filter.Config) {
	t.Helper()
	var wp struct {
		Spec struct {
			PluginConfig json.RawMessage `json:"pluginConfig"`
		}
	}
	if err := yaml.Unmarshal(wasmPlugin, &wp); err != nil {
		t.Fatalf("the applied WasmPlugin: %v", err)
	}
	cfg, err := filter.ParseConfig(wp.Spec.PluginConfig, func(string) string { return "" })
	if err != nil {
		t.Fatalf("the applied WasmPlugin's pluginConfig does not pass the filter's parser: %v", err)
	}
	return wp.Spec.PluginConfig, cfg
}

// TestKubernetesDocSteps: the Secret the docs create is the one the Deployment reads, with every
// key it requires and no key it ignores (a misspelt key leaves a token unset), the manifest's own
// comment creates the same keys, and the WasmPlugin the docs apply sends the Secret's feed token.
func TestKubernetesDocSteps(t *testing.T) {
	s := kubernetesDocSteps(t)
	o := loadSourceObjects(t)
	c := container(t, &o.dep)
	read := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref.Name != deploy.SourceSecret {
			t.Errorf("env %s reads Secret %q; the docs create only %q", e.Name, ref.Name, deploy.SourceSecret)
		}
		read[ref.Key] = true
		if _, ok := s.secret[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
			t.Errorf("env %s needs key %q of Secret %s, which the docs do not create: the pod would never start", e.Name, ref.Key, ref.Name)
		}
	}
	for k, v := range s.secret {
		if !read[k] {
			t.Errorf("the docs put key %q in Secret %s, but the Deployment reads no such key (it reads %v)", k, deploy.SourceSecret, read)
		}
		if strings.TrimSpace(v) == "" {
			t.Errorf("the docs leave key %q of Secret %s empty", k, deploy.SourceSecret)
		}
	}
	for _, k := range []string{deploy.AdminTokenKey, deploy.FeedTokenKey} {
		if len(s.secret[k]) < 32 {
			t.Errorf("Secret key %s = %q: want a random token of at least 32 characters", k, s.secret[k])
		}
	}
	if s.secret[deploy.AdminTokenKey] == s.secret[deploy.FeedTokenKey] {
		t.Errorf("the admin token and the feed token are the same: the feed token is in the WasmPlugin for anyone who can read it")
	}

	raw, err := os.ReadFile(k8sManifest)
	if err != nil {
		t.Fatal(err)
	}
	var commentKeys []string
	for _, m := range regexp.MustCompile(`(?m)^#.*--from-literal=([-._a-zA-Z0-9]+)=`).FindAllStringSubmatch(string(raw), -1) {
		commentKeys = append(commentKeys, m[1])
	}
	var docKeys []string
	for k := range s.secret {
		docKeys = append(docKeys, k)
	}
	slices.Sort(commentKeys)
	slices.Sort(docKeys)
	if !slices.Equal(commentKeys, docKeys) {
		t.Errorf("%s's comment creates the Secret with keys %v, the docs with %v", k8sManifest, commentKeys, docKeys)
	}

	_, cfg := pluginConfig(t, s.wasmPlugin)
	if got, want := cfg.Sync.Headers["authorization"], "Bearer "+s.secret[deploy.FeedTokenKey]; got != want {
		t.Errorf("the applied WasmPlugin sends authorization %q; the Secret's feed token needs %q", got, want)
	}
	if cfg.Sync.Cluster != deploy.IstioSourceCluster() {
		t.Errorf("the applied WasmPlugin calls %q, want %q", cfg.Sync.Cluster, deploy.IstioSourceCluster())
	}
}

// TestFakeKubectlRefuses: the recording kubectl is only as good as its refusals.
func TestFakeKubectlRefuses(t *testing.T) {
	for _, args := range [][]string{
		{"delete", "ns", "jtiguard"},
		{"apply"},
		{"apply", "-f", "no-such-file.yaml"},
		{"-n", "x", "create", "secret", "generic", "s", "--from-literal=a b=c"},
		{"-n", "x", "create", "secret", "generic", "s", "--from-literal=a=1", "--from-literal=a=2"},
		{"patch", "wasmplugin", "jtiguard", "--type=merge", "-p", "{}"},
		{"patch", "--local", "-f", "istio/wasmplugin.yaml", "-o", "yaml", "-p", "{}"}, // strategic: not for CRs
		{"apply", "--server-side", "-f", "-"},
	} {
		if _, _, err := fakeKubectlRun(args, strings.NewReader("kind: X\n")); err == nil {
			t.Errorf("kubectl %q: accepted", args)
		}
	}
	got := mergePatch(map[string]any{"a": map[string]any{"b": 1.0, "c": 2.0}, "d": 3.0},
		map[string]any{"a": map[string]any{"b": nil, "e": 4.0}, "f": 5.0})
	want := map[string]any{"a": map[string]any{"c": 2.0, "e": 4.0}, "d": 3.0, "f": 5.0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mergePatch = %v, want %v", got, want)
	}
}
