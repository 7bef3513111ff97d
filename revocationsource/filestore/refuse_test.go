package filestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileThatIsNotAListIsRefused: a file that is not plainly a whole list (see the package's
// doc) fails Load, so the source keeps serving the last good list: served as an empty or junk
// list, it would un-revoke every token. The filter's own feed parser refuses the same bodies
// (docs/feed.md).
func TestFileThatIsNotAListIsRefused(t *testing.T) {
	cases := []struct{ name, body string }{
		{"empty file (truncated by a writer)", ""},
		{"blank lines only", "\n\n"},
		{"empty JSON object", "{}"},
		{"error object", `{"error":"database unavailable"}`},
		{"JSON array of jtis", `["6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10","a1b2c3d4"]`},
		{"HTML error page", "<html><body>502 Bad Gateway</body></html>\n"},
		{"last line cut short, just written", "6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10\na1b2"},
		{"entries null", `{"entries":null}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "revoked.txt")
			if err := os.WriteFile(path, []byte("6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10\na1b2c3d4\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s := &Store{Path: path}
			if st, err := s.Load(context.Background()); err != nil || len(st.Entries) != 2 {
				t.Fatalf("good file: %+v, %v", st, err)
			}
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := s.Load(context.Background())
			if err == nil {
				var jtis []string
				for _, e := range st.Entries {
					jtis = append(jtis, e.JTI)
				}
				t.Errorf("file %q loaded as a list of %d entries %q: the two revoked jtis are served as unrevoked", tc.body, len(st.Entries), jtis)
			}
		})
	}
}

// TestEmptyListsAreWrittenPlainly: an empty list is a comment line or an empty "entries".
func TestEmptyListsAreWrittenPlainly(t *testing.T) {
	for _, body := range []string{"# nothing revoked\n", `{"entries":[]}`, "{\"kind\":\"snapshot\",\"entries\":[]}\n"} {
		st, err := Parse([]byte(body))
		if err != nil || len(st.Entries) != 0 || len(st.Cutoffs) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want an empty list", body, st, err)
		}
	}
}

// TestFileChangedWhileReadIsRefused: what was read is compared with the file's size as it was
// stated before the read; a writer that grew the file in between makes the read refused.
func TestFileChangedWhileReadIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked.txt")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: path}
	before, err := s.stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.read(before); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("read after a change: %v, want ErrIncomplete", err)
	}
}

// TestLastLineWithoutNewlineOnceSettled: a text file whose last line has no newline is refused
// while it may still be written, and read whole once it has not changed for settle (printf
// without \n, "\n".join(jtis), a ConfigMap written with |-).
func TestLastLineWithoutNewlineOnceSettled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked.txt")
	if err := os.WriteFile(path, []byte("a\nb"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	now := fi.ModTime().Add(minSettle - time.Second)
	s := &Store{Path: path, Now: func() time.Time { return now }}
	if _, err := s.Load(context.Background()); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("a second before it settled: %v, want ErrIncomplete", err)
	}
	now = fi.ModTime().Add(minSettle + time.Millisecond)
	st, err := s.Load(context.Background())
	if err != nil || len(st.Entries) != 2 || st.Entries[1].JTI != "b" {
		t.Fatalf("once settled: %+v, %v; want a and b", st, err)
	}
	if err := os.WriteFile(path, []byte(`{"entries":[{"jti":"c"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Load(context.Background()); err != nil || len(st.Entries) != 1 {
		t.Fatalf("JSON without a final newline: %+v, %v; want it read at once", st, err)
	}
}
