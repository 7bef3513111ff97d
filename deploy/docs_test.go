package deploy_test

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The docs whose shell blocks deploy/TestDocs* (tag long) run, and the README's sections they
// cover. Every ```sh block in them either runs, or is marked just above its fence with
//
//	<!-- doctest: skip: <why it cannot run here> -->
//
// (a real Envoy's admin API, Istio in a cluster, the test suites themselves), or with
//
//	<!-- doctest: kubectl: <what checks it> -->
//
// for the Kubernetes steps: those run with a recording kubectl (deploy/kubectl_test.go), and what
// they create (the Secret, the patched WasmPlugin) is fed to the real source.
var docFiles = []string{"../README.md", "../docs/envoy-istio.md", "../docs/local-proxy.md"}

// block is one fenced shell block.
type block struct {
	file string
	line int    // of the opening fence
	skip string // the reason it does not run, "" when it runs
	// kubectl: the block runs with the recording kubectl only (skip names what checks it).
	kubectl bool
	lines   []string
}

var skipRE = regexp.MustCompile(`^<!-- doctest: (skip|kubectl): (.+\S) -->$`)

// shellBlocks returns the ```sh blocks of a Markdown file in order.
func shellBlocks(t *testing.T, file string) []block {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	prev := ""
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```sh"):
			cur = &block{file: file, line: n}
			if m := skipRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.skip, cur.kubectl = m[2], m[1] == "kubectl"
			}
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
		prev = line
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated code block", file, cur.line)
	}
	return out
}

// TestDocsBlocksAreMarked keeps the doc tests honest: each doc has shell blocks that run, a block
// marked skip gives its reason, a doctest marker sits only above a shell block, and the files a
// skipped block names exist (kubectl apply -f of a manifest that was renamed is caught here).
func TestDocsBlocksAreMarked(t *testing.T) {
	pathRE := regexp.MustCompile(`\b(deploy|docs|envoyconfig|cmd)/[A-Za-z0-9_./-]+\.(yaml|json|md|go)\b`)
	for _, f := range docFiles {
		blocks := shellBlocks(t, f)
		runs := 0
		for _, b := range blocks {
			if b.skip == "" {
				runs++
				continue
			}
			for _, l := range b.lines {
				for _, p := range pathRE.FindAllString(l, -1) {
					if _, err := os.Stat("../" + p); err != nil {
						t.Errorf("%s:%d: a skipped block names %s, which does not exist", f, b.line, p)
					}
				}
			}
		}
		if runs == 0 {
			t.Errorf("%s: no shell block runs", f)
		}
		raw, _ := os.ReadFile(f)
		lines := strings.Split(string(raw), "\n")
		for i, l := range lines {
			if strings.Contains(l, "doctest:") && !skipRE.MatchString(strings.TrimSpace(l)) {
				t.Errorf("%s:%d: malformed doctest marker %q", f, i+1, l)
			}
			if strings.HasPrefix(l, "<!-- doctest:") && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```sh")) {
				t.Errorf("%s:%d: a doctest marker must sit right above a ```sh fence", f, i+1)
			}
		}
	}
}
