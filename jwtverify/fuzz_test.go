package jwtverify_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The fuzz input's mode byte:
//
//	bits 0-1  0: the signature is the fuzzed bytes; 1, 2: header.payload is signed with a real
//	          key of the header's algorithm (so mutations reach the claim checks);
//	          3: the header bytes are the whole token text (splitting and base64)
//	bit 2     configuration: 0 plain (no aud, no iss, no leeway); 1 strict (aud "api",
//	          iss "https://issuer", leeway 1.5s)
//	bits 3-7  which of the algorithm's signers signs (a named, unnamed or pinned key)
const (
	modeRawSig  = 0
	modeSigned  = 1
	modeRawText = 3
	modeStrict  = 4
)

var fuzzSetup = sync.OnceValues(func() ([2]pair, []signer) {
	tb := &testing.T{}
	plain, signers := referenceSetup(tb, "", "", 0)
	strict, _ := referenceSetup(tb, "api", "https://issuer", 1500*time.Millisecond)
	return [2]pair{plain, strict}, signers
})

// fuzzToken builds the token a fuzz input stands for.
func fuzzToken(t testing.TB, signers []signer, header, payload, sig []byte, mode uint8) string {
	switch mode & 3 {
	case modeRawText:
		return string(header)
	case modeRawSig:
		return b64(header) + "." + b64(payload) + "." + b64(sig)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(header, &h)
	var able []signer
	for _, s := range signers {
		if slices.Contains(s.algs, h.Alg) {
			able = append(able, s)
		}
	}
	alg := h.Alg
	if len(able) == 0 {
		alg, able = "HS256", signers[:1]
	}
	s := able[int(mode>>3)%len(able)]
	input := b64(header) + "." + b64(payload)
	out, err := method(alg).Sign(input, s.key)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + b64(out)
}

func addSeeds(f *testing.F, signers []signer) {
	now := testNow.Unix()
	for _, s := range signers {
		for _, alg := range s.algs {
			h := fmt.Sprintf(`{"alg":%q,"typ":"JWT"}`, alg)
			if s.kid != "" {
				h = fmt.Sprintf(`{"alg":%q,"kid":%q}`, alg, s.kid)
			}
			c := fmt.Sprintf(`{"jti":"j-%s","sub":"u","iss":"https://issuer","aud":["api"],"type":"access","iat":%d,"nbf":%d,"exp":%d}`, alg, now, now, now+900)
			f.Add([]byte(h), []byte(c), []byte(nil), uint8(modeSigned))
			f.Add([]byte(h), []byte(c), []byte(nil), uint8(modeSigned|modeStrict))
			f.Add([]byte(h), []byte(c), []byte("not a signature"), uint8(modeRawSig))
		}
	}
	hs := `{"alg":"HS256"}`
	for _, c := range []string{
		`{"jti":"a","sub":42,"exp":` + fmt.Sprint(now+60) + `}`,
		`{"jti":"a","sub":-0,"aud":"api","iss":"https://issuer"}`,
		`{"jti":"a","sub":1.5}`, `{"jti":"a","sub":true}`, `{"jti":7}`, `{"jti":null}`,
		`{"jti":"` + strings.Repeat("x", 257) + `"}`,
		`{"JTI":"a","Sub":"b","EXP":1}`, `{"\u006a\u0074\u0069":"a"}`,
		`{"jti":"a","jti":"b"}`, `{"x":1,"x":2}`,
		"{\"jti\":\"\xff\"}", "{\"x\":\"\xc3\"}", `{"jti":"\ud800"}`, `{"x":"\udc00"}`, `{"jti":"\ud83d\ude00"}`,
		`null`, `[]`, `{}`, ` { } `, `{"a":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`,
		`{"exp":0}`, `{"exp":-0.0}`, `{"exp":0.5}`, `{"exp":5e18}`, `{"exp":-5e18}`, `{"nbf":1e19}`, `{"iat":-1e19}`,
		`{"exp":1e400}`, `{"x":1e400}`, `{"x":1e-400}`, `{"exp":"1"}`, `{"nbf":true}`, `{"iat":null}`,
		fmt.Sprintf(`{"exp":%d.999999}`, now-2), fmt.Sprintf(`{"nbf":%d.5}`, now+2), fmt.Sprintf(`{"iat":%d}`, now+2),
		`{"aud":""}`, `{"aud":[""]}`, `{"aud":["","api"]}`, `{"aud":{}}`, `{"aud":0.0}`, `{"aud":["api",1]}`, `{"aud":5}`,
		`{"iss":1}`, `{"iss":""}`, `{"type":"refresh"}`, `{"type":["refresh"]}`,
	} {
		f.Add([]byte(hs), []byte(c), []byte(nil), uint8(modeSigned))
		f.Add([]byte(hs), []byte(c), []byte(nil), uint8(modeSigned|modeStrict))
	}
	for _, h := range []string{
		`{"alg":"HS256","crit":["exp"],"exp":1}`, `{"alg":"HS256","crit":["b64"],"b64":true}`, `{"alg":"HS256","crit":[]}`,
		`{"alg":"HS256","b64":false}`, `{"alg":"HS256","kid":1}`, `{"alg":"HS256","kid":null}`, `{"alg":"HS256","kid":"h1"}`,
		`{"alg":"HS256","alg":"HS256"}`, `{"alg":"HS384","kid":"p"}`, `{"alg":"HS256","kid":"p"}`, `{"alg":"none"}`,
		`{"alg":"HS\u0032\u0035\u0036"}`, "{\"alg\":\"HS256\",\"x\":\"\xff\"}", `null`, `{"alg":"HS256"} `,
	} {
		f.Add([]byte(h), []byte(`{"jti":"a"}`), []byte(nil), uint8(modeSigned))
	}
	for _, text := range []string{"", "a", "a.b", "a.b.c", "a.b.c.d", "..", "e30.e30.", "eyJhbGciOiJIUzI1NiJ9.e30\n.AA", "eyJhbGciOiJIUzI1NiJ9.e30=.AA"} {
		f.Add([]byte(text), []byte(nil), []byte(nil), uint8(modeRawText))
	}
}

// FuzzVerifyMatchesGolangJWT: whatever the token, if we accept it golang-jwt accepts it with
// the same claims; if golang-jwt accepts it and we refuse, the reason is one of the
// deliberate differences, confirmed on the token itself (see pair.check).
func FuzzVerifyMatchesGolangJWT(f *testing.F) {
	pairs, signers := fuzzSetup()
	addSeeds(f, signers)
	f.Fuzz(func(t *testing.T, header, payload, sig []byte, mode uint8) {
		token := fuzzToken(t, signers, header, payload, sig, mode)
		pairs[(mode&modeStrict)>>2].check(t, token)
	})
}
