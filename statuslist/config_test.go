package statuslist

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	is := newIssuer(t, 1)
	jwks := string(is.jwks())
	keys := `"keys":{"algorithms":["EdDSA"],"jwks":` + jwks + `}`
	entry := func(extra string) string {
		return `{"uri":"https://issuer.example/lists/1","cluster":"issuer","authority":"issuer.example","path":"/lists/1"` + extra + `}`
	}
	prefix := func(extra string) string {
		return `{"uri_prefix":"https://issuer.example/lists/","cluster":"issuer","authority":"issuer.example","path":"/lists/"` + extra + `}`
	}
	cases := []struct {
		name    string
		config  string
		wantErr []string // substrings, each naming its field
		check   func(t *testing.T, c *Config)
	}{
		{"empty is off", ``, nil, func(t *testing.T, c *Config) {
			if c.Enabled() || c.MaxLists != 16 || c.MaxListBytes != 16<<20 || c.Suspended != PolicyRevoked || c.UnknownList != PolicyDeny || c.OtherStatus != PolicyDeny {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{"null is off", `null`, nil, func(t *testing.T, c *Config) {
			if c.Enabled() {
				t.Fatal("enabled")
			}
		}},
		{"one exact uri with its keys", `{"lists":[` + entry(","+keys) + `]}`, nil, func(t *testing.T, c *Config) {
			if !c.Enabled() || c.Lists[0].KeySet() == nil {
				t.Fatal("not enabled or no keys")
			}
			rt, ok := c.routeOf("https://issuer.example/lists/1")
			if !ok || rt.path != "/lists/1" || rt.list.Cluster != "issuer" {
				t.Fatalf("route = %+v, %v", rt, ok)
			}
			if c.allowed("https://issuer.example/lists/2") || c.allowed("https://issuer.example/lists/1/") {
				t.Fatal("an exact entry allowed another uri")
			}
		}},
		{"section keys and a prefix", `{` + keys + `,"lists":[` + prefix("") + `,` + entry("") + `],"suspended":"allow","min_ttl":"10s","max_ttl":"10m","max_age":"1h"}`, nil, func(t *testing.T, c *Config) {
			if c.Lists[0].KeySet() == nil || c.Lists[0].KeySet() != c.Lists[1].KeySet() {
				t.Fatal("section keys not shared")
			}
			rt, ok := c.routeOf("https://issuer.example/lists/2025/a-b_c.d~e")
			if !ok || rt.path != "/lists/2025/a-b_c.d~e" {
				t.Fatalf("route = %+v, %v", rt, ok)
			}
			if rt, _ := c.routeOf("https://issuer.example/lists/1"); rt.list != &c.Lists[1] {
				t.Fatal("the exact entry does not win over the prefix")
			}
			if c.Suspended != PolicyAllow || c.MinTTL.D() != 10*time.Second {
				t.Fatalf("%+v", c)
			}
		}},
		{"unknown field", `{"lists":[],"max_list":3}`, []string{`unknown field "max_list"`}, nil},
		{"trailing data", `{} {}`, []string{"trailing data"}, nil},
		{"bad policies", `{"suspended":"revoke","other_status":"","unknown_list":"closed"}`,
			[]string{`status_list.suspended: must be "revoked", "deny" or "allow", got "revoke"`, `status_list.other_status`, `status_list.unknown_list: must be`}, nil},
		{"bad bounds", `{"min_ttl":"0s","max_ttl":"200h","max_age":"1m","timeout":"0s","retry_interval":"0s","max_backoff":"48h","max_list_bytes":0,"max_body_bytes":1,"max_lists":0}`,
			[]string{"status_list.min_ttl: must be 1s to 24h", "status_list.max_ttl", "status_list.max_age", "status_list.timeout", "status_list.retry_interval", "status_list.max_backoff", "status_list.max_list_bytes", "status_list.max_body_bytes", "status_list.max_lists"}, nil},
		{"max_age below max_ttl", `{"max_ttl":"2h","max_age":"1h"}`, []string{"status_list.max_age: must be 0 (only exp limits a list) or at least max_ttl (2h0m0s), got 1h0m0s"}, nil},
		{"max_age 0", `{"max_age":"0s"}`, nil, nil},
		{"neither uri nor prefix", `{` + keys + `,"lists":[{"cluster":"c","authority":"a","path":"/"}]}`, []string{"status_list.lists[0].uri: give exactly one of uri and uri_prefix"}, nil},
		{"both", `{` + keys + `,"lists":[{"uri":"https://a/b","uri_prefix":"https://a/","cluster":"c","authority":"a","path":"/"}]}`, []string{"lists[0].uri: give exactly one"}, nil},
		{"relative uri", `{` + keys + `,"lists":[` + strings.Replace(entry(""), "https://issuer.example", "", 1) + `]}`, []string{`status_list.lists[0].uri: must be an absolute http or https uri, got "/lists/1"`}, nil},
		{"uri with a fragment", `{` + keys + `,"lists":[` + strings.Replace(entry(""), "lists/1", "lists/1#x", 1) + `]}`, []string{"lists[0].uri: must not hold a fragment"}, nil},
		{"uri with a space", `{` + keys + `,"lists":[` + strings.Replace(entry(""), "lists/1\"", "lists/ 1\"", 1) + `]}`, []string{"lists[0].uri: must be printable ASCII"}, nil},
		{"uri without host", `{` + keys + `,"lists":[{"uri":"https:///x","cluster":"c","authority":"a","path":"/"}]}`, []string{"lists[0].uri: must name a host"}, nil},
		{"prefix without slash", `{` + keys + `,"lists":[` + strings.Replace(prefix(""), "lists/\",\"cluster", "lists\",\"cluster", 1) + `]}`, []string{"lists[0].uri_prefix: must end with '/'"}, nil},
		{"prefix of a host only", `{` + keys + `,"lists":[{"uri_prefix":"https://issuer.example","cluster":"c","authority":"a","path":"/"}]}`, []string{"lists[0].uri_prefix: must end with '/'"}, nil},
		{"prefix path without slash", `{` + keys + `,"lists":[` + strings.Replace(prefix(""), `"path":"/lists/"`, `"path":"/lists"`, 1) + `]}`, []string{"lists[0].path: must start and end with '/'"}, nil},
		{"exact path relative", `{` + keys + `,"lists":[` + strings.Replace(entry(""), `"path":"/lists/1"`, `"path":"lists/1"`, 1) + `]}`, []string{"lists[0].path: must start with '/'"}, nil},
		{"no cluster, bad authority", `{` + keys + `,"lists":[{"uri":"https://a/b","authority":"a/b","path":"/b"}]}`, []string{"lists[0].cluster: must name", "lists[0].authority: must be a host name"}, nil},
		{"listed twice", `{` + keys + `,"lists":[` + entry("") + `,` + entry("") + `]}`, []string{"lists[1].uri: \"https://issuer.example/lists/1\" is listed twice"}, nil},
		{"no keys anywhere", `{"lists":[` + entry("") + `]}`, []string{"lists[0].keys: no keys"}, nil},
		{"entry keys bad", `{"lists":[` + entry(`,"keys":{"algorithms":["none"],"jwks":`+jwks+`}`) + `]}`, []string{`status_list.lists[0].keys: algorithms: unknown or forbidden algorithm "none"`}, nil},
		{"section keys without algorithm", `{"keys":{"jwks":` + jwks + `},"lists":[` + entry("") + `]}`, []string{"status_list.keys: algorithms: must allow at least one algorithm"}, nil},
		{"hmac is not a key form here", `{"keys":{"algorithms":["HS256"],"hmac_secrets":[{"secret":"x"}]},"lists":[` + entry("") + `]}`, []string{`unknown field "hmac_secrets"`}, nil},
		{"more exact uris than max_lists", `{` + keys + `,"max_lists":1,"lists":[` + entry("") + `,` + strings.Replace(entry(""), "lists/1", "lists/2", 2) + `]}`, []string{"status_list.max_lists: 1 is fewer than the 2 exact uris listed"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.config))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParseConfig = %v; want ErrInvalidConfig", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// TestMatchRest: what a token may add to a prefix, and that whatever is accepted stays a
// plain path under the configured one.
func TestMatchRest(t *testing.T) {
	for rest, want := range map[string]bool{
		"1": true, "2025/06/list-7": true, "a.b": true, "...": true, ".x": true, "x.": true, "~u_s-r": true,
		"": false, ".": false, "..": false, "a/../b": false, "a/./b": false, "a//b": false, "/a": false, "a/": false,
		"%2e%2e": false, "a?b": false, "a#b": false, "a b": false, "a\\b": false, "é": false, "a;b": false, "a:b": false,
		strings.Repeat("a", maxRestLen): true, strings.Repeat("a", maxRestLen+1): false,
	} {
		if got := matchRest(rest); got != want {
			t.Errorf("matchRest(%q) = %v; want %v", rest, got, want)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	const chars = "ab./%?#-_~9"
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		rest := string(b)
		if !matchRest(rest) {
			continue
		}
		for _, seg := range strings.Split(rest, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "%?#") {
				t.Fatalf("matchRest(%q) accepted segment %q", rest, seg)
			}
		}
	}
}

func TestDefaultsDocumented(t *testing.T) {
	d := DefaultConfig()
	got := fmt.Sprint(d.MinTTL.D(), d.MaxTTL.D(), d.MaxAge.D(), d.Timeout.D(), d.RetryInterval.D(), d.MaxBackoff.D(), d.MaxListBytes, d.MaxBodyBytes, d.MaxLists)
	if got != "1m0s 1h0m0s 24h0m0s 5s 5s 5m0s 16777216 8388608 16" {
		t.Fatalf("defaults changed (%s): update docs/status-list.md and this test", got)
	}
}
