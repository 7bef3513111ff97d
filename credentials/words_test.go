package credentials

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/internal/words"
)

// TestRunWordMatchesTheTable checks the eight-at-a-time classification against isRunByte for
// every byte value in every position, among neighbours of every kind.
func TestRunWordMatchesTheTable(t *testing.T) {
	for _, fill := range []byte{'A', '.', ' ', 0x80, 0xff, 0, '9'} {
		for pos := 0; pos < 8; pos++ {
			for v := 0; v < 256; v++ {
				var b [8]byte
				for i := range b {
					b[i] = fill
				}
				b[pos] = byte(v)
				checkWord(t, b)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		var b [8]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		checkWord(t, b)
	}
}

func checkWord(t *testing.T, b [8]byte) {
	t.Helper()
	run, dot, plus := runWord(words.Load64(string(b[:]), 0))
	for i, c := range b {
		if got := run>>(8*i+7)&1 == 1; got != isRunByte(c) {
			t.Fatalf("runWord(%q): byte %d (%#x) run = %v; want %v", b, i, c, got, isRunByte(c))
		}
		if got := dot>>(8*i+7)&1 == 1; got != (c == '.') {
			t.Fatalf("runWord(%q): byte %d (%#x) dot = %v; want %v", b, i, c, got, c == '.')
		}
		if got := plus>>(8*i+7)&1 == 1; got != (c == '+') {
			t.Fatalf("runWord(%q): byte %d (%#x) plus = %v; want %v", b, i, c, got, c == '+')
		}
	}
	if run&^msb != 0 || dot&^msb != 0 || plus&^msb != 0 {
		t.Fatalf("runWord(%q) = %#x, %#x: bits outside the high ones", b, run, dot)
	}
}

// TestScanRunMatchesByteLoop compares scanRun with the plain byte loop on generated text of
// token characters, dots and stoppers, from every start.
func TestScanRunMatchesByteLoop(t *testing.T) {
	const alphabet = "aZ09-_+/=..  %\x00\x80\xff\"\\,"
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var sb strings.Builder
		n := r.IntN(40)
		for range n {
			sb.WriteByte(alphabet[r.IntN(len(alphabet))])
			if r.IntN(3) == 0 { // long runs are the case the words are for
				sb.WriteString(strings.Repeat("x", r.IntN(20)))
			}
		}
		text := sb.String()
		for i := 0; i <= len(text); i++ {
			end, first, last, dots, plus := scanRun(text, i)
			wEnd, wFirst, wLast, wDots, wPlus := i, -1, -1, 0, false
			for ; wEnd < len(text) && isRunByte(text[wEnd]); wEnd++ {
				if text[wEnd] == '.' {
					if wFirst < 0 {
						wFirst = wEnd
					}
					wLast = wEnd
					wDots++
				}
				wPlus = wPlus || text[wEnd] == '+'
			}
			if end != wEnd || first != wFirst || last != wLast || dots != wDots || plus != wPlus {
				t.Fatalf("scanRun(%q, %d) = %d, %d, %d, %d, %v; want %d, %d, %d, %d, %v", text, i, end, first, last, dots, plus, wEnd, wFirst, wLast, wDots, wPlus)
			}
		}
	}
}

// TestSelectionPayloadIsTheTokensPayload holds Selection.Payload, where Scan fills it in, to
// what lies between the token's first and last dots, on generated requests; and checks that
// the common "Bearer <token>" header does fill it in.
func TestSelectionPayloadIsTheTokensPayload(t *testing.T) {
	between := func(tok string) string {
		first, last := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
		if first < 0 || last <= first {
			return ""
		}
		return tok[first+1 : last]
	}
	cfg := DefaultConfig()
	cfg.Locations = []Location{LocationHeaders, LocationCookies, LocationQueryString, LocationJSON}
	cfg.Validate("", func(f, format string, args ...any) { t.Fatalf(f+": "+format, args...) })
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	r := rand.New(rand.NewPCG(7, 8))
	filled := 0
	for i := range 5000 {
		g := genRequestFor(r)
		if i%2 == 0 {
			tok := strings.Repeat("eyJhbGciOiJIUzI1NiJ9", 1+r.IntN(3)) + "." + strings.Repeat("eyJqdGkiOiJ4In0", 1+r.IntN(9)) + "." + strings.Repeat("c2ln", r.IntN(20))
			g.headers = append(g.headers, [2]string{"authorization", "Bearer " + tok})
		}
		res := s.Scan(g.headers, g.body)
		for k := range res.Selected {
			sel := &res.Selected[k]
			if sel.Payload == "" {
				continue
			}
			filled++
			if want := between(sel.Token); sel.Payload != want {
				t.Fatalf("request %v: Payload %q; the token %q has %q", g.headers, sel.Payload, sel.Token, want)
			}
		}
	}
	if filled < 2000 {
		t.Errorf("Payload filled in %d times in 5000 requests, half of them with a bearer token", filled)
	}
}
