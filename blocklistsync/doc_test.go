package blocklistsync

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFeedDocExamples: every JSON example in docs/feed.md and its plain-text example are
// accepted as written, and the numbers the page states are the code's.
func TestFeedDocExamples(t *testing.T) {
	raw, err := os.ReadFile("../docs/feed.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) != 3 {
		t.Fatalf("found %d JSON examples; want 3 (snapshot, empty snapshot, delta)", len(blocks))
	}
	for _, b := range blocks {
		u, err := ParseFeed([]byte(b[1]), "application/json", lim)
		if err != nil {
			t.Fatalf("example rejected: %v\n%s", err, b[1])
		}
		if u.Kind == KindSnapshot && len(u.Add.Entries) == 0 && !strings.Contains(b[1], `"entries": []`) {
			t.Fatalf("example parsed as an empty list: %s", b[1])
		}
		if strings.Contains(b[1], `"claim"`) && u.Kind == KindSnapshot {
			h := lim.Hasher
			sid := h.ClaimKey("", "sid", "08a5019c-17e1-4977-8f42-65a12843ea02")
			found := false
			for _, e := range u.Add.Entries {
				found = found || e.Key == sid
			}
			if !found {
				t.Fatalf("the snapshot example's sid entry is not keyed by ClaimKey: %s", b[1])
			}
		}
	}
	plain := regexp.MustCompile("(?s)```\n(# one jti per line.*?)```").FindStringSubmatch(doc)
	if plain == nil {
		t.Fatal("plain-text example not found")
	}
	if u, err := ParseFeed([]byte(plain[1]), "text/plain", lim); err != nil || len(u.Add.Entries) != 2 {
		t.Fatalf("plain-text example: %v", err)
	}
	if u, err := ParseFeed([]byte("# nothing revoked\n"), "text/plain", lim); err != nil || len(u.Add.Entries) != 0 {
		t.Fatalf("the documented empty plain list: %v", err)
	}

	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tick := (&Syncer{cfg: cfg}).TickPeriod()
	secs := func(d time.Duration) string { return fmt.Sprintf("**%g s + answer**", d.Seconds()) }
	for _, want := range []string{
		secs(max(cfg.Interval.D(), cfg.Timeout.D()) + tick),
		secs(cfg.LeaseTTL.D() + tick),
		fmt.Sprintf("`sync.max_shrink` (default %g)", cfg.MaxShrink),
		fmt.Sprintf("`sync.watch.wait` (default `%q`", cfg.Watch.Wait.D().String()),
		fmt.Sprintf("otherwise 1s to %s)", strings.TrimSuffix(maxWatchWait.String(), "0s")),
		fmt.Sprintf("limited to\n  %d per `interval`, in bursts of %d", watchBurst, watchBurst),
		fmt.Sprintf("a wait below %s is not worth", minWatchWait),
		fmt.Sprintf("fewer than %d entries never trip", minGuardedShrink),
		fmt.Sprintf("default %d = 128 MiB", cfg.MaxBodyBytes),
		fmt.Sprintf("`jti`, `sub` | 1–%d bytes", MaxJTILen),
		fmt.Sprintf("`claim` | 1–%d bytes of visible ASCII, not `jti`, `sub`, `iss` or `iat`; at most %d distinct names in one list", MaxClaimNameLen, MaxClaimNames),
		fmt.Sprintf("claim `value` | 1–%d bytes", MaxJTILen),
		fmt.Sprintf("`iss` | at most %d bytes", MaxIssuerLen),
		fmt.Sprintf("at most %d bytes (the ETag", MaxVersionLen),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/feed.md does not say %q", want)
		}
	}
}
