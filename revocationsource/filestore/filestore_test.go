package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		entries int
		cutoffs int
		err     error
	}{
		{"text", "# c\n\na 1767225600\nb\n", 2, 0, nil},
		{"json", `{"kind":"snapshot","entries":[{"jti":"a","exp":5,"iss":"i"}],"cutoffs":[{"sub":"u","revoked_before":1}]}`, 1, 1, nil},
		{"json no kind", `{"entries":[{"jti":"a"}]}`, 1, 0, nil},
		{"json claim entries", `{"kind":"snapshot","entries":[{"jti":"s"},{"claim":"sid","value":"s","exp":5},{"claim":"org","value":"s","iss":"i"}]}`, 3, 0, nil},
		{"json entry without a jti, dropped later", `{"entries":[{"exp":5}]}`, 1, 0, nil},
		{"json entry of both forms", `{"entries":[{"jti":"a","claim":"sid","value":"a"}]}`, 0, 0, ErrSyntax},
		{"json claim without value", `{"entries":[{"claim":"sid"}]}`, 0, 0, ErrSyntax},
		{"json value without claim", `{"entries":[{"value":"a"}]}`, 0, 0, ErrSyntax},
		{"delta rejected", `{"kind":"delta"}`, 0, 0, ErrSyntax},
		{"three fields", "a 1 2\n", 0, 0, ErrSyntax},
		{"bad expiry", "a soon\n", 0, 0, ErrSyntax},
		{"bad json", `{"entries":`, 0, 0, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.err) || len(st.Entries) != tt.entries || len(st.Cutoffs) != tt.cutoffs {
				t.Fatalf("got %+v, %v", st, err)
			}
		})
	}
}

// TestParseClaimEntries: a JSON file's claim entries become claim entries,
// not jtis.
func TestParseClaimEntries(t *testing.T) {
	st, err := Parse([]byte(`{"entries":[{"jti":"s"},{"claim":"sid","value":"s","exp":5,"iss":"i"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Entries) != 2 || st.Entries[0] != (rs.Entry{JTI: "s"}) || st.Entries[1] != rs.ClaimEntry("i", "sid", "s", 5) {
		t.Fatalf("entries %+v", st.Entries)
	}
}

func TestReloadOnChange(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: path}
	idx := rs.NewIndex(nil, 0)
	if err := s.ReloadInto(ctx, idx); err != nil {
		t.Fatal(err)
	}
	base := idx.Version()
	if err := os.WriteFile(path, []byte("b\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadInto(ctx, idx); err != nil {
		t.Fatal(err)
	}
	_, d, ok := idx.Delta(base)
	if !ok || len(d.Added) != 1 || d.Added[0].JTI != "c" || len(d.Removed) != 1 || d.Removed[0].JTI != "a" {
		t.Fatalf("delta %+v ok=%v", d, ok)
	}
	if err := s.RevokeToken(ctx, rs.Entry{JTI: "x"}); !errors.Is(err, rs.ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}
}

func TestLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.txt")
	if err := os.WriteFile(path, []byte("aaaa\nbbbb\ncccc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Store{Path: path, MaxBytes: 8}).Load(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("size: %v", err)
	}
	if _, err := (&Store{Path: path, MaxEntries: 2}).Load(context.Background()); !errors.Is(err, rs.ErrTooManyEntries) {
		t.Fatalf("count: %v", err)
	}
}

func TestFollowPicksUpReplacement(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte("a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: path, PollInterval: 5 * time.Millisecond}
	idx := rs.NewIndex(nil, 0)
	go func() { _ = s.Follow(ctx, idx) }()
	// A different size guarantees a changed stamp even on coarse mtimes.
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := idx.Len(); n != 3; n, _ = idx.Len() {
		if time.Now().After(deadline) {
			t.Fatalf("file change not picked up: %d entries", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExpiredItemsDoNotCount: items past exp + grace are left out and do
// not count against MaxEntries. (Issue 8 §4.)
func TestExpiredItemsDoNotCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.txt")
	now := time.Unix(1_800_000_000, 0)
	body := fmt.Sprintf("old1 %d\nold2 %d\nin-grace %d\nlive %d\nforever\n",
		now.Unix()-7200, now.Unix()-3601, now.Unix()-60, now.Unix()+60)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := (&Store{Path: path, MaxEntries: 3, Grace: time.Hour, Now: func() time.Time { return now }}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range st.Entries {
		got = append(got, e.JTI)
	}
	if strings.Join(got, ",") != "in-grace,live,forever" {
		t.Fatalf("loaded %v", got)
	}
}
