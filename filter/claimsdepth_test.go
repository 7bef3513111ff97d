package filter

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tokens the app refuses as revoked that jtiguard let through before the revocation check's
// reader (credentials/peek.go) read every payload jwtverify accepts as jwtverify does.

func rawHS256(header, payload string, key []byte) string {
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

// reviewTimes are a flask-jwt-extended access token's time claims around testNow.
func reviewTimes() string {
	iat := strconv.FormatInt(testNow.Add(-time.Minute).Unix(), 10)
	exp := strconv.FormatInt(testNow.Add(15*time.Minute).Unix(), 10)
	return `"iat":` + iat + `,"nbf":` + iat + `,"exp":` + exp + `,"type":"access","fresh":false`
}

func reviewFixture(t *testing.T) *fixture {
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked-jti"}, {claim: "sid", jti: "revoked-session"}},
		[]cutoffEntry{{sub: "cut-user", before: testNow.Add(time.Hour)}})
	return f
}

// TestDeepNestingHidesNoClaim: a claim nested 65 deep (65 objects, or 66 arrays) before "jti",
// "sub" or "sid" once stopped the lenient reader the revocation check uses (a recursion bounded
// at 64), while jwtverify (up to 255) and PyJWT/flask (about 1000) accept the token: the revoked
// jti, the subject's cutoff or the session was never looked up. The flask app given the same
// tokens answers 401 "Token has been revoked" for each; so must the filter.
func TestDeepNestingHidesNoClaim(t *testing.T) {
	f := reviewFixture(t)
	arrays := strings.Repeat("[", 66) + strings.Repeat("]", 66) // 66 arrays: the 66th opens at depth 65
	objects := strings.Repeat(`{"a":`, 65) + "1" + strings.Repeat("}", 65)
	cases := []struct {
		name, payload string
		bypass        bool
	}{
		{"control: 65-deep arrays, jti", `{"x":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `,"jti":"revoked-jti","sub":"user-1",` + reviewTimes() + `}`, false},
		{"control: 65-deep arrays, sub", `{"x":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `,"jti":"fine-jti","sub":"cut-user",` + reviewTimes() + `}`, false},
		{"66-deep arrays before jti", `{"x":` + arrays + `,"jti":"revoked-jti","sub":"user-1",` + reviewTimes() + `}`, true},
		{"65-deep objects before jti", `{"x":` + objects + `,"jti":"revoked-jti","sub":"user-1",` + reviewTimes() + `}`, true},
		{"66-deep arrays before sub (cutoff)", `{"jti":"fine-jti","x":` + arrays + `,"sub":"cut-user",` + reviewTimes() + `}`, true},
		{"65-deep objects before sid (session entry; not in the flask app)", `{"jti":"fine-jti","sub":"user-1","a":` + objects + `,"sid":"revoked-session",` + reviewTimes() + `}`, true},
		// A sorted-keys issuer (Go's encoding/json, Python's sort_keys) puts a claim such as
		// "groups" or "authorization_details" before "jti" and "sub".
		{"sorted keys: authorization_details", `{"authorization_details":[{"locations":` + arrays + `}],"exp":` +
			strconv.FormatInt(testNow.Add(15*time.Minute).Unix(), 10) + `,"fresh":false,"iat":` + strconv.FormatInt(testNow.Add(-time.Minute).Unix(), 10) +
			`,"jti":"revoked-jti","sub":"user-1","type":"access"}`, true},
	}
	var toks []string
	for _, c := range cases {
		toks = append(toks, rawHS256(`{"alg":"HS256","typ":"JWT"}`, c.payload, testKeys().hs))
	}
	app := askFlask(t, "/api", toks...)
	for i, c := range cases {
		t.Logf("%s: flask %d %s, its blocklist callback saw %v", c.name, app[i].Status, app[i].Body, app[i].Seen)
		if !strings.Contains(c.name, "not in the flask app") && (app[i].Status != 401 || !strings.Contains(app[i].Body, "revoked")) {
			t.Errorf("%s: the app did not refuse it as revoked: %d %s", c.name, app[i].Status, app[i].Body)
		}
		if a, resp := f.request(bearer(toks[i])); resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: jtiguard %v (no local reply: let through to the app); want 401 revoked", c.name, a)
		}
	}
}

// TestDeepNestingInTrustedPayloadHeader: the same payload in jwt_authn's forwarded payload
// header (trust_upstream.payload_header), which VerifyPayload accepts, is checked as well.
func TestDeepNestingInTrustedPayloadHeader(t *testing.T) {
	f := start(t, `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"}},"sync":{"cluster":""}}`)
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked-jti"}}, nil)
	deep := strings.Repeat("[", 66) + strings.Repeat("]", 66)
	for _, p := range []string{
		`{"jti":"revoked-jti",` + reviewTimes() + `}`, // control
		`{"x":` + deep + `,"jti":"revoked-jti",` + reviewTimes() + `}`,
	} {
		seg := base64.RawURLEncoding.EncodeToString([]byte(p))
		if a, resp := f.request([][2]string{{"x-jwt-payload", seg}}); resp == nil || resp.StatusCode != 401 {
			t.Errorf("payload %.40q...: jtiguard %v; want 401 revoked", p, a)
		}
	}
}

