package blocklistsync

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

var lim = FeedLimits{MaxEntries: 100, Hasher: testHasher}

func ref(e Entry) Ref { return Ref{e.Key, e.ID} }

func TestParseFeed(t *testing.T) {
	tests := []struct {
		name        string
		body, ctype string
		byIssuer    bool
		wantKind    UpdateKind
		wantVersion string
		wantAdd     []Entry
		wantRemove  []Ref
		wantCutoffs []Cutoff
	}{
		{
			name: "json snapshot", ctype: "application/json",
			body:     `{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":100},{"jti":"b"}],"cutoffs":[{"sub":"u","revoked_before":50}],"x-extra":{"k":[1]}}`,
			wantKind: KindSnapshot, wantVersion: "v1",
			wantAdd:     []Entry{tokenEntry("", "a", 100), tokenEntry("", "b", 0)},
			wantCutoffs: []Cutoff{subjectCutoff("", "u", 50, 0)},
		},
		{
			name: "sniffed as JSON without a content type; iss ignored when not keyed by issuer",
			body: ` {"kind":"snapshot","entries":[{"jti":"a","iss":"https://i"}]}`, wantKind: KindSnapshot,
			wantAdd: []Entry{unkeyedEntry("https://i", "a", 0)},
		},
		{
			name: "issuer kept when keyed", ctype: "application/json", byIssuer: true,
			body:    `{"kind":"snapshot","entries":[{"jti":"a","iss":"https://i"},{"jti":"b"}]}`,
			wantAdd: []Entry{tokenEntry("https://i", "a", 0), tokenEntry("", "b", 0)},
		},
		{
			name: "empty list, said explicitly", ctype: "application/vnd.feed+json",
			body: `{"kind":"snapshot","version":"v0","entries":[]}`, wantKind: KindSnapshot, wantVersion: "v0",
		},
		{
			name: "delta", ctype: "Application/JSON; charset=utf-8",
			body:     `{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c","exp":9}],"removed":[{"jti":"a"}],"cutoffs_removed":[{"sub":"u"}]}`,
			wantKind: KindDelta, wantVersion: "v2",
			wantAdd:    []Entry{tokenEntry("", "c", 9)},
			wantRemove: []Ref{ref(tokenEntry("", "a", 0))},
		},
		{
			name: "claim entries beside jti entries", ctype: "application/json", byIssuer: true,
			body: `{"kind":"snapshot","entries":[{"jti":"s1"},{"claim":"sid","value":"s1","exp":7},` +
				`{"value":"t-9","claim":"tenant","iss":"https://i"},{"claim":"sid","value":"caf\u00e9","x":[1]}]}`,
			wantKind: KindSnapshot,
			wantAdd: []Entry{tokenEntry("", "s1", 0), claimEntry("", "sid", "s1", 7),
				claimEntry("https://i", "tenant", "t-9", 0), claimEntry("", "sid", "café", 0)},
		},
		{
			name: "claim entries in a delta; iss ignored when not keyed by issuer", ctype: "application/json",
			body:     `{"kind":"delta","base":"v1","version":"v2","added":[{"claim":"sid","value":"a","iss":"https://i","exp":9}],"removed":[{"claim":"sid","value":"b"},{"jti":"b"}]}`,
			wantKind: KindDelta, wantVersion: "v2",
			wantAdd:    []Entry{unkeyedClaimEntry("https://i", "sid", "a", 9)},
			wantRemove: []Ref{ref(claimEntry("", "sid", "b", 0)), ref(tokenEntry("", "b", 0))},
		},
		{
			name: "plain text", ctype: "text/plain; charset=utf-8",
			body:     "# comment\n\nabc 1767225600\n  def\t \n",
			wantKind: KindSnapshot,
			wantAdd:  []Entry{tokenEntry("", "abc", 1767225600), tokenEntry("", "def", 0)},
		},
		{
			name: "plain text: an empty list is a comment alone", ctype: "text/plain",
			body: "# nothing is revoked\n", wantKind: KindSnapshot,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lim
			l.KeyedByIssuer = tt.byIssuer
			u, err := ParseFeed([]byte(tt.body), tt.ctype, l)
			if err != nil {
				t.Fatalf("ParseFeed: %v", err)
			}
			if u.Kind != tt.wantKind || u.Version != tt.wantVersion {
				t.Fatalf("kind, version = %v, %q; want %v, %q", u.Kind, u.Version, tt.wantKind, tt.wantVersion)
			}
			if fmt.Sprint(u.Add.Entries) != fmt.Sprint(tt.wantAdd) && len(u.Add.Entries)+len(tt.wantAdd) > 0 {
				t.Fatalf("add = %v; want %v", u.Add.Entries, tt.wantAdd)
			}
			if fmt.Sprint(u.Remove) != fmt.Sprint(tt.wantRemove) && len(u.Remove)+len(tt.wantRemove) > 0 {
				t.Fatalf("remove = %v; want %v", u.Remove, tt.wantRemove)
			}
			if fmt.Sprint(u.Add.Cutoffs) != fmt.Sprint(tt.wantCutoffs) && len(u.Add.Cutoffs)+len(tt.wantCutoffs) > 0 {
				t.Fatalf("cutoffs = %v; want %v", u.Add.Cutoffs, tt.wantCutoffs)
			}
		})
	}
}

