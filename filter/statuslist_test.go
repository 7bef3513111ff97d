package filter

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
)

const (
	statusURI    = "https://issuer.example/lists/1"
	statusPrefix = "https://issuer.example/lists/"
)

// statusConfig is hsConfig with one exact status list and a prefix, signed by the Ed25519 test key.
func statusConfig(extra string) string {
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(testKeys().edPub) + `","alg":"EdDSA"}]}`
	return hsConfig(`,"status_list":{"keys":{"algorithms":["EdDSA"],"jwks":` + jwks + `},"lists":[
		{"uri":"` + statusURI + `","cluster":"issuer","authority":"issuer.example","path":"/lists/1"},
		{"uri_prefix":"` + statusPrefix + `","cluster":"issuer","authority":"issuer.example","path":"/lists/"}]}` + extra)
}

// statusListToken is a Status List Token for uri holding one status per byte value given (8 bits).
func statusListToken(t *testing.T, uri string, statuses ...byte) string {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, 9)
	w.Write(statuses)
	w.Close()
	return sign(t, jwt.SigningMethodEdDSA, testKeys().ed, jwt.MapClaims{
		"sub": uri, "iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix(), "ttl": 300,
		"status_list": map[string]any{"bits": 8, "lst": base64.RawURLEncoding.EncodeToString(buf.Bytes())},
	}, map[string]any{"typ": "statuslist+jwt"})
}

func withStatus(t *testing.T, jti string, idx int, uri string) string {
	c := claimsAt(testNow, jti)
	c["status"] = map[string]any{"status_list": map[string]any{"idx": idx, "uri": uri}}
	return hs256(t, c)
}

// TestStatusListThroughTheEmulator: the list is fetched on a tick through the configured
// cluster, and tokens are answered by their status, wherever in the request they are.
func TestStatusListThroughTheEmulator(t *testing.T) {
	for _, failMode := range []string{"closed", "open"} {
		t.Run(failMode, func(t *testing.T) {
			f := start(t, statusConfig(`,"fail_mode":"`+failMode+`"`))
			if calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID); len(calls) != 0 {
				t.Fatalf("callouts at start: %+v", calls)
			}
			if p := f.host.GetTickPeriod(); p != 100 {
				t.Fatalf("tick period with a list to fetch = %d ms; want 100", p)
			}
			f.publish("jtiguard.", testNow, nil, nil) // an empty blocklist
			calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
			if len(calls) != 1 || calls[0].Upstream != "issuer" || headerValue(calls[0].Headers, ":path") != "/lists/1" {
				t.Fatalf("callouts after the first tick = %+v", calls)
			}
			valid := withStatus(t, "s-valid", 0, statusURI)
			if _, resp := f.request(bearer(valid)); failMode == "closed" && (resp == nil || resp.StatusCode != 503) || failMode == "open" && resp != nil {
				t.Fatalf("before the list: %+v", resp)
			}
			f.host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}, {"content-type", "application/statuslist+jwt"}}, nil,
				[]byte(statusListToken(t, statusURI, 0, 1, 2, 3)))
			cases := []struct {
				name    string
				headers [][2]string
				status  uint32 // 0: passes
				msg     string
			}{
				{"VALID", bearer(valid), 0, ""},
				{"no status claim", bearer(hs256(t, claimsAt(testNow, "plain"))), 0, ""},
				{"INVALID", bearer(withStatus(t, "s1", 1, statusURI)), 401, "Token has been revoked"},
				{"SUSPENDED (default: revoked)", bearer(withStatus(t, "s2", 2, statusURI)), 401, "Token has been revoked"},
				{"another status (default: deny)", bearer(withStatus(t, "s3", 3, statusURI)), 422, "Token status is not accepted"},
				{"index out of range", bearer(withStatus(t, "s4", 4, statusURI)), 422, "Token status index is out of range"},
				{"a list no entry allows", bearer(withStatus(t, "s5", 0, "https://elsewhere.example/1")), 422, "Token status list is not trusted"},
				{"INVALID in a token the app does not read", append(bearer(valid), [2]string{":path", "/api?x=" + withStatus(t, "s6", 1, statusURI)}), 401, "Token has been revoked"},
			}
			for _, tc := range cases {
				_, resp := f.request(tc.headers)
				if tc.status == 0 {
					if resp != nil {
						t.Errorf("%s: %d %s; want it to pass", tc.name, resp.StatusCode, resp.Data)
					}
					continue
				}
				if resp == nil || resp.StatusCode != tc.status || !strings.Contains(string(resp.Data), tc.msg) {
					t.Errorf("%s: %+v; want %d %q", tc.name, resp, tc.status, tc.msg)
				}
			}
			// A list under the prefix that no VM holds yet follows fail_mode, and is fetched.
			later := withStatus(t, "s7", 1, statusPrefix+"2")
			_, resp := f.request(bearer(later))
			if failMode == "closed" && (resp == nil || resp.StatusCode != 503) || failMode == "open" && resp != nil {
				t.Fatalf("a list on its way: %+v", resp)
			}
			f.host.Tick()
			calls = f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
			last := calls[len(calls)-1]
			if headerValue(last.Headers, ":path") != "/lists/2" {
				t.Fatalf("last callout %+v; want /lists/2", last)
			}
			f.host.CallOnHttpCallResponse(last.CalloutID, [][2]string{{":status", "200"}}, nil, []byte(statusListToken(t, statusPrefix+"2", 0, 1)))
			if _, resp := f.request(bearer(later)); resp == nil || resp.StatusCode != 401 {
				t.Fatalf("after the prefix list arrived: %+v; want 401", resp)
			}
			f.host.Tick()
			if n, _ := f.host.GetCounterMetric("jtiguard.statuslist.checks.invalid"); n < 3 {
				t.Fatalf("statuslist.checks.invalid = %d", n)
			}
		})
	}
}

// TestStatusRevokesWithoutBlocklist: a token its status list revokes is answered 401 even
// while the blocklist is unavailable (fail_mode closed would answer 503 otherwise).
func TestStatusRevokesWithoutBlocklist(t *testing.T) {
	f := start(t, statusConfig(""))
	f.host.Tick()
	calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	f.host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}}, nil, []byte(statusListToken(t, statusURI, 0, 1)))
	if _, resp := f.request(bearer(withStatus(t, "x", 1, statusURI))); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("%+v; want 401", resp)
	}
	if _, resp := f.request(bearer(withStatus(t, "y", 0, statusURI))); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("%+v; want 503 (no blocklist)", resp)
	}
}

// TestStatusListConfigErrors: the section's errors reach the plugin's start.
func TestStatusListConfigErrors(t *testing.T) {
	_, err := ParseConfig([]byte(hsConfig(`,"status_list":{"lists":[{"uri":"ftp://x/1","cluster":"c","authority":"x","path":"/1"}]}`)), nil)
	if err == nil || !strings.Contains(err.Error(), "status_list.lists[0].uri: must be an absolute http or https uri") ||
		!strings.Contains(err.Error(), "status_list.lists[0].keys: no keys") {
		t.Fatalf("ParseConfig = %v", err)
	}
}