// TestNegativeZeroSubject: jwtverify reads an integer sub of -0 as "0" (Python's str of the
// int the app gets); the revocation check once keyed the subject cutoff by the text "-0", so
// the cutoff of subject "0" was not applied.
func TestNegativeZeroSubject(t *testing.T) {
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, nil, []cutoffEntry{{sub: "0", before: testNow.Add(time.Hour)}})
	toks := []string{
		rawHS256(`{"alg":"HS256","typ":"JWT"}`, `{"jti":"j1","sub":0,`+reviewTimes()+`}`, testKeys().hs), // control
		rawHS256(`{"alg":"HS256","typ":"JWT"}`, `{"jti":"j2","sub":-0,`+reviewTimes()+`}`, testKeys().hs),
	}
	app := askFlask(t, "/api", toks...)
	for i, tok := range toks {
		t.Logf("token %d: flask %d %s, its blocklist callback saw %v", i, app[i].Status, app[i].Body, app[i].Seen)
		if a, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 401 {
			t.Errorf("token %d: jtiguard %v; want 401 revoked (subject 0's cutoff)", i, a)
		}
	}
}

// reviewFlaskApp is a flask-jwt-extended 4.4 app (Debian's, /usr/bin/python3) with a
// token_in_blocklist_loader revoking jti "revoked-jti" and subject "cut-user" before
// testNow+1h, its clock fixed at testNow; it answers each token with the status, the body
// and the jti/sub the blocklist callback was given (Python reprs).
const reviewFlaskApp = `import sys, json, datetime as _dt
import jwt.api_jwt as api_jwt
NOW = [None]
class FixedDT(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime.fromtimestamp(NOW[0], tz=tz)
    @classmethod
    def utcnow(cls):
        return _dt.datetime.utcfromtimestamp(NOW[0])
api_jwt.datetime = FixedDT
from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, jwt_required, get_jwt
SECRET = sys.argv[1]
app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = SECRET
jwtm = JWTManager(app)
REVOKED_JTIS = {"revoked-jti"}
CUTOFFS = {"cut-user": 1767003600, "0": 1767003600}
seen = {}
@jwtm.token_in_blocklist_loader
def blocked(h, p):
    seen["jti"] = p.get("jti"); seen["sub"] = p.get("sub"); seen["iat"] = p.get("iat")
    jti = p.get("jti")
    try:
        if jti in REVOKED_JTIS: return True
    except TypeError:
        pass
    sub = p.get("sub")
    try:
        if str(sub) in CUTOFFS and p.get("iat", 0) < CUTOFFS[str(sub)]: return True
    except TypeError:
        pass
    return False
@app.route("/api", methods=["GET","POST"])
@jwt_required(refresh=False)
def api():
    return jsonify(ok=True, jti=get_jwt().get("jti"))
@app.route("/refresh", methods=["GET","POST"])
@jwt_required(refresh=True)
def refresh():
    return jsonify(ok=True, jti=get_jwt().get("jti"))
c = app.test_client()
for line in sys.stdin:
    req = json.loads(line)
    NOW[0] = req["now"]
    seen.clear()
    r = c.get(req.get("path","/api"), headers={"Authorization": "Bearer " + req["token"]})
    print(json.dumps({"status": r.status_code, "body": r.get_data(as_text=True).strip(), "seen": {k: repr(v) for k, v in seen.items()}}), flush=True)
`

type flaskAnswer struct {
	Status int               `json:"status"`
	Body   string            `json:"body"`
	Seen   map[string]string `json:"seen"`
}

// askFlask runs the tokens through the real app. Without Debian's packages it fails in CI and
// skips, loudly, elsewhere.
func askFlask(t *testing.T, path string, tokens ...string) []flaskAnswer {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import flask_jwt_extended, jwt").CombinedOutput(); err != nil {
		msg := "the real app is unavailable (apt-get install python3-python-flask-jwt-extended python3-jwt): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED, not run: " + msg)
	}
	script := filepath.Join(t.TempDir(), "app.py")
	if err := os.WriteFile(script, []byte(reviewFlaskApp), 0o644); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for _, tok := range tokens {
		b, _ := json.Marshal(map[string]any{"token": tok, "now": testNow.Unix(), "path": path})
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd := exec.Command(py, script, string(testKeys().hs))
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("flask app: %v", err)
	}
	var answers []flaskAnswer
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var a flaskAnswer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("flask answer %q: %v", sc.Text(), err)
		}
		answers = append(answers, a)
	}
	if len(answers) != len(tokens) {
		t.Fatalf("flask answered %d of %d tokens", len(answers), len(tokens))
	}
	return answers
}