func TestParseFeedRejects(t *testing.T) {
	long := strings.Repeat("x", MaxJTILen+1)
	many := `{"kind":"snapshot","entries":[` + strings.TrimSuffix(strings.Repeat(`{"jti":"a"},`, 101), ",") + `]}`
	snap := func(entries string) string { return `{"kind":"snapshot","entries":[` + entries + `]}` }
	tests := []struct{ name, body, ctype string }{
		{"not json", `{"entries":`, "application/json"},
		{"trailing data", snap(``) + ` {}`, "application/json"},
		{"unknown kind", `{"kind":"patch","entries":[]}`, "application/json"},
		{"kind null", `{"kind":null,"entries":[]}`, "application/json"},
		{"kind twice", `{"kind":"delta","kind":"snapshot","entries":[]}`, "application/json"},
		{"entries twice", `{"kind":"snapshot","entries":[],"entries":[{"jti":"a"}]}`, "application/json"},
		{"delta without base", `{"kind":"delta","added":[],"removed":[]}`, "application/json"},
		{"delta with an empty base", `{"kind":"delta","base":"","added":[],"removed":[]}`, "application/json"},
		{"delta without removed", `{"kind":"delta","base":"v1","added":[]}`, "application/json"},
		{"delta without added", `{"kind":"delta","base":"v1","removed":[]}`, "application/json"},
		{"delta with entries", `{"kind":"delta","base":"v1","added":[],"removed":[],"entries":[]}`, "application/json"},
		{"delta adding and removing one jti", `{"kind":"delta","base":"v1","added":[{"jti":"a"}],"removed":[{"jti":"a"}]}`, "application/json"},
		{"delta adding and removing one cutoff", `{"kind":"delta","base":"v1","added":[],"removed":[],"cutoffs_added":[{"sub":"u","revoked_before":1}],"cutoffs_removed":[{"sub":"u"}]}`, "application/json"},
		{"snapshot removing", `{"kind":"snapshot","entries":[],"removed":[{"jti":"a"}]}`, "application/json"},
		{"snapshot with added", `{"kind":"snapshot","added":[{"jti":"a"}]}`, "application/json"},
		{"snapshot with a base", `{"kind":"snapshot","base":"v1","entries":[]}`, "application/json"},
		{"jti missing", snap(`{"exp":1}`), "application/json"},
		{"jti empty", snap(`{"jti":""}`), "application/json"},
		{"jti not a string", snap(`{"jti":5}`), "application/json"},
		{"jti too long", snap(`{"jti":"` + long + `"}`), "application/json"},
		{"jti and claim", snap(`{"jti":"a","claim":"sid","value":"a"}`), "application/json"},
		{"jti and value", snap(`{"jti":"a","value":"a"}`), "application/json"},
		{"claim without value", snap(`{"claim":"sid"}`), "application/json"},
		{"value without claim", snap(`{"value":"a"}`), "application/json"},
		{"value null", snap(`{"claim":"sid","value":null}`), "application/json"},
		{"claim named jti", snap(`{"claim":"jti","value":"a"}`), "application/json"},
		{"claim named sub", snap(`{"claim":"sub","value":"a"}`), "application/json"},
		{"claim empty", snap(`{"claim":"","value":"a"}`), "application/json"},
		{"claim too long", snap(`{"claim":"` + strings.Repeat("c", MaxClaimNameLen+1) + `","value":"a"}`), "application/json"},
		{"claim with a blank", snap(`{"claim":"s id","value":"a"}`), "application/json"},
		{"claim not ASCII", snap(`{"claim":"s\u00efd","value":"a"}`), "application/json"},
		{"claim with a control character", snap(`{"claim":"s\u0000d","value":"a"}`), "application/json"},
		{"claim not a string", snap(`{"claim":1,"value":"a"}`), "application/json"},
		{"value empty", snap(`{"claim":"sid","value":""}`), "application/json"},
		{"value not a string", snap(`{"claim":"sid","value":5}`), "application/json"},
		{"value too long", snap(`{"claim":"sid","value":"` + long + `"}`), "application/json"},
		{"claim entry's iss too long", snap(`{"claim":"sid","value":"a","iss":"` + strings.Repeat("i", MaxIssuerLen+1) + `"}`), "application/json"},
		{"delta adding and removing one claim entry", `{"kind":"delta","base":"v1","added":[{"claim":"sid","value":"a","exp":5}],"removed":[{"claim":"sid","value":"a"}]}`, "application/json"},
		{"removing a claim entry without its value", `{"kind":"delta","base":"v1","added":[],"removed":[{"claim":"sid"}]}`, "application/json"},
		{"exp a string", snap(`{"jti":"a","exp":"1"}`), "application/json"},
		{"exp negative", snap(`{"jti":"a","exp":-1}`), "application/json"},
		{"exp too large", snap(`{"jti":"a","exp":4294967296}`), "application/json"},
		{"exp fractional", snap(`{"jti":"a","exp":1.5}`), "application/json"},
		{"entries not an array", `{"kind":"snapshot","entries":{"jti":"a"}}`, "application/json"},
		{"cutoff without time", `{"kind":"snapshot","entries":[],"cutoffs":[{"sub":"u"}]}`, "application/json"},
		{"version too long", `{"kind":"snapshot","entries":[],"version":"` + strings.Repeat("v", MaxVersionLen+1) + `"}`, "application/json"},
		{"too many entries", many, "application/json"},
		{"iss too long", snap(`{"jti":"a","iss":"` + strings.Repeat("i", MaxIssuerLen+1) + `"}`), "application/json"},
		{"plain: three fields", "a 1 2\n", "text/plain"},
		{"plain: bad expiry", "a soon\n", "text/plain"},
		{"plain: signed expiry", "a +5\n", "text/plain"},
		{"plain: expiry too large", "a 4294967296\n", "text/plain"},
		{"plain: jti too long", long + "\n", "text/plain"},
		{"plain: line too long", strings.Repeat("y", 5000) + "\n", "text/plain"},
		{"plain: non-ASCII jti", "caf\u00e9\n", "text/plain"},
		{"plain: NBSP between jti and expiry", "abc\u00a0123\n", "text/plain"},
		{"plain: control byte", "ab\x00c\n", "text/plain"},
		{"plain: quoted jti", "\"abc\"\n", "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseFeed([]byte(tt.body), tt.ctype, lim)
			if !errors.Is(err, ErrBadFeed) || u != nil {
				t.Fatalf("ParseFeed(%.60q) = %v, %v; want nil, ErrBadFeed", tt.body, u, err)
			}
		})
	}
}

