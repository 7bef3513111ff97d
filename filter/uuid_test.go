package filter

import (
	"strings"
	"testing"
	"time"
)

// TestUUIDRevokedInAnySpelling: a jti, a subject or a session id that is a UUID is revoked in
// whatever spelling the list holds it (a uuid column's canonical text, SQLAlchemy's 32 hex
// digits) and the token carries it (upper case, braces): the app's database compares them as
// one uuid, and so must the filter.
func TestUUIDRevokedInAnySpelling(t *testing.T) {
	const canon = "6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10"
	hexOnly := strings.ReplaceAll(canon, "-", "")
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: canon}, {claim: "sid", jti: hexOnly}},
		[]cutoffEntry{{sub: strings.ToUpper(canon), before: testNow.Add(time.Hour)}})
	times := reviewTimes()
	for _, tc := range []struct{ name, payload string }{
		{"jti upper case", `{"jti":"` + strings.ToUpper(canon) + `","sub":"u",` + times + `}`},
		{"jti 32 hex digits", `{"jti":"` + hexOnly + `","sub":"u",` + times + `}`},
		{"jti in braces", `{"jti":"{` + canon + `}","sub":"u",` + times + `}`},
		{"subject, canonical", `{"jti":"j1","sub":"` + canon + `",` + times + `}`},
		{"session, canonical", `{"jti":"j2","sub":"u","sid":"` + canon + `",` + times + `}`},
	} {
		tok := rawHS256(`{"alg":"HS256","typ":"JWT"}`, tc.payload, testKeys().hs)
		if a, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 401 {
			t.Errorf("%s: %v; want 401 revoked", tc.name, a)
		}
	}
	ok := rawHS256(`{"alg":"HS256","typ":"JWT"}`, `{"jti":"`+strings.Replace(canon, "6f", "7f", 1)+`","sub":"u",`+times+`}`, testKeys().hs)
	if _, resp := f.request(bearer(ok)); resp != nil {
		t.Errorf("another UUID: %d %s; want it let through", resp.StatusCode, resp.Data)
	}
}
