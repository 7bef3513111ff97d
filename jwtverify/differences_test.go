package jwtverify_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// goDifferences are the deliberate differences from golang-jwt (docs/verifier.md): tokens
// golang-jwt accepts (MapClaims, WithStrictDecoding, WithLeeway, WithIssuedAt) and we refuse,
// each with the reason the differential fuzz test accepts for it.
var goDifferences = []struct {
	name, header, payload, reason string
}{
	{"unknown crit extension", `{"alg":"HS256","crit":["exp"],"exp":1}`, `{"jti":"a"}`, "crit"},
	{"crit not a list", `{"alg":"HS256","crit":"b64"}`, `{"jti":"a"}`, "crit"},
	{"b64 false", `{"alg":"HS256","b64":false}`, `{"jti":"a"}`, "b64"},
	{"kid not a string", `{"alg":"HS256","kid":1}`, `{"jti":"a"}`, "kid-type"},
	{"duplicate header member", `{"alg":"HS256","alg":"HS256"}`, `{"jti":"a"}`, "duplicate"},
	{"duplicate claim", `{"alg":"HS256"}`, `{"jti":"a","jti":"b"}`, "duplicate"},
	{"duplicate claim by escape", `{"alg":"HS256"}`, `{"jti":"a","\u006a\u0074\u0069":"b"}`, "duplicate"},
	{"jti not UTF-8", `{"alg":"HS256"}`, "{\"jti\":\"\xff\"}", "utf8"},
	{"other claim not UTF-8", `{"alg":"HS256"}`, "{\"jti\":\"a\",\"name\":\"\xc3\"}", "utf8"},
	{"header not UTF-8", "{\"alg\":\"HS256\",\"x\":\"\xe2\x82\"}", `{"jti":"a"}`, "utf8"},
	{"lone surrogate in jti", `{"alg":"HS256"}`, `{"jti":"\udc00"}`, "surrogate"},
	{"nested deeper than 256", `{"alg":"HS256"}`, `{"jti":"a","x":` + strings.Repeat("[", 256) + strings.Repeat("]", 256) + `}`, "depth"},
	{"payload null", `{"alg":"HS256"}`, `null`, "not-object"},
	{"exp 0", `{"alg":"HS256"}`, `{"jti":"a","exp":0}`, "exp-zero"},
	{"exp -0.0", `{"alg":"HS256"}`, `{"jti":"a","exp":-0.0}`, "exp-zero"},
	{"exp beyond 2^62", `{"alg":"HS256"}`, `{"jti":"a","exp":5e18}`, "date-range"},
	{"nbf before -2^62", `{"alg":"HS256"}`, `{"jti":"a","nbf":-5e18}`, "date-range"},
	{"sub a float", `{"alg":"HS256"}`, `{"jti":"a","sub":1.5}`, "sub-type"},
	{"sub a bool", `{"alg":"HS256"}`, `{"jti":"a","sub":true}`, "sub-type"},
	{"sub null", `{"alg":"HS256"}`, `{"jti":"a","sub":null}`, "sub-type"},
	{"jti a number", `{"alg":"HS256"}`, `{"jti":7}`, "jti-type"},
	{"jti longer than 256 bytes", `{"alg":"HS256"}`, `{"jti":"` + strings.Repeat("j", 257) + `"}`, "jti-length"},
}

func TestDifferencesFromGolangJWT(t *testing.T) {
	p, _ := referenceSetup(t, "", "", 0)
	k := testKeys()
	for _, d := range goDifferences {
		t.Run(d.name, func(t *testing.T) {
			token := signRaw(t, "HS256", k.hs, d.header, d.payload)
			if _, err := p.parser.ParseWithClaims(token, jwt.MapClaims{}, p.keyFn); err != nil {
				t.Fatalf("golang-jwt refuses it (%v): not a difference", err)
			}
			var c jwtverify.Claims
			err := p.ours.Verify(token, &c)
			if got := jwtverify.Reason(err); got != d.reason {
				t.Fatalf("Verify = %v (reason %q); want reason %q", err, got, d.reason)
			}
			p.check(t, token) // and the fuzz oracle confirms it on the token
		})
	}
}

// golang-jwt's RegisteredClaims, which the filter decoded claims into before, matches member
// names case-insensitively (encoding/json's struct rule): it reads "JTI" as the jti. We do
// not, as PyJWT and RFC 7519 do not (MapClaims does not either).
func TestNamesAreCaseSensitiveUnlikeRegisteredClaims(t *testing.T) {
	p, _ := referenceSetup(t, "", "", 0)
	token := signRaw(t, "HS256", testKeys().hs, `{"alg":"HS256"}`, `{"JTI":"revoked-jti","Sub":"u"}`)
	var rc jwt.RegisteredClaims
	if _, err := p.parser.ParseWithClaims(token, &rc, p.keyFn); err != nil || rc.ID != "revoked-jti" || rc.Subject != "u" {
		t.Fatalf("RegisteredClaims: %v, %+v", err, rc)
	}
	var c jwtverify.Claims
	if err := p.ours.Verify(token, &c); err != nil || c.HasJTI || c.HasSub {
		t.Fatalf("Verify = %v; claims %+v: want no jti and no sub", err, c)
	}
}

// The integer sub that flask-jwt-extended's examples issue (identity=user.id) is accepted
// and kept as its decimal text; golang-jwt's RegisteredClaims refuses the whole token.
func TestIntegerSubjectUnlikeRegisteredClaims(t *testing.T) {
	p, _ := referenceSetup(t, "", "", 0)
	token := signRaw(t, "HS256", testKeys().hs, `{"alg":"HS256"}`, `{"jti":"a","sub":1234}`)
	var rc jwt.RegisteredClaims
	if _, err := p.parser.ParseWithClaims(token, &rc, p.keyFn); err == nil {
		t.Fatal("RegisteredClaims accepted an integer sub")
	}
	var c jwtverify.Claims
	if err := p.ours.Verify(token, &c); err != nil || string(c.Sub) != "1234" || !c.SubIsNumber {
		t.Fatalf("Verify = %v, sub %q", err, c.Sub)
	}
	p.check(t, token)
}

// Time checks agree with golang-jwt's at and around every boundary, with a leeway that is
// not a whole number of seconds.
func TestTimeBoundariesMatchGolangJWT(t *testing.T) {
	p, _ := referenceSetup(t, "api", "https://issuer", 1500_000_000)
	sec := testNow.Unix()
	k := testKeys()
	for delta := int64(-4); delta <= 4; delta++ {
		for _, frac := range []string{"", ".0", ".25", ".5", ".75", ".999999"} {
			for _, claim := range []string{"exp", "nbf", "iat"} {
				payload := fmt.Sprintf(`{"jti":"a","aud":"api","iss":"https://issuer","%s":%d%s}`, claim, sec+delta, frac)
				p.check(t, signRaw(t, "HS256", k.hs, `{"alg":"HS256"}`, payload))
			}
		}
	}
}
