package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// linkRE finds Markdown links and images: [text](target) with an optional "title".
var linkRE = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)

// TestDocsLinksResolve keeps the docs' cross-references from drifting: every relative link in
// the README and docs/ names a file that exists, and every #fragment names a heading of the
// file it points into, under GitHub's rule for heading anchors (see anchors). Links inside
// code (fenced blocks and `spans`) are text, not links, and are not read.
func TestDocsLinksResolve(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../README.md"}, files...)
	anchorsOf := map[string]map[string]bool{}
	anchorsIn := func(path string) map[string]bool {
		if a, ok := anchorsOf[path]; ok {
			return a
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		a := anchors(string(raw))
		anchorsOf[path] = a
		return a
	}
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range proseLines(string(raw)) {
			if line == "" {
				continue
			}
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				dest := f
				if file != "" {
					dest = filepath.Join(filepath.Dir(f), file)
					if _, err := os.Stat(dest); err != nil {
						t.Errorf("%s:%d: link to %s: no such file", f, n+1, target)
						continue
					}
				}
				checked++
				if frag == "" || !strings.HasSuffix(dest, ".md") {
					continue
				}
				if !anchorsIn(dest)[frag] {
					t.Errorf("%s:%d: link to %s: %s has no heading with that anchor", f, n+1, target, dest)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links found: is the link pattern still right?", checked)
	}
}

// proseLines returns the file's lines with fenced code blocks blanked and inline code spans
// removed, so that only links in prose are read; line numbers are kept.
func proseLines(text string) []string {
	lines := strings.Split(text, "\n")
	inFence := false
	span := regexp.MustCompile("`[^`]*`")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inFence = !inFence
			lines[i] = ""
			continue
		}
		if inFence {
			lines[i] = ""
			continue
		}
		lines[i] = span.ReplaceAllString(l, "")
	}
	return lines
}

// anchors returns the anchors GitHub gives a Markdown file's headings: the heading's text
// lower-cased, with everything but letters, digits, spaces, '-' and '_' dropped, spaces made
// '-', and a repeated anchor suffixed -1, -2, ... in order. Headings inside fenced code are
// not headings.
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(l, "#") {
			continue
		}
		title := strings.TrimLeft(l, "#")
		if len(title) == len(l) || len(l)-len(title) > 6 || !strings.HasPrefix(title, " ") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(title)) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if k := seen[a]; k > 0 {
			out[a+"-"+strconv.Itoa(k)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestAnchorsFollowGitHub pins anchors to what GitHub renders for headings of these docs.
func TestAnchorsFollowGitHub(t *testing.T) {
	doc := "# jtiguard — reject revoked JWTs at the proxy\n## The harness's memory and the ticks\n" +
		"## RS256 and ES256: where the gap to native comes from\n```\n## not a heading\n```\n" +
		"### Results\n### Results\n## `make build` now\n"
	got := anchors(doc)
	for _, want := range []string{"jtiguard--reject-revoked-jwts-at-the-proxy", "the-harnesss-memory-and-the-ticks",
		"rs256-and-es256-where-the-gap-to-native-comes-from", "results", "results-1", "make-build-now"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] || len(got) != 6 {
		t.Errorf("anchors %v: want exactly the six headings outside code", got)
	}
}
