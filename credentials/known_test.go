package credentials

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// FuzzKnownValueIsDiscovery: a Scanner that remembers the header values it read gives, for
// every request of a sequence, the result a new Scanner (which remembers nothing) gives for
// that request alone: the same candidates in the same order, the same selections, the same
// ambiguity. The sequence repeats values, as clients do, among requests whose other headers
// carry candidates of their own (before the value or after it), the same token twice, or a
// variant of the header's name. Known ids name tokens: one id is always the same token, and
// the filter finds the id from the candidate that is the selected token's payload.
func FuzzKnownValueIsDiscovery(f *testing.F) {
	f.Add(uint64(1), "eyJhbGciOiJIUzI1NiJ9", "eyJqdGkiOiJ4In0", "c2lnbmF0dXJlLXNpZ25hdHVyZQ", "x.y.z")
	f.Add(uint64(2), "h", "p", "s", "a.b.c.d.e")
	f.Add(uint64(3), "h.i", "p", "sssssssssssssssssssss", "")
	f.Add(uint64(4), "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa.aaaa.a")
	f.Add(uint64(5), "eyJ", "e30", strings.Repeat("A", 40), "%2E.%2e")
	cfg := DefaultConfig()
	cfg.Locations = []Location{LocationHeaders, LocationCookies, LocationQueryString}
	kinds := [2]bool{true, true}
	f.Fuzz(func(t *testing.T, seed uint64, header, payload, sig, other string) {
		r := rand.New(rand.NewPCG(seed, 7))
		tok := header + "." + payload + "." + sig
		values := []string{
			"Bearer " + tok,
			"Bearer " + header + "." + payload + "." + strings.ToUpper(sig), // another signature
			"Bearer " + tok + "." + other,
			"Bearer " + other,
			other,
			"Bearer  " + tok,
			"bearer " + tok,
			"Bearer " + tok + ", Basic " + other,
		}
		paths := []string{"/", "/p?jwt=" + tok, "/p?x=" + other, "/" + header + "." + payload + ".x"}
		remembering := NewScanner(&cfg, kinds, "")
		tokens := map[uint64]string{}
		for range 12 {
			headers := [][2]string{{":path", pick(r, paths...)}, {":method", "GET"}}
			for range r.IntN(3) {
				headers = append(headers, [2]string{pick(r, "authorization", "authorization", "cookie", "x_authorization"), pick(r, values...)})
			}
			if r.IntN(4) == 0 {
				headers = append(headers, [2]string{"cookie", "access_token_cookie=" + pick(r, values...)})
			}
			sameAsDiscovery(t, headers, remembering.Scan(headers, nil), NewScanner(&cfg, kinds, "").Scan(headers, nil), tokens)
		}
	})
}

// sameAsDiscovery fails t unless got, a remembering Scanner's result for headers, is want, a
// new Scanner's, but for the Known ids; and unless every id names one token over the test
// (ids) and is found from the candidate that is the selected payload's own view (not one an
// earlier header gave with the same bytes). It returns how many selections carry an id.
func sameAsDiscovery(t *testing.T, headers [][2]string, got, want *Result, ids map[uint64]string) int {
	t.Helper()
	if !slices.Equal(got.Candidates, want.Candidates) || got.Ambiguous != want.Ambiguous {
		t.Fatalf("%q: candidates %q, ambiguous %q; discovery alone: %q, %q", headers, got.Candidates, got.Ambiguous, want.Candidates, want.Ambiguous)
	}
	n := 0
	for k := range got.Selected {
		g, w := got.Selected[k], want.Selected[k]
		g.Known, w.Known = 0, 0
		if g != w {
			t.Fatalf("%q: selection %d %+v; discovery alone: %+v", headers, k, g, w)
		}
		sel := &got.Selected[k]
		if sel.Known == 0 {
			continue
		}
		n++
		if prev, ok := ids[sel.Known]; ok && prev != sel.Token {
			t.Fatalf("id %d names %q and %q", sel.Known, prev, sel.Token)
		}
		ids[sel.Known] = sel.Token
		for _, c := range got.Candidates {
			if len(c) == len(sel.Payload) && unsafe.StringData(c) == unsafe.StringData(sel.Payload) && got.KnownOf(c) != sel.Known {
				t.Fatalf("%q: the payload's candidate leads to id %d, not %d", headers, got.KnownOf(c), sel.Known)
			}
		}
	}
	return n
}

// TestKnownValueIDs: a value read again keeps its id; another value, even one that takes its
// slot, gets a new one; values too short or too long to remember get none.
func TestKnownValueIDs(t *testing.T) {
	cfg := DefaultConfig()
	s := NewScanner(&cfg, [2]bool{true, false}, "")
	known := func(v string) uint64 {
		res := s.Scan([][2]string{{":path", "/"}, {"authorization", v}}, nil)
		return res.Selected[Access].Known
	}
	a := "Bearer eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJhIn0.c2lnbmF0dXJl"
	b := "Bearer eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJiIn0.c2lnbmF0dXJl"
	idA := known(a)
	if idA == 0 || known(strings.Clone(a)) != idA {
		t.Fatalf("a: ids %d then %d; want the same, not 0", idA, known(a))
	}
	idB := known(b)
	if idB == 0 || idB == idA {
		t.Fatalf("b: id %d; a's is %d", idB, idA)
	}
	// Fill every slot with other values: a, read again, is a new value to the table.
	for i := range 4 * knownSlots {
		known("Bearer eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0." + strings.Repeat("s", 20) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)))
	}
	if id := known(a); id == idA || id == 0 {
		t.Fatalf("a after its slot was taken: id %d; want a new one (was %d)", id, idA)
	}
	if id := known("Bearer a.b.c"); id != 0 {
		t.Fatalf("a value under %d bytes: id %d", knownMinLen, id)
	}
	if id := known("Bearer a." + strings.Repeat("p", knownMaxLen) + ".c"); id != 0 {
		t.Fatalf("a value over %d bytes: id %d", knownMaxLen, id)
	}
}

