package blocklistsync

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var lim = FeedLimits{MaxEntries: 100}

func TestParseFeed(t *testing.T) {
	tests := []struct {
		name        string
		body, ctype string
		lim         FeedLimits
		wantKind    UpdateKind
		wantVersion string
		wantAdd     []Entry
		wantRemove  []uint64
		wantCutoffs int
	}{
		{
			name: "json snapshot", ctype: "application/json",
			body:     `{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":100},{"jti":"b"}],"cutoffs":[{"sub":"u","revoked_before":50}],"x-extra":{"k":[1]}}`,
			wantKind: KindSnapshot, wantVersion: "v1",
			wantAdd:     []Entry{{TokenKey("", "a"), 100}, {TokenKey("", "b"), 0}},
			wantCutoffs: 1,
		},
		{
			name: "kind defaults to snapshot, sniffed without content type",
			body: ` {"entries":[{"jti":"a","iss":"https://i"}]}`, wantKind: KindSnapshot,
			wantAdd: []Entry{{TokenKey("", "a"), 0}}, // not keyed by issuer: iss ignored
		},
		{
			name: "issuer kept when keyed", ctype: "application/json", lim: FeedLimits{MaxEntries: 10, KeyedByIssuer: true},
			body:    `{"entries":[{"jti":"a","iss":"https://i"},{"jti":"b"}]}`,
			wantAdd: []Entry{{TokenKey("https://i", "a"), 0}, {TokenKey("", "b"), 0}},
		},
		{
			name: "delta", ctype: "application/json; charset=utf-8",
			body:     `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c","exp":9}],"removed":[{"jti":"a"}],"cutoffs_removed":[{"sub":"u"}]}`,
			wantKind: KindDelta, wantVersion: "v2",
			wantAdd:    []Entry{{TokenKey("", "c"), 9}},
			wantRemove: []uint64{TokenKey("", "a")},
		},
		{
			name: "plain text", ctype: "text/plain",
			body:     "# comment\n\nabc 1767225600\n  def  \n",
			wantKind: KindSnapshot,
			wantAdd:  []Entry{{TokenKey("", "abc"), 1767225600}, {TokenKey("", "def"), 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tt.lim
			if l.MaxEntries == 0 {
				l = lim
			}
			u, err := ParseFeed([]byte(tt.body), tt.ctype, l)
			if err != nil {
				t.Fatalf("ParseFeed: %v", err)
			}
			if u.Kind != tt.wantKind || u.Version != tt.wantVersion {
				t.Fatalf("kind, version = %v, %q; want %v, %q", u.Kind, u.Version, tt.wantKind, tt.wantVersion)
			}
			if fmt.Sprint(u.Add.Entries) != fmt.Sprint(tt.wantAdd) {
				t.Fatalf("add = %v; want %v", u.Add.Entries, tt.wantAdd)
			}
			if fmt.Sprint(u.Remove) != fmt.Sprint(tt.wantRemove) && !(len(u.Remove) == 0 && len(tt.wantRemove) == 0) {
				t.Fatalf("remove = %v; want %v", u.Remove, tt.wantRemove)
			}
			if len(u.Add.Cutoffs) != tt.wantCutoffs {
				t.Fatalf("cutoffs = %d; want %d", len(u.Add.Cutoffs), tt.wantCutoffs)
			}
		})
	}
}

func TestParseFeedRejects(t *testing.T) {
	long := strings.Repeat("x", MaxJTILen+1)
	many := `{"entries":[` + strings.TrimSuffix(strings.Repeat(`{"jti":"a"},`, 101), ",") + `]}`
	tests := []struct{ name, body, ctype string }{
		{"not json", `{"entries":`, "application/json"},
		{"trailing data", `{"entries":[]} {}`, "application/json"},
		{"unknown kind", `{"kind":"patch"}`, "application/json"},
		{"delta without base", `{"kind":"delta","added":[]}`, "application/json"},
		{"snapshot removing", `{"kind":"snapshot","removed":[{"jti":"a"}]}`, "application/json"},
		{"jti missing", `{"entries":[{"exp":1}]}`, "application/json"},
		{"jti empty", `{"entries":[{"jti":""}]}`, "application/json"},
		{"jti not a string", `{"entries":[{"jti":5}]}`, "application/json"},
		{"jti too long", `{"entries":[{"jti":"` + long + `"}]}`, "application/json"},
		{"exp a string", `{"entries":[{"jti":"a","exp":"1"}]}`, "application/json"},
		{"exp negative", `{"entries":[{"jti":"a","exp":-1}]}`, "application/json"},
		{"exp too large", `{"entries":[{"jti":"a","exp":4294967296}]}`, "application/json"},
		{"exp fractional", `{"entries":[{"jti":"a","exp":1.5}]}`, "application/json"},
		{"entries not an array", `{"entries":{"jti":"a"}}`, "application/json"},
		{"cutoff without time", `{"cutoffs":[{"sub":"u"}]}`, "application/json"},
		{"version too long", `{"version":"` + strings.Repeat("v", MaxVersionLen+1) + `"}`, "application/json"},
		{"too many entries", many, "application/json"},
		{"iss too long", `{"entries":[{"jti":"a","iss":"` + strings.Repeat("i", MaxIssuerLen+1) + `"}]}`, "application/json"},
		{"plain: three fields", "a 1 2\n", "text/plain"},
		{"plain: bad expiry", "a soon\n", "text/plain"},
		{"plain: jti too long", long + "\n", "text/plain"},
		{"plain: line too long", strings.Repeat("y", 5000) + "\n", "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFeed([]byte(tt.body), tt.ctype, lim); !errors.Is(err, ErrBadFeed) {
				t.Fatalf("ParseFeed(%.60q) error = %v; want ErrBadFeed", tt.body, err)
			}
		})
	}
}

func FuzzParseFeed(f *testing.F) {
	f.Add([]byte(`{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":100}],"cutoffs":[{"sub":"u","revoked_before":5}]}`), true)
	f.Add([]byte(`{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[{"jti":"a"}]}`), true)
	f.Add([]byte("a 1\nb\n# c\n"), false)
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		ctype := "text/plain"
		if asJSON {
			ctype = "application/json"
		}
		u, err := ParseFeed(body, ctype, FeedLimits{MaxEntries: 1000})
		if err != nil {
			if !errors.Is(err, ErrBadFeed) {
				t.Fatalf("error %v does not wrap ErrBadFeed", err)
			}
			return
		}
		if n := len(u.Add.Entries) + len(u.Add.Cutoffs) + len(u.Remove) + len(u.RemoveCutoffs); n > 1000 {
			t.Fatalf("%d items passed a limit of 1000", n)
		}
		// Whatever parses must encode into a snapshot that decodes.
		l := u.Add
		l.Normalize(0)
		raw, err := l.Encode(Meta{Version: u.Version})
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if _, err := DecodeSnapshot(raw); err != nil {
			t.Fatalf("decode: %v", err)
		}
	})
}
