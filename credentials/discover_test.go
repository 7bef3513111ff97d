package credentials

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// genPayloadJSON makes claim sets the way issuers and attackers might write them: escapes in
// names and values, repeated names, integer and float values, a BOM, odd white space.
func genPayloadJSON(r *rand.Rand) string {
	names := []string{"jti", "sub", "iss", "iat", "exp", "JTI", `j\u0074i`, `\u0073ub`, "type", "nested"}
	values := []string{`"abc"`, `"x-1"`, `"\u00e9t\u00e9"`, `"a\"b"`, `"\ud83d\ude00"`, `12`, `-7`, `1.5`, `1e3`,
		`"123"`, `null`, `true`, `{"jti":"inner"}`, `[1,"jti"]`, `""`, `"  42 "`}
	var members []string
	for n := r.IntN(6); n > 0; n-- {
		members = append(members, fmt.Sprintf(`%s"%s"%s:%s%s`, pick(r, "", " ", "\n"), pick(r, names...),
			pick(r, "", " "), pick(r, "", " ", "\t"), pick(r, values...)))
	}
	doc := "{" + strings.Join(members, ",") + "}"
	switch r.IntN(10) {
	case 0:
		doc = "\ufeff" + doc
	case 1:
		doc = " \n" + doc
	case 2:
		doc = doc[:len(doc)/2] // cut short
	}
	return doc
}

// spell encodes payload bytes in the spellings a lenient base64 decoder accepts.
func spell(r *rand.Rand, b []byte) string {
	s := base64.RawURLEncoding.EncodeToString(b)
	switch r.IntN(5) {
	case 0:
		s = base64.URLEncoding.EncodeToString(b) // padded
	case 1:
		s = base64.StdEncoding.EncodeToString(b) // '+' and '/', padded
	case 2:
		if len(s) > 2 { // junk PyJWT skips
			i := r.IntN(len(s))
			s = s[:i] + pick(r, "!", "~", "*", " ") + s[i:]
		}
	}
	return s
}

type pyPeek struct {
	OK     bool
	Claims map[string]any
}

