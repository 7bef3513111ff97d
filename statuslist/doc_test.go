package statuslist

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

const docPath = "../docs/status-list.md"

// TestDocExample: the configuration example of docs/status-list.md is accepted, and its key
// (the draft's example key, as the page says) validates the draft's example Status List Token.
func TestDocExample(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) != 1 {
		t.Fatalf("%d JSON examples; want 1", len(blocks))
	}
	var plugin struct {
		StatusList json.RawMessage `json:"status_list"`
	}
	if err := json.Unmarshal([]byte(blocks[0][1]), &plugin); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(plugin.StatusList)
	if err != nil {
		t.Fatalf("the documented configuration: %v", err)
	}
	v := loadVectors(t)
	now := time.Unix(1_800_000_000, 0)
	tok, err := ParseToken([]byte(v.StatusListJWT.Token), TokenOptions{URI: cfg.Lists[0].URI, Keys: cfg.Lists[0].KeySet(),
		MaxListBytes: cfg.MaxListBytes, Now: func() time.Time { return now }})
	if err != nil || tok.Bits != 1 {
		t.Fatalf("the draft's example token with the documented key: %v", err)
	}
}

// TestDocNumbers: the defaults and limits docs/status-list.md states are the code's.
func TestDocNumbers(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(raw)), " ") // line breaks do not matter
	d := DefaultConfig()
	dur := func(x Duration) string {
		s := x.D().String()
		for _, suf := range []string{"m0s", "h0m"} {
			s = strings.Replace(s, suf, suf[:1], 1)
		}
		return `"` + s + `"`
	}
	for _, want := range []string{
		fmt.Sprintf("| `suspended` | `%q` |", d.Suspended),
		fmt.Sprintf("| `other_status` | `%q` |", d.OtherStatus),
		fmt.Sprintf("| `unknown_list` | `%q` |", d.UnknownList),
		fmt.Sprintf("| `min_ttl`, `max_ttl` | `%s`, `%s` |", dur(d.MinTTL), dur(d.MaxTTL)),
		fmt.Sprintf("| `max_age` | `%s` |", dur(d.MaxAge)),
		fmt.Sprintf("| `timeout` | `%s` |", dur(d.Timeout)),
		fmt.Sprintf("| `retry_interval`, `max_backoff` | `%s`, `%s` |", dur(d.RetryInterval), dur(d.MaxBackoff)),
		fmt.Sprintf("| `max_list_bytes` | `%d` |", d.MaxListBytes),
		fmt.Sprintf("| `max_body_bytes` | `%d` |", d.MaxBodyBytes),
		fmt.Sprintf("| `max_lists` | `%d` |", d.MaxLists),
		fmt.Sprintf("at most %d entries", maxConfigLists),
		fmt.Sprintf("(at most %d)", maxMaxLists),
		fmt.Sprintf("at most %d bytes. Fetched", maxRestLen),
		fmt.Sprintf("More than %d references", MaxRefs),
		fmt.Sprintf("at least %d s (`statuslist.MinLeeway`)", int(MinLeeway.Seconds())),
		fmt.Sprintf("max(retry_interval, %ds)", int(unusableRetry.Seconds())),
		fmt.Sprintf("its TTL is `timeout` + %d s", int(leaseSlack.Seconds())),
		fmt.Sprintf("each slot's %d-byte generation record", recordSize),
		fmt.Sprintf("ticks every %d ms until the list arrives", fastTick.Milliseconds()),
		fmt.Sprintf("unused for %d minutes, or not usable and neither added nor used for %d s", int(evictIdle.Minutes()), int(evictGrace.Seconds())),
		"max(2 × `max_lists`, 16) such uris, each for a minute",
		fmt.Sprintf("at most %d times", maxRedirects),
		"draft-ietf-oauth-status-list-20",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/status-list.md does not say %q", want)
		}
	}
	if pendingTTL != time.Minute || usedEvery != time.Minute {
		t.Error("pendingTTL or usedEvery changed: update the docs")
	}
}

// TestDocCommands: the shell block of docs/status-list.md. Its npm line is the command the
// node tests run (needNode) when node_modules is missing, as on a clean clone; its go test
// lines are the suite CI runs, checked here with go test -n, not run from inside it.
func TestDocCommands(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) != 1 {
		t.Fatalf("%d shell blocks; want 1", len(blocks))
	}
	lines := strings.Split(strings.TrimSpace(blocks[0][1]), "\n")
	if want := "cd statuslist/testdata && " + strings.Join(NpmInstall, " "); lines[0] != want {
		t.Fatalf("first command %q; want %q (what the tests run)", lines[0], want)
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("SKIPPED: no go on PATH to check the go test lines")
	}
	for _, l := range lines[1:] {
		args := strings.Fields(l)
		if len(args) < 2 || args[0] != "go" || args[1] != "test" {
			t.Fatalf("unexpected command %q", l)
		}
		for i, a := range args {
			args[i] = strings.Trim(a, "'")
		}
		cmd := exec.Command("go", append([]string{"test", "-n"}, args[2:]...)...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", l, err, out)
		}
	}
}
