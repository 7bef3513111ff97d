package statuslist

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/jtiguard/jtiguard/credentials"
)

func refsOf(r *Refs) []Ref {
	out := make([]Ref, r.Len())
	for i := range out {
		out[i] = r.At(i)
	}
	return out
}

func TestRefsReadJSON(t *testing.T) {
	const u = "https://example.com/statuslists/1"
	ref := func(idx uint64, uri string) Ref { return Ref{URI: uri, Idx: idx} }
	cases := []struct {
		name      string
		payload   string
		want      []Ref
		malformed bool
		overflow  bool
	}{
		{"draft example", `{"status":{"status_list":{"idx":0,"uri":"` + u + `"}}}`, []Ref{ref(0, u)}, false, false},
		{"among other claims", `{"jti":"a","status":{"other_mechanism":{"x":[1,{"y":2}]},"status_list":{"uri":"` + u + `","idx":12345}},"exp":1}`, []Ref{ref(12345, u)}, false, false},
		{"no status", `{"jti":"a","sub":"b"}`, nil, false, false},
		{"status a string (a flask app's claim)", `{"status":"active"}`, nil, false, false},
		{"status an object without status_list", `{"status":{"active":true}}`, nil, false, false},
		{"status_list nested deeper is not the claim", `{"x":{"status":{"status_list":{"idx":1,"uri":"u"}}}}`, nil, false, false},
		{"status_list a string", `{"status":{"status_list":"` + u + `"}}`, nil, true, false},
		{"idx missing", `{"status":{"status_list":{"uri":"` + u + `"}}}`, nil, true, false},
		{"uri missing", `{"status":{"status_list":{"idx":1}}}`, nil, true, false},
		{"uri a number", `{"status":{"status_list":{"idx":1,"uri":5}}}`, nil, true, false},
		{"idx negative", `{"status":{"status_list":{"idx":-1,"uri":"` + u + `"}}}`, []Ref{}, true, false},
		{"idx a string", `{"status":{"status_list":{"idx":"1","uri":"` + u + `"}}}`, []Ref{}, true, false},
		{"idx fractional", `{"status":{"status_list":{"idx":1.5,"uri":"` + u + `"}}}`, []Ref{}, true, false},
		{"idx true", `{"status":{"status_list":{"idx":true,"uri":"` + u + `"}}}`, []Ref{}, true, false},
		{"idx NaN", `{"status":{"status_list":{"idx":NaN,"uri":"` + u + `"}}}`, []Ref{}, true, false},
		{"idx integral float", `{"status":{"status_list":{"idx":7.0,"uri":"` + u + `"}}}`, []Ref{ref(7, u)}, false, false},
		{"idx exponent", `{"status":{"status_list":{"idx":1e3,"uri":"` + u + `"}}}`, []Ref{ref(1000, u)}, false, false},
		{"idx -0", `{"status":{"status_list":{"idx":-0,"uri":"` + u + `"}}}`, []Ref{ref(0, u)}, false, false},
		{"idx beyond 2^64 saturates", `{"status":{"status_list":{"idx":123456789012345678901234567890,"uri":"` + u + `"}}}`, []Ref{ref(math.MaxUint64, u)}, false, false},
		{"idx 1e300 saturates", `{"status":{"status_list":{"idx":1e300,"uri":"` + u + `"}}}`, []Ref{ref(math.MaxUint64, u)}, false, false},
		{"escaped names and uri", `{"st\u0061tus":{"status\u005flist":{"\u0069dx":3,"uri":"https:\/\/example.com\/statuslists\/1"}}}`, []Ref{ref(3, u)}, false, false},
		{"idx twice: both", `{"status":{"status_list":{"idx":1,"uri":"` + u + `","idx":2}}}`, []Ref{ref(1, u), ref(2, u)}, false, false},
		{"uri twice: both", `{"status":{"status_list":{"idx":1,"uri":"a","uri":"b"}}}`, []Ref{ref(1, "a"), ref(1, "b")}, false, false},
		{"status twice: both", `{"status":{"status_list":{"idx":1,"uri":"a"}},"status":{"status_list":{"idx":2,"uri":"b"}}}`, []Ref{ref(1, "a"), ref(2, "b")}, false, false},
		{"status_list twice: both", `{"status":{"status_list":{"idx":1,"uri":"a"},"status_list":{"idx":2,"uri":"b"}}}`, []Ref{ref(1, "a"), ref(2, "b")}, false, false},
		{"a good and a bad status_list", `{"status":{"status_list":{"idx":1,"uri":"a"},"status_list":{"idx":"x","uri":"b"}}}`, []Ref{ref(1, "a")}, true, false},
		{"too many", `{"status":{"status_list":{"idx":1,"idx":2,"idx":3,"uri":"a","uri":"b"}}}`, []Ref{ref(1, "a"), ref(2, "a"), ref(3, "a"), ref(1, "b")}, false, true},
		{"five idx values", `{"status":{"status_list":{"idx":1,"idx":2,"idx":3,"idx":4,"idx":5,"uri":"a"}}}`, []Ref{ref(1, "a"), ref(2, "a"), ref(3, "a"), ref(4, "a")}, false, true},
		{"cut short after the reference", `{"status":{"status_list":{"idx":4,"uri":"` + u + `"}},"x":`, []Ref{ref(4, u)}, false, false},
		{"cut short inside the reference", `{"status":{"status_list":{"idx":4,"uri":"` + u + `"`, []Ref{ref(4, u)}, true, false},
		{"syntax error before the status claim", `{"a":[1,}"status":{"status_list":{"idx":1,"uri":"a"}}}`, nil, false, false},
		{"deep nesting before it", `{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `,"status":{"status_list":{"idx":9,"uri":"a"}}}`, []Ref{ref(9, "a")}, false, false},
		{"Python literals before it", `{"a":NaN,"b":-Infinity,"c":[Infinity],"status":{"status_list":{"idx":9,"uri":"a"}}}`, []Ref{ref(9, "a")}, false, false},
		{"UTF-8 BOM", "\xef\xbb\xbf" + `{"status":{"status_list":{"idx":2,"uri":"a"}}}`, []Ref{ref(2, "a")}, false, false},
		{"white space everywhere", " {\n\"status\" :\t{ \"status_list\" : { \"idx\" : 2 , \"uri\" : \"a\" } } } ", []Ref{ref(2, "a")}, false, false},
		{"not an object", `[{"status":{"status_list":{"idx":2,"uri":"a"}}}]`, nil, false, false},
		{"empty", ``, nil, false, false},
	}
	var r Refs
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r.ReadJSON([]byte(tc.payload))
			got := refsOf(&r)
			if len(got) != len(tc.want) || len(got) > 0 && !slices.Equal(got, tc.want) {
				t.Errorf("refs = %v; want %v", got, tc.want)
			}
			if r.Malformed != tc.malformed || r.Overflow != tc.overflow {
				t.Errorf("malformed %v overflow %v; want %v %v", r.Malformed, r.Overflow, tc.malformed, tc.overflow)
			}
			if r.Any() != (len(tc.want) > 0 || tc.malformed || tc.overflow) {
				t.Errorf("Any() = %v", r.Any())
			}
		})
	}
}

// TestRefsWideEncodings: a payload in UTF-16 or UTF-32, with or without a byte order mark, is
// read as Python's json.loads reads those bytes.
func TestRefsWideEncodings(t *testing.T) {
	const p = `{"status":{"status_list":{"idx":5,"uri":"https://x/é/1"}}}`
	u16 := utf16.Encode([]rune(p))
	enc := func(width int, order binary.AppendByteOrder, bom bool) []byte {
		var b []byte
		if bom {
			if width == 2 {
				b = order.AppendUint16(b, 0xfeff)
			} else {
				b = order.AppendUint32(b, 0xfeff)
			}
		}
		if width == 2 {
			for _, u := range u16 {
				b = order.AppendUint16(b, u)
			}
		} else {
			for _, r := range p {
				b = order.AppendUint32(b, uint32(r))
			}
		}
		return b
	}
	var r Refs
	for _, width := range []int{2, 4} {
		for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
			for _, bom := range []bool{false, true} {
				r.ReadJSON(enc(width, order, bom))
				if got := refsOf(&r); len(got) != 1 || got[0] != (Ref{"https://x/é/1", 5}) || r.Malformed {
					t.Errorf("UTF-%d %v bom %v: %v (malformed %v)", width*8, order, bom, got, r.Malformed)
				}
			}
		}
	}
}

// TestRefsMatchEncodingJSON: on payloads that encoding/json decodes (valid JSON without
// duplicate names), Refs finds exactly the reference the issuer wrote.
func TestRefsMatchEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var refs Refs
	for range 2000 {
		p := randomPayload(r)
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		refs.ReadJSON(b)
		var claims struct {
			Status json.RawMessage `json:"status"`
		}
		if err := json.Unmarshal(b, &claims); err != nil {
			t.Fatal(err)
		}
		var want []Ref
		var st struct {
			StatusList *struct {
				Idx uint64 `json:"idx"`
				URI string `json:"uri"`
			} `json:"status_list"`
		}
		if len(claims.Status) > 0 && claims.Status[0] == '{' {
			if err := json.Unmarshal(claims.Status, &st); err != nil {
				t.Fatal(err)
			}
			if st.StatusList != nil {
				want = []Ref{{URI: st.StatusList.URI, Idx: st.StatusList.Idx}}
			}
		}
		if got := refsOf(&refs); !slices.Equal(got, want) || refs.Malformed || refs.Overflow {
			t.Fatalf("%s: refs %v (malformed %v); want %v", b, got, refs.Malformed, want)
		}
	}
}

// randomPayload builds a claims object with noise around (sometimes) a status reference.
func randomPayload(r *rand.Rand) map[string]any {
	p := map[string]any{}
	noise := func() any {
		switch r.IntN(5) {
		case 0:
			return r.Float64() * 1e6
		case 1:
			return strings.Repeat("\"\\/é\u2028", r.IntN(3)) + "x"
		case 2:
			return []any{1, "status", map[string]any{"status_list": "no"}}
		case 3:
			return map[string]any{"idx": 1, "uri": "nested"}
		}
		return nil
	}
	for range r.IntN(6) {
		p[fmt.Sprintf("c%d", r.IntN(10))] = noise()
	}
	if r.IntN(4) > 0 {
		st := map[string]any{"other": noise()}
		if r.IntN(5) > 0 {
			uri := fmt.Sprintf("https://issuer.example/lists/%d?\"q\\%c", r.IntN(100), rune(0x20+r.IntN(0x2000)))
			st["status_list"] = map[string]any{"idx": r.Uint64() >> r.IntN(64), "uri": uri, "extra": noise()}
		}
		p["status"] = st
	} else if r.IntN(2) == 0 {
		p["status"] = "active"
	}
	return p
}

// TestReadSegmentMatchesPython: the lenient base64 decoder reads what PyJWT's base64url_decode
// (CPython's base64.urlsafe_b64decode after PyJWT's padding) reads, on generated segments with
// stray bytes, both alphabets and padding anywhere. Needs python3 (Debian's, as the other
// reference tests); in CI its absence fails the test.
func TestReadSegmentMatchesPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 is needed for this reference test: %v", err)
		}
		t.Skip("SKIPPED: no python3 for the base64 reference test")
	}
	r := rand.New(rand.NewPCG(5, 6))
	// Runes below 256, so each stands for one byte (latin-1) on both sides.
	alphabet := []rune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.~!é\u00ff \t")
	var inputs []string
	for range 300 {
		var rs []rune
		for range r.IntN(40) {
			rs = append(rs, alphabet[r.IntN(len(alphabet))])
		}
		inputs = append(inputs, string(rs))
	}
	// PyJWT: base64url_decode(input) pads to a multiple of 4 and calls urlsafe_b64decode.
	script := `
import base64, binascii, json, sys
out = []
for s in json.load(sys.stdin):
    b = s.encode("latin-1")
    rem = len(b) % 4
    if rem > 0:
        b += b"=" * (4 - rem)
    try:
        out.append(base64.urlsafe_b64decode(b).hex())
    except (binascii.Error, ValueError):
        out.append(None)
json.dump(out, sys.stdout)
`
	in, _ := json.Marshal(inputs)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var want []*string
	if err := json.Unmarshal(outb, &want); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for i, s := range inputs {
		if want[i] == nil {
			continue // Python raises; reading something more is allowed
		}
		compared++
		got := fmt.Sprintf("%x", credentials.AppendLenientBase64(nil, latin1(s)))
		if got != *want[i] {
			t.Errorf("AppendLenientBase64(%q) = %s; Python %s", s, got, *want[i])
		}
	}
	if compared < 100 {
		t.Fatalf("only %d inputs compared", compared)
	}
	// And a whole segment is read through ReadSegment.
	var refs Refs
	seg := base64.RawURLEncoding.EncodeToString([]byte(`{"status":{"status_list":{"idx":1,"uri":"a"}}}`))
	refs.ReadSegment(seg + "==")
	if got := refsOf(&refs); len(got) != 1 || got[0] != (Ref{"a", 1}) {
		t.Fatalf("ReadSegment = %v", got)
	}
}

func latin1(s string) string {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}

// FuzzRefs: Refs never panics, keeps at most MaxRefs references, and whenever encoding/json
// reads one status.status_list {idx, uri} from the input, Refs finds that reference.
func FuzzRefs(f *testing.F) {
	f.Add([]byte(`{"status":{"status_list":{"idx":0,"uri":"https://example.com/statuslists/1"}}}`))
	f.Add([]byte(`{"status":{"status_list":{"idx":1e2,"uri":"a","idx":-1}},"status":"x"}`))
	f.Add([]byte("\xff\xfe{\x00}\x00"))
	f.Add([]byte(`{"a":[[[{"b":"\ud800"}]]],"status":{"status_list":{"uri":"\u00e9","idx":3}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Refs
		r.ReadJSON(b)
		if r.Len() > MaxRefs {
			t.Fatalf("%d refs", r.Len())
		}
		var ref struct {
			Status struct {
				StatusList struct {
					Idx *uint64 `json:"idx"`
					URI *string `json:"uri"`
				} `json:"status_list"`
			} `json:"status"`
		}
		if json.Unmarshal(b, &ref) != nil || ref.Status.StatusList.Idx == nil || ref.Status.StatusList.URI == nil {
			return
		}
		if hasCaseVariants(b) || !utf8.Valid(b) {
			return // encoding/json matches "STATUS" to status and replaces invalid UTF-8; Python and we do not
		}
		want := Ref{URI: *ref.Status.StatusList.URI, Idx: *ref.Status.StatusList.Idx}
		if !slices.Contains(refsOf(&r), want) && !r.Overflow {
			t.Fatalf("%q: refs %v lack %v", b, refsOf(&r), want)
		}
	})
}

// hasCaseVariants reports a member name that encoding/json would fold onto one we read.
func hasCaseVariants(b []byte) bool {
	for _, n := range []string{"status", "status_list", "idx", "uri"} {
		if bytes.Contains(bytes.ToLower(b), []byte(n)) && bytes.Count(b, []byte(n)) != bytes.Count(bytes.ToLower(b), []byte(n)) {
			return true
		}
	}
	return bytes.Contains(b, []byte(`\u`)) // escaped names may fold too
}
