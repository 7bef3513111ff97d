package jwtverify_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// These tests run the real PyJWT and flask-jwt-extended (Debian's python3-jwt and
// python3-python-flask-jwt-extended) on the same tokens, through flask's own decode_token, so
// the app's order of checks and its messages are the reference.

// flaskDecode decodes each token as a flask-jwt-extended app would and reports the exception's
// text (PyJWT's message) and what flask sends in its body.
const flaskDecode = `
import json, sys
try:
    import jwt
    from flask import Flask
    from flask_jwt_extended import JWTManager, decode_token
    from jwt.exceptions import ExpiredSignatureError
except ImportError as e:
    print("missing: %s" % e, file=sys.stderr)
    sys.exit(3)
out = []
for case in json.load(sys.stdin):
    app = Flask("jwtverify")
    app.config["JWT_SECRET_KEY"] = case["secret"]
    app.config["JWT_ALGORITHM"] = "HS256"
    app.config["JWT_DECODE_LEEWAY"] = case["leeway"]
    if case["audience"]:
        app.config["JWT_DECODE_AUDIENCE"] = case["audience"]
    if case["issuer"]:
        app.config["JWT_DECODE_ISSUER"] = case["issuer"]
    JWTManager(app)
    with app.app_context():
        try:
            decode_token(case["token"])
            out.append({"ok": True})
        except ExpiredSignatureError as e:
            out.append({"ok": False, "pyjwt": str(e), "flask": "Token has expired"})
        except Exception as e:
            out.append({"ok": False, "pyjwt": str(e), "flask": str(e)})
print(json.dumps(out))
`

type flaskCase struct {
	Token    string `json:"token"`
	Secret   string `json:"secret"`
	Leeway   int    `json:"leeway"`
	Audience string `json:"audience"`
	Issuer   string `json:"issuer"`
}

type flaskResult struct {
	OK    bool   `json:"ok"`
	PyJWT string `json:"pyjwt"`
	Flask string `json:"flask"`
}

// python3 finds Debian's interpreter (the one python3-jwt installs into) before any other.
func python3(t *testing.T) string {
	if runtime.GOOS == "wasip1" {
		t.Skip("no processes on wasip1; these tests run natively")
	}
	for _, p := range []string{"/usr/bin/python3"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		skipOrFail(t, "python3 not found")
	}
	return p
}

// skipOrFail skips loudly outside CI; in CI (CI set) a missing PyJWT is a failure.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	msg := why + ": install Debian's python3-jwt and python3-python-flask-jwt-extended (apt-get install -y python3-jwt python3-python-flask-jwt-extended)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED, NOT RUN: " + msg)
}