// TestHostileBodiesAreRejected: whatever the content type, a 200 whose body is not a
// well-formed feed — nothing, an empty object, an error object, a page of HTML, a feed under
// the wrong type — is rejected, never read as an empty (or odd) list.
func TestHostileBodiesAreRejected(t *testing.T) {
	goodJSON := `{"kind":"snapshot","version":"v1","entries":[{"jti":"a"}]}`
	bodies := map[string]string{
		"empty":                 "",
		"blank":                 " \r\n\t\n",
		"empty object":          "{}",
		"error object":          `{"error":"database unavailable"}`,
		"error object, nested":  `{"error":{"code":500,"message":"boom"}}`,
		"error beside a list":   `{"kind":"snapshot","entries":[],"error":"partial"}`,
		"kind alone":            `{"kind":"snapshot"}`,
		"entries without kind":  `{"entries":[{"jti":"a"}]}`,
		"entries null":          `{"kind":"snapshot","entries":null}`,
		"array":                 `[]`,
		"string":                `"ok"`,
		"html":                  "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n",
		"html doctype":          "<!DOCTYPE html>\n<html><body>Service Unavailable</body></html>\n",
		"xml":                   `<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>`,
		"truncated json":        goodJSON[:len(goodJSON)/2],
		"json array of entries": `[{"jti":"a"}]`,
	}
	types := []string{"application/json", "application/json; charset=utf-8", "text/plain", "text/plain; charset=utf-8",
		"", "text/html", "application/octet-stream", "application/xml"}
	for name, body := range bodies {
		for _, ct := range types {
			t.Run(name+"/"+ct, func(t *testing.T) {
				u, err := ParseFeed([]byte(body), ct, lim)
				if !errors.Is(err, ErrBadFeed) || u != nil {
					t.Fatalf("ParseFeed(%q, %q) = %+v, %v; want rejected", body, ct, u, err)
				}
			})
		}
	}
	// A JSON scalar that is also a plain jti ("null", "0") is rejected as JSON; as
	// text/plain it is a one-entry list, which the shrink guard judges (TestShrinkGuard).
	for _, body := range []string{"null", "0", "true"} {
		for _, ct := range []string{"application/json", "", "text/html"} {
			if u, err := ParseFeed([]byte(body), ct, lim); !errors.Is(err, ErrBadFeed) || u != nil {
				t.Errorf("ParseFeed(%q, %q) = %+v, %v; want rejected", body, ct, u, err)
			}
		}
	}
	// Good feeds under the wrong type are rejected too: JSON only as JSON (or untyped),
	// plain text only as text/plain.
	for _, tc := range []struct {
		body     string
		accepted map[string]bool
	}{
		{goodJSON, map[string]bool{"application/json": true, "application/json; charset=utf-8": true, "": true}},
		{"abc 1767225600\n", map[string]bool{"text/plain": true, "text/plain; charset=utf-8": true}},
	} {
		for _, ct := range types {
			_, err := ParseFeed([]byte(tc.body), ct, lim)
			if (err == nil) != tc.accepted[ct] {
				t.Errorf("ParseFeed(%q, %q) error = %v; want accepted %v", tc.body, ct, err, tc.accepted[ct])
			}
			if err != nil && !errors.Is(err, ErrBadFeed) {
				t.Errorf("error %v does not wrap ErrBadFeed", err)
			}
		}
	}
}

