package jwkssync

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	cases := []struct {
		name, json string
		want       []string // substrings of the error, each naming a field; none: valid
	}{
		{"minimal", `{"cluster":"idp","authority":"idp.example"}`, nil},
		{"everything", `{"cluster":"outbound|443||idp.example","authority":"idp.example:443","path":"/keys?x=1","refresh_interval":"1h",
			"timeout":"10s","max_bytes":1048576,"headers":{"authorization":"Bearer x"}}`, nil},
		{"no cluster, no authority", `{}`, []string{"jwt.remote_jwks.cluster: must name", `jwt.remote_jwks.authority: must be a host name (with optional port), got ""`}},
		{"authority with a path", `{"cluster":"c","authority":"idp/x"}`, []string{`jwt.remote_jwks.authority: must be a host name (with optional port), got "idp/x"`}},
		{"relative path", `{"cluster":"c","authority":"a","path":"jwks"}`, []string{`jwt.remote_jwks.path: must start with '/'`}},
		{"refresh too short", `{"cluster":"c","authority":"a","refresh_interval":"500ms"}`, []string{"jwt.remote_jwks.refresh_interval: must be 1s to 24h0m0s, got 500ms"}},
		{"refresh too long", `{"cluster":"c","authority":"a","refresh_interval":"25h"}`, []string{"jwt.remote_jwks.refresh_interval"}},
		{"timeout zero", `{"cluster":"c","authority":"a","timeout":"0s"}`, []string{"jwt.remote_jwks.timeout: must be above 0 and at most 1m0s, got 0s"}},
		{"max_bytes small", `{"cluster":"c","authority":"a","max_bytes":10}`, []string{"jwt.remote_jwks.max_bytes: must be 1024 to 4194304, got 10"}},
		{"max_bytes huge", `{"cluster":"c","authority":"a","max_bytes":1073741824}`, []string{"jwt.remote_jwks.max_bytes"}},
		{"pseudo-header", `{"cluster":"c","authority":"a","headers":{":path":"/x"}}`, []string{`jwt.remote_jwks.headers: ":path" cannot be set`}},
		{"if-none-match", `{"cluster":"c","authority":"a","headers":{"If-None-Match":"x"}}`, []string{`"If-None-Match" cannot be set`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg Config
			if err := json.Unmarshal([]byte(c.json), &cfg); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v; want ErrInvalidConfig", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v; want it to say %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaultsAndUnknownFields(t *testing.T) {
	var cfg Config
	if err := json.Unmarshal([]byte(`{"cluster":"c","authority":"a"}`), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Path != "/.well-known/jwks.json" || cfg.RefreshInterval.D() != 10*time.Minute || cfg.Timeout.D() != 5*time.Second || cfg.MaxBytes != 256<<10 {
		t.Fatalf("defaults = %+v", cfg)
	}
	err := json.Unmarshal([]byte(`{"cluster":"c","authority":"a","refresh":"1m"}`), &cfg)
	if err == nil || !strings.Contains(err.Error(), `jwt.remote_jwks: json: unknown field "refresh"`) {
		t.Fatalf("unknown field: %v", err)
	}
	err = json.Unmarshal([]byte(`{"cluster":"c","authority":"a","timeout":5}`), &cfg)
	if err == nil || !strings.Contains(err.Error(), "jwt.remote_jwks") || !strings.Contains(err.Error(), "duration") {
		t.Fatalf("bad duration: %v", err)
	}
}
