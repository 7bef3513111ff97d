package filter

import (
	"encoding/base64"
	"fmt"
	"testing"
	"time"
)

// TestClaimEntries: a claim entry ({"claim":"sid","value":…}, an OIDC back-channel logout)
// revokes every token that carries the value in that claim. The filter reads the claims the
// list names, so no configuration can leave one unread.
func TestClaimEntries(t *testing.T) {
	f := start(t, hsConfig(""))
	tok := func(jti string, extra map[string]any) string {
		c := claimsAt(testNow, jti)
		for k, v := range extra {
			c[k] = v
		}
		return hs256(t, c)
	}
	status := func(tok string) int {
		t.Helper()
		if _, resp := f.request(bearer(tok)); resp != nil {
			return int(resp.StatusCode)
		}
		return 200
	}
	session := tok("in-session", map[string]any{"sid": "s-1"})
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "other"}}, nil)
	if got := status(session); got != 200 {
		t.Fatalf("before the logout: %d; want 200", got)
	}
	// The list now names sid: the token, cached without its sid, is read again.
	f.publish("jtiguard.", testNow, []revokedEntry{{claim: "sid", jti: "s-1"}, {claim: "family", jti: "7"}}, nil)
	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"the logged-out session (cached)", session, 401},
		{"another token of the session", tok("second", map[string]any{"sid": "s-1"}), 401},
		{"another session", tok("third", map[string]any{"sid": "s-2"}), 200},
		{"a number claim against its text", tok("fourth", map[string]any{"family": 7}), 401},
		{"the value under another claim", tok("fifth", map[string]any{"tenant": "s-1"}), 200},
		{"no sid", tok("sixth", nil), 200},
	}
	for _, tt := range tests {
		if got := status(tt.token); got != tt.want {
			t.Errorf("%s: %d; want %d", tt.name, got, tt.want)
		}
	}
	// A sid repeated past what the filter holds (credentials.MaxValues) cannot be ruled out,
	// whatever the signature: refused as ambiguous, so a revoked fifth one never gets in.
	h, _, _ := splitToken(session)
	for _, last := range []string{"s-1", "e"} {
		raw := fmt.Sprintf(`{"jti":"many","exp":%d,"sid":"a","sid":"b","sid":"c","sid":"d","sid":%q}`, testNow.Add(time.Hour).Unix(), last)
		if got := status(h + "." + base64.RawURLEncoding.EncodeToString([]byte(raw)) + ".sig"); got != 422 {
			t.Errorf("five sids, the last %q: %d; want 422", last, got)
		}
	}
	// The session's entry is gone: allowed again.
	f.publish("jtiguard.", testNow, []revokedEntry{{claim: "family", jti: "7"}}, nil)
	if got := status(session); got != 200 {
		t.Fatalf("after the entry is removed: %d; want 200", got)
	}
}

// TestClaimEntriesByIssuer: a claim entry with an iss revokes only that issuer's tokens.
func TestClaimEntriesByIssuer(t *testing.T) {
	cfg := `{"jwt":{"issuers":["https://op","https://other"],"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]},"sync":{"cluster":""}}`
	f := start(t, cfg)
	f.keyed = true
	f.publish("jtiguard.", testNow, []revokedEntry{{iss: "https://op", claim: "sid", jti: "s-op"}, {claim: "sid", jti: "s-any"}}, nil)
	for _, tt := range []struct {
		iss, sid string
		revoked  bool
	}{
		{"https://op", "s-op", true},
		{"https://other", "s-op", false},
		{"https://op", "s-any", true},
		{"https://other", "s-any", true},
	} {
		c := claimsAt(testNow, "j-"+tt.iss+tt.sid)
		c["iss"], c["sid"] = tt.iss, tt.sid
		_, resp := f.request(bearer(hs256(t, c)))
		if got := resp != nil && resp.StatusCode == 401; got != tt.revoked {
			t.Errorf("iss %s sid %s: revoked = %v; want %v", tt.iss, tt.sid, got, tt.revoked)
		}
	}
}
