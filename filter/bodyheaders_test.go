package filter

import (
	"fmt"
	"strings"
	"testing"
)

// Request shapes for which the real flask-jwt-extended 4.4.4 app under werkzeug 2.2.2's server
// reads and accepts a revoked token that the filter, before credentials.bodyHeaderVariant, let
// through; e2e/differential's TestBodyHeadersNamedWithUnderscores sends them to the real app.

// chunkEncode frames doc as HTTP/1.1 chunked coding, cut at the given offsets.
func chunkEncode(doc string, cuts ...int) string {
	var b strings.Builder
	prev := 0
	for _, c := range append(cuts, len(doc)) {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", c-prev, doc[prev:c])
		prev = c
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// werkzeug's development server keys every request header by name.upper().replace("-", "_"),
// and CONTENT_TYPE is set from any header that maps to it, the last one winning. Envoy
// forwards a header named content_type (headers_with_underscores_action defaults to ALLOW).
// The filter's WantsBody counts only headers named exactly "content-type": with one saying
// text/plain it never reads the body, which the app parses as JSON. Such a request is refused.
func TestContentTypeNamedWithUnderscoreIsRefused(t *testing.T) {
	revoked := hs256(t, claimsAt(testNow, "jti-revoked"))
	valid := hs256(t, claimsAt(testNow, "jti-ok"))
	body := `{"access_token":"` + revoked + `"}`
	for _, tc := range []struct {
		name, cfg string
		extra     [][2]string
	}{
		{"json only, missing_token allow (default)", `,"token":{"locations":["json"]}`, nil},
		{"json before headers, missing_token deny, a valid decoy in Authorization",
			`,"missing_token":"deny","token":{"locations":["json","headers"]}`, bearer(valid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, hsConfig(tc.cfg))
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
			headers := append([][2]string{{"content-type", "text/plain"}, {"content_type", "application/json"}}, tc.extra...)
			_, last, resp := f.requestWithBody(headers, body)
			if resp == nil {
				t.Fatalf("request let through (last action %v): the app reads CONTENT_TYPE=application/json "+
					"and authenticates the revoked token in the body %q", last, body)
			}
			if resp.StatusCode != 422 {
				t.Fatalf("answered %d %s, want 422 (ambiguous)", resp.StatusCode, resp.Data)
			}
		})
	}
}

// werkzeug's development server de-chunks the body when HTTP_TRANSFER_ENCODING is "chunked",
// and a header named transfer_encoding maps to it. Envoy forwards such a request with its
// Content-Length body as it is; the filter scans the raw body, in which the chunk framing
// (CRLF <size> CRLF) cuts the payload segment in two, so no run holds it; the app reads the
// de-chunked JSON, with the revoked token whole. Such a request is refused.
func TestTransferEncodingNamedWithUnderscoreIsRefused(t *testing.T) {
	revoked := hs256(t, claimsAt(testNow, "jti-revoked"))
	valid := hs256(t, claimsAt(testNow, "jti-ok"))
	doc := `{"access_token":"` + revoked + `"}`
	_, p, _ := splitToken(revoked)
	body := chunkEncode(doc, strings.Index(doc, p)+len(p)/2)
	for _, tc := range []struct {
		name, cfg string
		extra     [][2]string
	}{
		{"json only, missing_token allow (default)", `,"token":{"locations":["json"]}`, nil},
		{"headers and json, missing_token allow", `,"token":{"locations":["headers","json"]}`, nil},
		{"json before headers, missing_token deny, a valid decoy in Authorization",
			`,"missing_token":"deny","token":{"locations":["json","headers"]}`, bearer(valid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, hsConfig(tc.cfg))
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
			headers := append([][2]string{{"content-type", "application/json"}, {"transfer_encoding", "chunked"},
				{"content-length", fmt.Sprint(len(body))}}, tc.extra...)
			_, last, resp := f.requestWithBody(headers, body)
			if resp == nil {
				t.Fatalf("request let through (last action %v): werkzeug de-chunks %q into %q and authenticates the revoked token",
					last, body, doc)
			}
			if resp.StatusCode != 422 && resp.StatusCode != 401 {
				t.Fatalf("answered %d %s, want 422 (ambiguous) or 401", resp.StatusCode, resp.Data)
			}
		})
	}
}

// TestBodyHeaderVariantsOnlyMatterForBodies: without the json location the body is never the
// token's, and such a header changes nothing; spelled right, or any other header with '_',
// nothing is refused.
func TestBodyHeaderVariantsOnlyMatterForBodies(t *testing.T) {
	valid := hs256(t, claimsAt(testNow, "jti-ok"))
	for _, tc := range []struct {
		name, cfg string
		headers   [][2]string
	}{
		{"headers only, content_type", "", [][2]string{{"content_type", "application/json"}}},
		{"headers only, transfer_encoding", "", [][2]string{{"transfer_encoding", "chunked"}}},
		{"json, x_request_id", `,"token":{"locations":["headers","json"]}`, [][2]string{{"x_request_id", "1"}, {"content-type", "application/json"}}},
		{"json, content_typo", `,"token":{"locations":["headers","json"]}`, [][2]string{{"content_typo", "x"}, {"content-type", "application/json"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, hsConfig(tc.cfg))
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
			_, _, resp := f.requestWithBody(append(tc.headers, bearer(valid)...), `{}`)
			if resp != nil {
				t.Fatalf("answered %d %s, want the request let through", resp.StatusCode, resp.Data)
			}
		})
	}
}