// TestPeekFindsWhatPyJWTReads requires that every jti, sub, iss and iat PyJWT would hand the
// application from a payload segment is among the values Peek reads from it.
func TestPeekFindsWhatPyJWTReads(t *testing.T) {
	ref := startReference(t, "testdata/pyjwt_peek.py", "jwt")
	r := rand.New(rand.NewPCG(3, 4))
	n, decoded := 3000, 0
	if testing.Short() {
		n = 300
	}
	var p Peeked
	for i := 0; i < n; i++ {
		seg := spell(r, []byte(genPayloadJSON(r)))
		var want pyPeek
		ref.ask(map[string]string{"payload": latin1(seg)}, &want)
		p.Peek(seg)
		if !want.OK {
			continue
		}
		decoded++
		if !p.Object {
			t.Errorf("payload %q: PyJWT reads an object, Peek does not", seg)
			continue
		}
		for name, v := range want.Claims {
			var ok bool
			switch name {
			case "jti", "sub", "iss":
				vals := map[string]*Values{"jti": &p.JTI, "sub": &p.Sub, "iss": &p.Iss}[name]
				ok = containsValue(vals, v) || name == "iss" && !isString(v) || isFloat(v)
			case "iat":
				ok = p.IatUnreadable || containsIat(&p, v)
			}
			if !ok && !p.Overflow {
				t.Errorf("payload %q: PyJWT reads %s=%v; Peek read jti=%v sub=%v iss=%v iat=%v unreadable=%v",
					seg, name, v, p.JTI.v[:p.JTI.n], p.Sub.v[:p.Sub.n], p.Iss.v[:p.Iss.n], p.Iat[:p.NIat], p.IatUnreadable)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d of %d generated payloads decode in PyJWT; Peek read every claim of each", decoded, n)
	if decoded < n/4 {
		t.Errorf("only %d payloads decoded: the generator no longer tests Peek", decoded)
	}
}

func isString(v any) bool { _, ok := v.(string); return ok }

// isFloat reports a non-integral number: Peek keeps numbers as their JSON text, which for a
// float jti or sub is not what Python's str() prints. No issuer makes such identifiers.
func isFloat(v any) bool {
	f, ok := v.(float64)
	return ok && f != float64(int64(f))
}

func containsValue(vals *Values, v any) bool {
	var want string
	switch x := v.(type) {
	case string:
		want = x
	case float64:
		want = strconv.FormatInt(int64(x), 10)
	}
	return slices.Contains(vals.v[:vals.n], want)
}

func containsIat(p *Peeked, v any) bool {
	var want int64
	switch x := v.(type) {
	case float64:
		want = int64(x)
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return false // PyJWT would reject it at validation
		}
		want = n
	}
	return slices.Contains(p.Iat[:p.NIat], want)
}

// wrapToken puts token into a request the way an attacker might, in one of the containers
// discovery reads, possibly encoded as that container's decoder undoes.
func wrapToken(container, encoding byte, prefix, suffix, token string) (headers [][2]string, body []byte) {
	enc := token
	switch encoding % 6 {
	case 1:
		enc = strings.ReplaceAll(token, ".", "%2E")
	case 2:
		enc = strings.ReplaceAll(token, ".", "%252E") // decoded twice by some frameworks
	case 3:
		enc = `"` + strings.ReplaceAll(token, ".", `\056`) + `"` // werkzeug's octal escapes
	case 4:
		enc = strings.ReplaceAll(token, ".", `\u002e`) // JSON escapes
	case 5:
		var b strings.Builder
		for i := 0; i < len(token); i++ {
			fmt.Fprintf(&b, "%%%02X", token[i])
		}
		enc = b.String()
	}
	v := prefix + enc + suffix
	headers = [][2]string{{":path", "/"}, {":method", "POST"}}
	switch container % 5 {
	case 0:
		headers = append(headers, [2]string{"authorization", v})
	case 1:
		headers = append(headers, [2]string{"x-token", v})
	case 2:
		headers = append(headers, [2]string{"cookie", v})
	case 3:
		headers[0][1] = "/p?" + v
	case 4:
		headers = append(headers, [2]string{"content-type", "application/json"})
		body = []byte(v)
	}
	return headers, body
}

// decodable reports whether the container's decoders in discovery undo the encoding.
func decodable(container, encoding byte) bool {
	switch encoding % 6 {
	case 1, 2, 5:
		return container%5 >= 2 // cookies, the request target and bodies are percent-decoded
	case 3:
		return container%5 == 2
	case 4:
		return container%5 == 4
	}
	return true
}

// FuzzDiscoveryFindsThePayload: whatever surrounds a token in any container discovery reads,
// and however that container encodes it, the token's payload is a candidate (or the request
// is refused for holding too many). This is the lemma the filter's promise rests on: the
// signed header and payload cannot change, so their bytes between the dots are always found.
func FuzzDiscoveryFindsThePayload(f *testing.F) {
	f.Add(byte(0), byte(0), "Bearer ", "", "h", "p", "s")
	f.Add(byte(0), byte(0), "Bearer\u00a0", "\u0085", "eyJhbGciOiJIUzI1NiJ9", "eyJqdGkiOiJ4In0", "c2ln==AAAA")
	f.Add(byte(2), byte(3), "a=1; access_token_cookie=", "; b=2", "h", "p", "s")
	f.Add(byte(3), byte(1), "%6Awt=", "&x=1", "h", "p", "s")
	f.Add(byte(4), byte(4), `{"access_token":"`, `"}`, "h", "p", "s!!")
	f.Add(byte(1), byte(0), "x.y.", ".z", "h.i", "p", "s.t")
	cfg := DefaultConfig()
	cfg.Locations = []Location{LocationHeaders, LocationCookies, LocationQueryString, LocationJSON}
	cfg.HeaderName = "X-Token"
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	f.Fuzz(func(t *testing.T, container, encoding byte, prefix, suffix, header, payload, sig string) {
		if payload == "" || strings.ContainsFunc(payload, func(r rune) bool { return r > 0x7f || !isRunByte(byte(r)) || r == '.' }) {
			t.Skip() // a payload is base64url text: dot-free run characters
		}
		if !decodable(container, encoding) {
			encoding = 0
		}
		if (strings.HasSuffix(prefix, `\`) || strings.HasSuffix(header, `\`)) && (encoding%6 == 3 || encoding%6 == 4) {
			t.Skip() // the escape would be escaped: the app sees no dot either
		}
		headers, body := wrapToken(container, encoding, prefix, suffix, header+"."+payload+"."+sig)
		res := s.Scan(headers, body)
		if slices.Contains(res.Candidates, payload) {
			return
		}
		if res.Ambiguous == s.msgs.tooMany {
			return
		}
		t.Fatalf("payload %q not found in %v (body %q); candidates %q", payload, headers, body, res.Candidates)
	})
}

// FuzzTextWithoutDotsHoldsNoPayload: text that mayHoldPayload passes over (no '.', and no
// escape that could decode to one) yields no candidate in any of its decoded forms, so
// discover skipping it loses nothing.
func FuzzTextWithoutDotsHoldsNoPayload(f *testing.F) {
	f.Add("/bench")
	f.Add("/a+b?x=1&y=2+3")
	f.Add("a=1; b=\"c d\"")
	f.Add(`{"k":"v w"}`)
	f.Add("%2E.%252e\\056\\u002e\x00")
	f.Add("x%2Ey%2Ez") // each escape alone decodes to dots: caught if mayHoldPayload forgot it
	f.Add(`x\056y\056z`)
	f.Add(`x\u002ey\u002ez`)
	cfg := DefaultConfig()
	s := NewScanner(&cfg, [2]bool{true, true}, "")
	f.Fuzz(func(t *testing.T, text string) {
		if mayHoldPayload(text) {
			if !strings.ContainsAny(text, ".%\\\x00") {
				t.Fatalf("mayHoldPayload(%q) with none of its bytes", text)
			}
			return
		}
		s.Scan(nil, nil) // a clean result
		s.reserve([][2]string{{"", text}}, nil)
		s.discoverForms(text, formPercent|formBackslash|formJSON)
		if len(s.res.Candidates) != 0 || s.res.Ambiguous != "" {
			t.Fatalf("%q: candidates %q, ambiguous %q", text, s.res.Candidates, s.res.Ambiguous)
		}
	})
}