func runFlask(t *testing.T, cases []flaskCase) []flaskResult {
	t.Helper()
	script := filepath.Join(t.TempDir(), "decode.py")
	if err := os.WriteFile(script, []byte(flaskDecode), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python3(t), script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		skipOrFail(t, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("python: %v: %s", err, stderr.String())
	}
	var res []flaskResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(cases) {
		t.Fatalf("python output %q: %v", out, err)
	}
	return res
}

type messageCase struct {
	name     string
	token    string
	audience string
	issuer   string
	prefix   bool // Python's json error detail differs: compare up to the first ": "
}

func messageCases(t *testing.T) []messageCase {
	k := testKeys()
	now := time.Now().Unix()
	hs := func(header, payload string) string { return signRaw(t, "HS256", k.hs, header, payload) }
	h := `{"alg":"HS256","typ":"JWT"}`
	claims := func(extra string) string {
		return fmt.Sprintf(`{"jti":"j","sub":"u","type":"access","iat":%d,"nbf":%d,"exp":%d%s}`, now-10, now-10, now+3600, extra)
	}
	good := hs(h, claims(""))
	p := strings.Split(good, ".")
	withHeader := func(header string) string { return hs(header, claims("")) }
	withPayload := func(payload string) string { return hs(h, payload) }
	return []messageCase{
		{name: "valid", token: good},
		{name: "one segment", token: "abc"},
		{name: "two segments", token: p[0] + "." + p[1]},
		{name: "four segments", token: good + ".x"},
		{name: "header base64", token: "e." + p[1] + "." + p[2]},
		{name: "payload base64", token: p[0] + ".e." + p[2]},
		{name: "signature base64", token: p[0] + "." + p[1] + ".e"},
		{name: "header not JSON", token: withHeader(`{"alg":"HS256"`), prefix: true},
		{name: "header not UTF-8", token: withHeader("{\"alg\":\"HS256\",\"x\":\"\xff\"}"), prefix: true},
		{name: "header an array", token: withHeader(`["HS256"]`)},
		{name: "header a string", token: withHeader(`"HS256"`)},
		{name: "kid a number", token: withHeader(`{"alg":"HS256","kid":7}`)},
		{name: "kid null", token: withHeader(`{"alg":"HS256","kid":null}`)},
		{name: "crit empty", token: withHeader(`{"alg":"HS256","crit":[]}`)},
		{name: "crit a string", token: withHeader(`{"alg":"HS256","crit":"b64"}`)},
		{name: "crit a number", token: withHeader(`{"alg":"HS256","crit":[5]}`)},
		{name: "crit unknown", token: withHeader(`{"alg":"HS256","crit":["exp"],"exp":1}`)},
		{name: "crit b64 absent", token: withHeader(`{"alg":"HS256","crit":["b64"]}`)},
		{name: "crit b64 true", token: withHeader(`{"alg":"HS256","crit":["b64"],"b64":true}`)},
		{name: "b64 false", token: withHeader(`{"alg":"HS256","b64":false}`)},
		{name: "payload not JSON", token: withPayload(`{"sub":"u",`), prefix: true},
		{name: "payload not UTF-8", token: withPayload("{\"sub\":\"\xc3\"}"), prefix: true},
		{name: "payload an array", token: withPayload(`["sub"]`)},
		{name: "payload null", token: withPayload(`null`)},
		{name: "alg none", token: b64([]byte(`{"alg":"none"}`)) + "." + p[1] + "."},
		{name: "alg not allowed", token: signRaw(t, "HS512", k.hs, `{"alg":"HS512"}`, claims(""))},
		{name: "alg missing", token: withHeader(`{"typ":"JWT"}`)},
		{name: "alg not a string", token: withHeader(`{"alg":1}`)},
		{name: "wrong secret", token: signRaw(t, "HS256", k.hsOther, h, claims(""))},
		{name: "payload before alg", token: b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`[]`)) + "."},
		{name: "iat in the future", token: withPayload(fmt.Sprintf(`{"sub":"u","iat":%d}`, now+3600))},
		{name: "iat not a number", token: withPayload(`{"sub":"u","iat":"soon"}`)},
		{name: "nbf in the future", token: withPayload(fmt.Sprintf(`{"sub":"u","nbf":%d}`, now+3600))},
		{name: "nbf not a number", token: withPayload(`{"sub":"u","nbf":"soon"}`)},
		{name: "iat before nbf", token: withPayload(fmt.Sprintf(`{"sub":"u","iat":%d,"nbf":"x"}`, now+3600))},
		{name: "exp not a number", token: withPayload(`{"sub":"u","exp":"soon"}`)},
		{name: "expired", token: withPayload(fmt.Sprintf(`{"sub":"u","exp":%d}`, now-3600))},
		{name: "aud missing", token: withPayload(`{"sub":"u"}`), audience: "api"},
		{name: "aud empty", token: withPayload(`{"sub":"u","aud":[]}`), audience: "api"},
		{name: "aud other", token: withPayload(`{"sub":"u","aud":["web"]}`), audience: "api"},
		{name: "aud one of", token: withPayload(`{"sub":"u","aud":["web","api"]}`), audience: "api"},
		{name: "aud a number", token: withPayload(`{"sub":"u","aud":5}`), audience: "api"},
		{name: "aud with a number", token: withPayload(`{"sub":"u","aud":["api",5]}`), audience: "api"},
		{name: "aud before expiry", token: withPayload(fmt.Sprintf(`{"sub":"u","aud":"web","exp":%d}`, now-3600)), audience: "api"},
		{name: "iss missing", token: withPayload(`{"sub":"u"}`), issuer: "https://issuer"},
		{name: "iss other", token: withPayload(`{"sub":"u","iss":"https://other"}`), issuer: "https://issuer"},
		{name: "iss before aud", token: withPayload(`{"sub":"u","iss":"x","aud":"web"}`), issuer: "https://issuer", audience: "api"},
	}
}

