package jwkssync

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDocCommands runs every command of docs/jwks.md's shell blocks from the repository root,
// as a reader would, and checks that the benchmarks its table quotes are the ones it runs.
func TestDocCommands(t *testing.T) {
	doc, err := os.ReadFile("../docs/jwks.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("no shell block in docs/jwks.md")
	}
	var out strings.Builder
	for _, b := range blocks {
		for _, line := range strings.Split(strings.TrimSpace(string(b[1])), "\n") {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			cmd := exec.CommandContext(ctx, "sh", "-c", line)
			cmd.Dir = ".."
			res, err := cmd.CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("%s: %v\n%s", line, err, res)
			}
			out.Write(res)
		}
	}
	for _, name := range regexp.MustCompile("`(Benchmark[A-Za-z]+)`").FindAllSubmatch(doc, -1) {
		if !strings.Contains(out.String(), string(name[1])+"-") {
			t.Errorf("docs/jwks.md quotes %s, which its commands did not run:\n%s", name[1], out.String())
		}
	}
}