// TestClaimEntriesAreNotJTIEntries: a claim entry and a jti entry of the same text, a sid and
// another claim of the same value, are four different entries with four different keys.
func TestClaimEntriesAreNotJTIEntries(t *testing.T) {
	u, err := ParseFeed([]byte(`{"kind":"snapshot","entries":[{"jti":"x"},{"claim":"sid","value":"x"},{"claim":"org","value":"x"},{"claim":"sid","value":"x","iss":"https://i"}]}`),
		"application/json", FeedLimits{MaxEntries: 10, KeyedByIssuer: true, Hasher: testHasher})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[uint64]bool{}
	for _, e := range u.Add.Entries {
		keys[e.Key] = true
	}
	h := testHasher
	want := []uint64{h.TokenKey("", "x"), h.ClaimKey("", "sid", "x"), h.ClaimKey("", "org", "x"), h.ClaimKey("https://i", "sid", "x")}
	for i, k := range want {
		if !keys[k] {
			t.Errorf("key %d (%#x) not among the parsed entries' keys", i, k)
		}
	}
	if len(keys) != 4 {
		t.Fatalf("%d distinct keys; want 4", len(keys))
	}
}

func TestParseFeedNeedsAHasher(t *testing.T) {
	if _, err := ParseFeed([]byte(`{"kind":"snapshot","entries":[]}`), "application/json", FeedLimits{MaxEntries: 1}); err == nil {
		t.Fatal("parsed without a Hasher")
	}
}

