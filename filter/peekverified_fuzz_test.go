package filter

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// FuzzPeekReadsWhatVerifierAccepts: whatever payload jwtverify accepts, the lenient reader
// the revocation check uses (credentials.Peeked) must see the same jti, sub and iss, and an iat
// no later, or the list is asked about another token than the one the app receives. Its seeds
// hold the two differences it was written for (a claim nested past 64, a sub of -0).
func FuzzPeekReadsWhatVerifierAccepts(f *testing.F) {
	times := `"iat":1766999940,"nbf":1766999940,"exp":1767000900`
	for _, s := range []string{
		`{"jti":"a","sub":"u",` + times + `}`,
		`{"x":[[[1]]],"jti":"a","sub":"u",` + times + `}`,
		`{"x":{"y":"\u0022}"},"j\u0074i":"a","sub":-0,` + times + `}`,
		`{"x":"\ud800","jti":"a\ud83d\ude00","sub":12,` + times + `}`,
		`{"x":1.5e3,"y":-0.0,"z":true,"w":null,"jti":"a",` + times + `}`,
		`{"x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `,"jti":"a",` + times + `}`,
		`{"x":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat("}", 70) + `,"jti":"a",` + times + `}`,
		`{"iat":1766999940.9,"jti":"a","sub":"u","exp":1767000900}`,
		`{"iat":1.7669999409e9,"jti":"a","sub":"u","exp":1767000900}`,
	} {
		f.Add(s)
	}
	v, err := jwtverify.New(&jwtverify.KeySet{}, jwtverify.Options{Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	var c jwtverify.Claims
	var pk credentials.Peeked
	f.Fuzz(func(t *testing.T, payload string) {
		seg := base64.RawURLEncoding.EncodeToString([]byte(payload))
		if err := v.VerifyPayload(seg, &c); err != nil || !c.HasJTI || len(c.JTI) == 0 {
			return
		}
		pk.Peek(seg)
		has := func(vs *credentials.Values, s string) bool {
			for i := range vs.Len() {
				if vs.At(i) == s {
					return true
				}
			}
			return false
		}
		if !has(&pk.JTI, string(c.JTI)) {
			t.Fatalf("jwtverify accepts jti %q; revocation reads jtis %v\npayload %q", c.JTI, vals(&pk.JTI), payload)
		}
		if c.HasSub && !has(&pk.Sub, string(c.Sub)) {
			t.Fatalf("jwtverify accepts sub %q; revocation reads subs %v\npayload %q", c.Sub, vals(&pk.Sub), payload)
		}
		if c.HasIss && !has(&pk.Iss, string(c.Iss)) {
			t.Fatalf("jwtverify accepts iss %q; revocation reads %v\npayload %q", c.Iss, vals(&pk.Iss), payload)
		}
		if c.HasIat && !pk.IatUnreadable && !slices.ContainsFunc(pk.Iat[:pk.NIat], func(x int64) bool { return x <= c.Iat }) {
			t.Fatalf("jwtverify iat %d; revocation reads %v\npayload %q", c.Iat, pk.Iat[:pk.NIat], payload)
		}
	})
}

func vals(v *credentials.Values) []string {
	var out []string
	for i := range v.Len() {
		out = append(out, strconv.Quote(v.At(i)))
	}
	return out
}