// Each failure has the message PyJWT raises for it, and the check that fails first is the one
// flask-jwt-extended reports.
func TestMessagesMatchPyJWT(t *testing.T) {
	cases := messageCases(t)
	in := make([]flaskCase, len(cases))
	for i, c := range cases {
		in[i] = flaskCase{Token: c.token, Secret: string(testKeys().hs), Audience: c.audience, Issuer: c.issuer}
	}
	res := runFlask(t, in)
	for i, c := range cases {
		var opts jwtverify.Options
		opts.Now = time.Now
		if c.audience != "" {
			opts.Audiences = []string{c.audience}
		}
		if c.issuer != "" {
			opts.Issuers = []string{c.issuer}
		}
		v := hsVerifier(t, opts)
		var claims jwtverify.Claims
		err := v.Verify(c.token, &claims)
		r := res[i]
		if (err == nil) != r.OK {
			t.Errorf("%s: ours %v; flask ok=%v (%q)", c.name, err, r.OK, r.PyJWT)
			continue
		}
		if err == nil {
			continue
		}
		got, want := err.Error(), r.PyJWT
		if c.prefix {
			got, _, _ = strings.Cut(got, ": ")
			want, _, _ = strings.Cut(want, ": ")
		}
		if got != want {
			t.Errorf("%s: message %q; PyJWT %q", c.name, err, r.PyJWT)
		}
		if errors.Is(err, jwtverify.ErrTokenExpired) != (r.Flask == jwtverify.FlaskExpiredMessage) {
			t.Errorf("%s: flask answers %q, ours %v", c.name, r.Flask, err)
		}
	}
}

// pyDifferences are the deliberate differences from PyJWT (docs/verifier.md): tokens a
// flask-jwt-extended app accepts and we refuse, each with our reason.
func pyDifferences(t *testing.T) []struct{ name, token, reason string } {
	k := testKeys()
	hs := func(payload string) string { return signRaw(t, "HS256", k.hs, `{"alg":"HS256"}`, payload) }
	good := hs(`{"sub":"u","jti":"j"}`)
	p := strings.Split(good, ".")
	std := func(s string) string { return strings.NewReplacer("-", "+", "_", "/").Replace(s) }
	var out []struct{ name, token, reason string }
	add := func(name, token, reason string) {
		out = append(out, struct{ name, token, reason string }{name, token, reason})
	}
	add("padding '='", p[0]+"."+p[1]+"."+p[2]+"=", "base64")
	add("characters outside base64url", p[0]+"."+p[1]+"."+p[2][:4]+"*!*!"+p[2][4:], "base64")
	if std(p[2]) != p[2] {
		add("standard base64 alphabet", p[0]+"."+p[1]+"."+std(p[2]), "base64")
	}
	add("duplicate claim, last wins in Python", hs(`{"sub":"u","jti":"a","jti":"b"}`), "duplicate")
	add("UTF-8 byte order mark", hs("\xef\xbb\xbf{\"sub\":\"u\"}"), "json")
	add("NaN", hs(`{"sub":"u","x":NaN}`), "json")
	add("number beyond float64", hs(`{"sub":"u","x":1e400}`), "json")
	add("nbf a numeric string", hs(`{"sub":"u","nbf":"1"}`), "date-type")
	add("nbf true", hs(`{"sub":"u","nbf":true}`), "date-type")
	add("exp beyond 2^62", hs(`{"sub":"u","exp":1e300}`), "date-range")
	add("sub a float", hs(`{"sub":1.5}`), "sub-type")
	add("sub an object", hs(`{"sub":{"id":1}}`), "sub-type")
	add("jti a number", hs(`{"sub":"u","jti":1}`), "jti-type")
	add("jti too long", hs(`{"sub":"u","jti":"`+strings.Repeat("j", 300)+`"}`), "jti-length")
	add("lone surrogate in jti", hs(`{"sub":"u","jti":"\ud800"}`), "surrogate")
	add("nested 300 deep", hs(`{"sub":"u","x":`+strings.Repeat("[", 300)+strings.Repeat("]", 300)+`}`), "depth")
	return out
}

func TestDifferencesFromPyJWT(t *testing.T) {
	diffs := pyDifferences(t)
	in := make([]flaskCase, len(diffs))
	for i, d := range diffs {
		in[i] = flaskCase{Token: d.token, Secret: string(testKeys().hs)}
	}
	res := runFlask(t, in)
	v := hsVerifier(t, jwtverify.Options{Now: time.Now})
	for i, d := range diffs {
		if !res[i].OK {
			t.Errorf("%s: flask refuses it too (%q): not a difference", d.name, res[i].PyJWT)
		}
		var c jwtverify.Claims
		err := v.Verify(d.token, &c)
		if got := jwtverify.Reason(err); got != d.reason {
			t.Errorf("%s: Verify = %v (reason %q); want reason %q", d.name, err, got, d.reason)
		}
	}
}