func FuzzParseFeed(f *testing.F) {
	f.Add([]byte(`{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":100}],"cutoffs":[{"sub":"u","revoked_before":5}]}`), uint8(0))
	f.Add([]byte(`{"kind":"delta","base":"v1","version":"v2","added":[],"removed":[{"jti":"a"}]}`), uint8(0))
	f.Add([]byte("a 1\nb\n# c\n"), uint8(1))
	f.Add([]byte("<html>oops</html>"), uint8(2))
	f.Add([]byte(`{"error":"x"}`), uint8(3))
	f.Add([]byte(`{"kind":"snapshot","entries":[{"claim":"sid","value":"s","exp":3},{"jti":"s"}]}`), uint8(0))
	ctypes := []string{"application/json", "text/plain", "", "text/html"}
	f.Fuzz(func(t *testing.T, body []byte, ct uint8) {
		ctype := ctypes[int(ct)%len(ctypes)]
		u, err := ParseFeed(body, ctype, FeedLimits{MaxEntries: 1000, Hasher: testHasher})
		if err != nil {
			if !errors.Is(err, ErrBadFeed) {
				t.Fatalf("error %v does not wrap ErrBadFeed", err)
			}
			return
		}
		if n := len(u.Add.Entries) + len(u.Add.Cutoffs) + len(u.Remove) + len(u.RemoveCutoffs); n > 1000 {
			t.Fatalf("%d items passed a limit of 1000", n)
		}
		if ctype == "text/html" {
			t.Fatal("accepted a text/html body")
		}
		// Whatever parses must encode into a snapshot that decodes, with its IDs.
		l := u.Add
		l.Normalize(0)
		enc, err := l.Encode(Meta{Version: u.Version, Hasher: testHasher})
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		s, err := DecodeSnapshot(enc.Snapshot)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if _, err := attachIDs(s, enc.IDs); err != nil {
			t.Fatalf("ids: %v", err)
		}
	})
}

// unkeyedEntry is the entry a filter not keyed by issuer makes of (iss, jti): looked up by the
// jti alone, and told apart from the same jti under another issuer by its ID.
func unkeyedEntry(iss, jti string, exp uint32) Entry {
	k, id := keyAndID(testHasher, domainToken, "", iss, jti)
	return Entry{Key: k, ID: id, Exp: exp}
}

// unkeyedClaimEntry is unkeyedEntry for a claim entry.
func unkeyedClaimEntry(iss, claim, value string, exp uint32) Entry {
	k, id := claimKeyAndID(testHasher, "", iss, claim, value)
	return Entry{Key: k, ID: id, Exp: exp}
}
