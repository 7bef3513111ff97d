package blocklistsync

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var feedFields = []string{"jti", "claim", "value", "exp", "iss", "sub", "revoked_before"}

// caseVariantKeys reports whether a document has an object key that differs from a field
// name only by case: encoding/json's struct decoding matches those, the feed does not.
func caseVariantKeys(body []byte) bool {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				for _, f := range feedFields {
					if k != f && strings.EqualFold(k, f) {
						return true
					}
				}
				if walk(e) {
					return true
				}
			}
		case []any:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

func sameUpdate(a, b *Update) bool {
	norm := func(u *Update) Update {
		c := *u
		if len(c.Add.Entries) == 0 {
			c.Add.Entries = nil
		}
		if len(c.Add.Cutoffs) == 0 {
			c.Add.Cutoffs = nil
		}
		if len(c.Remove) == 0 {
			c.Remove = nil
		}
		if len(c.RemoveCutoffs) == 0 {
			c.RemoveCutoffs = nil
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// FuzzScannerMatchesReference holds the in-place scanner to the encoding/json reference: the
// same inputs are accepted, with the same result.
func FuzzScannerMatchesReference(f *testing.F) {
	for _, seed := range []string{
		`{"kind":"snapshot","version":"v1","entries":[{"jti":"a","exp":100},{"jti":"b","iss":"https://i"}],"cutoffs":[{"sub":"u","revoked_before":5,"exp":9}]}`,
		`{"kind":"delta","base":"v1","version":"v2","added":[{"jti":"c"}],"removed":[{"jti":"a"}],"cutoffs_added":[],"cutoffs_removed":[{"sub":"u"}]}`,
		`{"kind":"snapshot","entries":[{"jti":"caf\u00e9","exp":null,"x":{"y":[1,2,{"z":"\""}]}}],"extra":[true,false,null,-1.5e3]}`,
		`{"kind":"snapshot","entries":[{"jti":"a","exp":1,"exp":null}],"version":null}`,
		`{"kind":"snapshot","entries":[],"cutoffs":[{"sub":"u","revoked_before":5,"revoked_before":null}]}`,
		`{"kind":"snapshot","entries":[{"jti":"a","exp":01}]}`,
		`{"kind":"snapshot","entries":[{"jti":"a","exp":4294967296}]}`,
		"{\"kind\":\"snapshot\",\"entries\":[{\"jti\":\"\xff\xfe\"}]}",
		`{"kind":"snapshot","entries":[]} x`,
		` {"kind":"delta","base":"b","added":[],"removed":[]} `,
		`{"kind":"delta","base":"b","added":[{"jti":"a"}],"removed":[{"jti":"a"}]}`,
		`{"kind":"snapshot","entries":[],"error":null}`,
		`{"kind":"snapshot","entries":[],"entries":[]}`,
		`{}`,
		`{"kind":"snapshot","entries":[{"claim":"sid","value":"s1","exp":9},{"jti":"s1"},{"claim":"tenant","value":"t","iss":"https://i"}]}`,
		`{"kind":"delta","base":"v1","added":[{"claim":"sid","value":"a"}],"removed":[{"claim":"sid","value":"b"},{"claim":"org","value":"a"}]}`,
		`{"kind":"snapshot","entries":[{"claim":"sid","value":"a","jti":"a"}]}`,
		`{"kind":"snapshot","entries":[{"claim":"jti","value":"a"},{"claim":"sub","value":"a"}]}`,
		`{"kind":"snapshot","entries":[{"claim":"s\u0069d","value":"caf\u00e9"},{"claim":"a b","value":"x"}]}`,
		`{"kind":"snapshot","entries":[{"claim":"sid","value":null,"value":"x"},{"claim":"sid","value":"x","claim":null}]}`,
		`{"kind":"snapshot","entries":[{"claim":"sid"},{"value":"x"},{"claim":"","value":"x"},{"claim":"sid","value":""}]}`,
		`{"kind":"delta","base":"b","added":[{"claim":"sid","value":"a"}],"removed":[{"claim":"sid","value":"a"}]}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, byIssuer bool) {
		if caseVariantKeys(body) {
			t.Skip("case-variant keys: encoding/json folds them, the feed does not")
		}
		lim := FeedLimits{MaxEntries: 50, KeyedByIssuer: byIssuer, Hasher: testHasher}
		got, gotErr := parseJSONFeed(body, lim)
		want, wantErr := parseJSONFeedReference(body, lim)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("scanner error = %v; reference error = %v", gotErr, wantErr)
		}
		if gotErr == nil && !sameUpdate(got, want) {
			t.Fatalf("scanner = %+v\nreference = %+v", got, want)
		}
	})
}

func TestScannerAllocations(t *testing.T) {
	body := feedBody(1000)
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := parseJSONFeed(body, FeedLimits{MaxEntries: 2000, Hasher: testHasher}); err != nil {
			t.Fatal(err)
		}
	})
	// The entry slice grows by doubling (about a dozen allocations for 1000 entries) plus the
	// Update itself: nothing per entry.
	if allocs > 30 {
		t.Fatalf("%.0f allocations for 1000 entries; want no per-entry allocation", allocs)
	}
}

// BenchmarkParseJSONFeed is the scanner alone on a 100k-entry snapshot: jti entries only,
// and with every other entry a claim entry (a sid) instead.
func BenchmarkParseJSONFeed(b *testing.B) {
	const n = 100_000
	claims := func(n int) []byte {
		var buf bytes.Buffer
		buf.WriteString(`{"kind":"snapshot","version":"v1","entries":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if i%2 == 0 {
				buf.WriteString(`{"jti":"` + benchJTI(i) + `","exp":1900000000}`)
			} else {
				buf.WriteString(`{"claim":"sid","value":"` + benchJTI(i) + `","exp":1900000000,"iss":"https://auth.example.com"}`)
			}
		}
		buf.WriteString(`]}`)
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name string
		body []byte
	}{{"jti", feedBody(n)}, {"half-claims", claims(n)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for b.Loop() {
				if _, err := ParseFeed(tc.body, "application/json", FeedLimits{MaxEntries: 2 * n, KeyedByIssuer: true, Hasher: benchHasher}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
