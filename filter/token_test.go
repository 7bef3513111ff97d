package filter

import (
	"strings"
	"testing"
)

func TestExtractToken(t *testing.T) {
	all := TokenConfig{Locations: []Location{LocationHeaders, LocationCookies, LocationQueryString},
		HeaderName: "Authorization", HeaderType: "Bearer", CookieName: "access_token_cookie", QueryStringName: "jwt"}
	headersOnly := all
	headersOnly.Locations = []Location{LocationHeaders}
	cookiesFirst := all
	cookiesFirst.Locations = []Location{LocationCookies, LocationHeaders}
	bare := headersOnly
	bare.HeaderType = ""
	custom := headersOnly
	custom.HeaderName, custom.HeaderType = "X-Token", "JWT"

	tests := []struct {
		name                   string
		cfg                    TokenConfig
		headers                [][2]string
		wantToken, wantMissing string
		wantBad                string
	}{
		{name: "bearer", cfg: headersOnly, headers: [][2]string{{"authorization", "Bearer abc.def.ghi"}}, wantToken: "abc.def.ghi"},
		{name: "type is case-insensitive", cfg: headersOnly, headers: [][2]string{{"authorization", "bEaReR abc"}}, wantToken: "abc"},
		{name: "extra spaces", cfg: headersOnly, headers: [][2]string{{"authorization", "  Bearer    abc  "}}, wantToken: "abc"},
		{name: "comma-separated credentials", cfg: headersOnly, headers: [][2]string{{"authorization", "Basic dXNlcg==, Bearer abc"}}, wantToken: "abc"},
		{name: "missing header", cfg: headersOnly, headers: [][2]string{{":path", "/"}}, wantMissing: "Missing Authorization Header"},
		{name: "empty header", cfg: headersOnly, headers: [][2]string{{"authorization", "  "}}, wantMissing: "Missing Authorization Header"},
		{name: "other scheme only", cfg: headersOnly, headers: [][2]string{{"authorization", "Basic dXNlcg=="}},
			wantMissing: "Missing 'Bearer' type in 'Authorization' header. Expected 'Authorization: Bearer <JWT>'"},
		{name: "bearer without token", cfg: headersOnly, headers: [][2]string{{"authorization", "Bearer"}},
			wantBad: "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"},
		{name: "bearer with two tokens", cfg: headersOnly, headers: [][2]string{{"authorization", "Bearer a b"}},
			wantBad: "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"},
		{name: "two bearer credentials", cfg: headersOnly, headers: [][2]string{{"authorization", "Bearer a, Bearer b"}},
			wantBad: "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"},
		{name: "repeated header", cfg: headersOnly, headers: [][2]string{{"authorization", "Bearer a"}, {"authorization", "Bearer b"}},
			wantBad: "Bad Authorization header. Expected exactly one Authorization header"},
		{name: "bare token", cfg: bare, headers: [][2]string{{"authorization", "abc"}}, wantToken: "abc"},
		{name: "bare token with scheme", cfg: bare, headers: [][2]string{{"authorization", "Bearer abc"}},
			wantBad: "Bad Authorization header. Expected 'Authorization: <JWT>'"},
		{name: "custom header", cfg: custom, headers: [][2]string{{"x-token", "JWT abc"}}, wantToken: "abc"},
		{name: "custom header missing", cfg: custom, headers: nil, wantMissing: "Missing X-Token Header"},
		{name: "cookie", cfg: all, headers: [][2]string{{"cookie", "a=1; access_token_cookie=tok; b=2"}}, wantToken: "tok"},
		{name: "cookie in second cookie header", cfg: all, headers: [][2]string{{"cookie", "a=1"}, {"cookie", "access_token_cookie=tok"}}, wantToken: "tok"},
		{name: "cookie name is exact", cfg: all, headers: [][2]string{{"cookie", "xaccess_token_cookie=tok"}},
			wantMissing: `Missing JWT in headers or cookies or query string (Missing Authorization Header; Missing cookie "access_token_cookie"; Missing "jwt" query parameter)`},
		{name: "query", cfg: all, headers: [][2]string{{":path", "/x?a=1&jwt=a.b%2Ec&z"}}, wantToken: "a.b.c"},
		{name: "query ignores fragment", cfg: all, headers: [][2]string{{":path", "/x?jwt=tok#frag"}}, wantToken: "tok"},
		{name: "header wins by order", cfg: all, headers: [][2]string{{"authorization", "Bearer h"}, {"cookie", "access_token_cookie=c"}}, wantToken: "h"},
		{name: "cookie wins by order", cfg: cookiesFirst, headers: [][2]string{{"authorization", "Bearer h"}, {"cookie", "access_token_cookie=c"}}, wantToken: "c"},
		{name: "bad header stops the search", cfg: all, headers: [][2]string{{"authorization", "Bearer"}, {"cookie", "access_token_cookie=c"}},
			wantBad: "Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"},
		{name: "missing everywhere, two locations", cfg: cookiesFirst, headers: nil,
			wantMissing: `Missing JWT in cookies or headers (Missing cookie "access_token_cookie"; Missing Authorization Header)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.headerKey = strings.ToLower(cfg.HeaderName)
			got := extractToken(&cfg, tt.headers)
			missing := ""
			if got.token == "" && got.bad == "" {
				missing = got.missingMessage(&cfg)
			}
			if got.token != tt.wantToken || missing != tt.wantMissing || got.bad != tt.wantBad {
				t.Fatalf("extractToken(%q) = token %q missing %q bad %q; want %q, %q, %q",
					tt.headers, got.token, missing, got.bad, tt.wantToken, tt.wantMissing, tt.wantBad)
			}
		})
	}
}