// TestKnownValuesCollideAndReplayAtTheBound: two values that share a slot, read in turn
// and together (two Authorization headers), and known values replayed after a request
// target holding 30 candidates (the bound is 32), scan as discovery alone does.
func TestKnownValuesCollideAndReplayAtTheBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Locations = []Location{LocationHeaders, LocationCookies, LocationQueryString}
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	a := "Bearer h.cGF5bG9hZA.c2lnbmF0dXJlLWE"
	var b string
	for i := 0; ; i++ {
		if b = fmt.Sprintf("Bearer h.cGF5bG9hZA.sig-%08d-xyz", i); s.known.slot(b) == s.known.slot(a) {
			break
		}
	}
	many := "/p?"
	for i := range 30 {
		many += fmt.Sprintf("x%d=a.p%d.c&", i, i)
	}
	paths := []string{"/", many, "/q?jwt=h.cGF5bG9hZA.zzz"}
	ids := map[uint64]string{}
	replayed := 0
	for i := range 300 {
		headers := [][2]string{{":path", paths[i%3]}, {"authorization", []string{a, b, a + ".d.e", "Bearer x.1.2.3.4.5.6.y"}[i*7%4]}}
		if i%5 == 0 {
			headers = append(headers, [2]string{"authorization", []string{a, b}[i%2]})
		}
		got, want := s.Scan(headers, nil), NewScanner(&cfg, [2]bool{true, true}, "").Scan(headers, nil)
		if sameAsDiscovery(t, headers, got, want, ids) > 0 && paths[i%3] == many {
			replayed++
		}
	}
	if replayed == 0 {
		t.Fatal("no known value was replayed after the 30 candidates")
	}
}

// TestOnlyTokenValuesAreRemembered: values that are not "<header_type> <token>" with a
// candidate (Basic credentials, a signature scheme's value, a bare token when header_type is
// empty) are neither kept nor copied: a request carrying one allocates nothing.
func TestOnlyTokenValuesAreRemembered(t *testing.T) {
	cfg := DefaultConfig()
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	sigv4 := make([]string, 300)
	for i := range sigv4 {
		sigv4[i] = fmt.Sprintf("AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=%064x", i)
	}
	headers := [][2]string{{":path", "/"}, {"authorization", ""}}
	i := 0
	if n := testing.AllocsPerRun(300, func() {
		headers[1][1] = sigv4[i%len(sigv4)]
		i++
		s.Scan(headers, nil)
	}); n != 0 {
		t.Errorf("a request with a new SigV4 value: %.1f allocations", n)
	}
	for _, v := range []string{"Basic dXNlcjpwYXNzd29yZA==", "Bearer no-dots-in-this-one", "Bearer a.b.c trailing", sigv4[0]} {
		headers[1][1] = v
		s.Scan(headers, nil)
		if res := s.Scan(headers, nil); res.Selected[Access].Known != 0 {
			t.Errorf("%q is remembered", v)
		}
	}
	for _, sl := range s.known.slots {
		if len(sl.text) != 0 {
			t.Errorf("remembered %q", sl.text)
		}
	}
	bare := cfg
	bare.HeaderType = ""
	s = NewScanner(&bare, [2]bool{true, true}, "")
	headers[1][1] = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl"
	s.Scan(headers, nil)
	if res := s.Scan(headers, nil); res.Selected[Access].Known != 0 {
		t.Error("a bare token (header_type empty) is remembered")
	}
}

// TestValuesTakingTurnsAllocateNothing: a working set of tokens larger than the table makes
// values take turns in their slots; once each slot's buffer has grown, that allocates
// nothing (a turn costs a copy, not an allocation and the collection it brings).
func TestValuesTakingTurnsAllocateNothing(t *testing.T) {
	cfg := DefaultConfig()
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	values := make([]string, 4*knownSlots)
	for i := range values {
		values[i] = fmt.Sprintf("Bearer eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ%06d.c2lnbmF0dXJl%06d", i, i)
	}
	headers := [][2]string{{":path", "/"}, {"authorization", ""}}
	for _, v := range values { // warm: every slot's buffer grown
		headers[1][1] = v
		s.Scan(headers, nil)
	}
	i, remembered := 0, uint64(0)
	if n := testing.AllocsPerRun(2000, func() {
		headers[1][1] = values[(i*7)%len(values)]
		i++
		remembered = s.Scan(headers, nil).Selected[Access].Known
	}); n != 0 {
		t.Fatalf("%.1f allocations per request", n)
	}
	if remembered == 0 {
		t.Fatal("the values are not remembered")
	}
}
