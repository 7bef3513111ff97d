package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/golang-jwt/jwt/v5"
	"strings"
	"testing"
	"time"
)

const secretCfg = `"jwt":{"hmac_secrets":[{"secret":"s3cret"}]}`

func TestParseConfig(t *testing.T) {
	k := testKeys()
	rsaPEM := pemOf(t, &k.rsa.PublicKey)
	env := map[string]string{"JWT_SECRET_KEY": "from-env"}
	getenv := func(name string) string { return env[name] }
	tests := []struct {
		name    string
		config  string
		wantErr string // substring; "" means success
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty needs a secret", config: ``, wantErr: "HS256 allowed but no HMAC secret"},
		{name: "minimal", config: `{` + secretCfg + `}`, check: func(t *testing.T, c *Config) {
			d := DefaultConfig()
			if c.Prefix != d.Prefix || c.FailMode != FailClosed || c.MissingToken != PolicyAllow || c.InvalidToken != PolicyDeny {
				t.Fatalf("defaults not applied: %+v", c)
			}
			if fmt.Sprint(c.Token.Locations) != "[headers]" || c.Token.HeaderName != "Authorization" || c.Token.HeaderType != "Bearer" {
				t.Fatalf("token defaults = %+v", c.Token)
			}
			if c.Responses.Revoked.Status != 401 || c.Responses.Revoked.Message != "Token has been revoked" || c.Responses.MessageKey != "msg" {
				t.Fatalf("revoked response = %+v", c.Responses.Revoked)
			}
			if c.Sync.Cluster != "revocation_source" || c.Sync.Interval.D() != 5*time.Second || c.Sync.LeaseTTL.D() != 15*time.Second {
				t.Fatalf("sync defaults = %+v", c.Sync)
			}
			if c.KeyedByIssuer() {
				t.Fatal("keyed by issuer without issuers")
			}
		}},
		{name: "white space only is defaults", config: " \n\t", wantErr: "no HMAC secret"},
		{name: "every field", config: `{
			"prefix":"app1.",
			"token":{"locations":["cookies","headers","query_string"],"header_name":"X-Auth","header_type":"JWT","cookie_name":"c","query_string_name":"t","max_bytes":4096},
			"jwt":{"algorithms":["HS512","RS256"],"hmac_secrets":[{"kid":"a","secret_env":"JWT_SECRET_KEY"}],"public_keys":[{"kid":"r","pem":` + jsonString(rsaPEM) + `}],
				"leeway":"30s","issuers":["https://i"],"audiences":["api"],"token_types":["access"]},
			"missing_token":"deny","invalid_token":"allow","fail_mode":"open","max_staleness":"2m",
			"responses":{"message_key":"error","revoked":{"status":403,"message":"gone"},"missing":{"status":401,"message":""},
				"expired":{"status":401,"message":"old"},"invalid":{"status":400,"message":"bad"},"unavailable":{"status":503,"message":"later"}},
			"cache":{"max_entries":10},
			"sync":{"cluster":"src","authority":"src.local","path":"/feed?x=1","headers":{"authorization":"Bearer t"},"interval":"10s","timeout":"3s",
				"max_body_bytes":2048,"max_entries":50,"jitter":0.2,"lease_ttl":"40s","max_backoff":"5m"}}`,
			check: func(t *testing.T, c *Config) {
				if c.Prefix != "app1." || c.Token.HeaderName != "X-Auth" || c.Token.MaxBytes != 4096 || c.JWT.Leeway.D() != 30*time.Second {
					t.Fatalf("parsed = %+v", c)
				}
				cl := claimsAt(testNow, "env")
				cl["iss"], cl["aud"] = "https://i", "api"
				tok := sign(t, jwt.SigningMethodHS512, []byte("from-env"), cl, map[string]any{"kid": "a"})
				if _, rej := newVerifier(c, func() time.Time { return testNow }).verify(tok); rej != nil {
					t.Fatalf("secret_env not resolved: a token signed with the variable's value: %s", rej.message)
				}
				if !c.KeyedByIssuer() || c.FailMode != FailOpen || c.MaxStaleness.D() != 2*time.Minute || c.Cache.MaxEntries != 10 {
					t.Fatalf("parsed = %+v", c)
				}
				if c.Sync.Cluster != "src" || c.Sync.LeaseTTL.D() != 40*time.Second || c.Sync.Jitter != 0.2 || c.Sync.Headers["authorization"] != "Bearer t" {
					t.Fatalf("sync = %+v", c.Sync)
				}
			}},
		{name: "unknown field", config: `{"prefx":"a"}`, wantErr: `unknown field "prefx"`},
		{name: "trailing data", config: `{` + secretCfg + `} {}`, wantErr: "trailing data"},
		{name: "not json", config: `prefix: a`, wantErr: "invalid character"},
		{name: "bad duration", config: `{"max_staleness":"5 minutes",` + secretCfg + `}`, wantErr: "bad duration"},
		{name: "duration as number", config: `{"max_staleness":5,` + secretCfg + `}`, wantErr: "duration string"},
		{name: "empty prefix", config: `{"prefix":"",` + secretCfg + `}`, wantErr: "prefix"},
		{name: "no locations", config: `{"token":{"locations":[]},` + secretCfg + `}`, wantErr: "token.locations"},
		{name: "unknown location", config: `{"token":{"locations":["form"]},` + secretCfg + `}`, wantErr: `unknown location "form"`},
		{name: "location twice", config: `{"token":{"locations":["headers","headers"]},` + secretCfg + `}`, wantErr: "listed twice"},
		{name: "cookie location without name", config: `{"token":{"locations":["cookies"],"cookie_name":""},` + secretCfg + `}`, wantErr: "token.cookie_name"},
		{name: "query location without name", config: `{"token":{"locations":["query_string"],"query_string_name":""},` + secretCfg + `}`, wantErr: "token.query_string_name"},
		{name: "bad header name", config: `{"token":{"header_name":"Auth orization"},` + secretCfg + `}`, wantErr: "token.header_name"},
		{name: "two-word header type", config: `{"token":{"header_type":"Bearer Token"},` + secretCfg + `}`, wantErr: "token.header_type"},
		{name: "bare token header", config: `{"token":{"header_type":""},` + secretCfg + `}`},
		{name: "max bytes too large", config: `{"token":{"max_bytes":100000},` + secretCfg + `}`, wantErr: "token.max_bytes"},
		{name: "bad missing policy", config: `{"missing_token":"ignore",` + secretCfg + `}`, wantErr: "missing_token"},
		{name: "bad invalid policy", config: `{"invalid_token":"pass",` + secretCfg + `}`, wantErr: "invalid_token"},
		{name: "bad fail mode", config: `{"fail_mode":"half",` + secretCfg + `}`, wantErr: "fail_mode"},
		{name: "staleness below interval", config: `{"max_staleness":"1s",` + secretCfg + `}`, wantErr: "shorter than sync.interval"},
		{name: "status out of range", config: `{"responses":{"revoked":{"status":200}},` + secretCfg + `}`, wantErr: "responses.revoked.status"},
		{name: "empty message key", config: `{"responses":{"message_key":""},` + secretCfg + `}`, wantErr: "responses.message_key"},
		{name: "cache too large", config: `{"cache":{"max_entries":99999999},` + secretCfg + `}`, wantErr: "cache.max_entries"},
		{name: "no algorithms", config: `{"jwt":{"algorithms":[],"hmac_secrets":[{"secret":"s"}]}}`, wantErr: "at least one algorithm"},
		{name: "alg none", config: `{"jwt":{"algorithms":["none"],"hmac_secrets":[{"secret":"s"}]}}`, wantErr: `forbidden algorithm "none"`},
		{name: "unknown alg", config: `{"jwt":{"algorithms":["HS257"],"hmac_secrets":[{"secret":"s"}]}}`, wantErr: `"HS257"`},
		{name: "RS256 without key", config: `{"jwt":{"algorithms":["RS256"]}}`, wantErr: "RS256 allowed but no RSA public key"},
		{name: "key without algorithm", config: `{"jwt":{"algorithms":["HS256"],"hmac_secrets":[{"secret":"s"}],"public_keys":[{"pem":` + jsonString(rsaPEM) + `}]}}`, wantErr: "no algorithm that uses it"},
		{name: "two secret forms", config: `{"jwt":{"hmac_secrets":[{"secret":"s","secret_env":"X"}]}}`, wantErr: "exactly one of"},
		{name: "unset env", config: `{"jwt":{"hmac_secrets":[{"secret_env":"NOPE"}]}}`, wantErr: `"NOPE" is empty`},
		{name: "bad base64 secret", config: `{"jwt":{"hmac_secrets":[{"secret_base64":"!!"}]}}`, wantErr: "secret_base64"},
		{name: "bad pem", config: `{"jwt":{"algorithms":["RS256"],"public_keys":[{"pem":"not a key"}]}}`, wantErr: "no PEM block"},
		{name: "private key pem", config: `{"jwt":{"algorithms":["RS256"],"public_keys":[{"pem":"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"}]}}`, wantErr: "not a public key"},
		{name: "weak rsa", config: `{"jwt":{"algorithms":["RS256"],"public_keys":[{"pem":` + jsonString(pemOf(t, &weakRSA(t).PublicKey)) + `}]}}`, wantErr: "at least 2048"},
		{name: "bad jwks", config: `{"jwt":{"algorithms":["RS256"],"jwks":{"keys":"x"}}}`, wantErr: "not a JWKS document"},
		{name: "empty jwks", config: `{"jwt":{"algorithms":["RS256"],"jwks":{"keys":[]}}}`, wantErr: "1 to 100 keys"},
		{name: "jwks bad curve", config: `{"jwt":{"algorithms":["ES256"],"jwks":{"keys":[{"kty":"EC","crv":"P-999","x":"AA","y":"AA"}]}}}`, wantErr: "unsupported curve"},
		{name: "jwks coordinate of the wrong size", config: `{"jwt":{"algorithms":["ES256"],"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64u(make([]byte, 31)) + `AQ","y":"` + b64u(make([]byte, 32)) + `"}]}}}`, wantErr: "coordinates must be 32 bytes"},
		{name: "jwks point not on the curve", config: `{"jwt":{"algorithms":["ES256"],"jwks":{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64u(append(make([]byte, 31), 1)) + `","y":"` + b64u(append(make([]byte, 31), 2)) + `"}]}}}`, wantErr: "not on the curve"},
		{name: "jwks alg mismatch", config: `{"jwt":{"algorithms":["ES256","RS256"],"jwks":` + jwksOf(t, jwkEC("e", "RS256", &k.p256.PublicKey)) + `,"public_keys":[{"pem":` + jsonString(rsaPEM) + `}]}}`, wantErr: "cannot serve"},
		{name: "jwks as a string", config: `{"jwt":{"algorithms":["ES256"],"jwks":` + jsonString(jwksOf(t, jwkEC("e", "", &k.p256.PublicKey))) + `}}`},
		{name: "trust upstream", config: `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"}}}`},
		{name: "trust upstream with keys", config: `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"},"hmac_secrets":[{"secret":"s"}]}}`, wantErr: "verifies no signatures"},
		{name: "trust upstream bad header", config: `{"jwt":{"trust_upstream":{"payload_header":""}}}`, wantErr: "payload_header"},
		{name: "unknown token type", config: `{"jwt":{"token_types":["id"],"hmac_secrets":[{"secret":"s"}]}}`, wantErr: `unknown token type "id"`},
		{name: "bad sync path", config: `{"sync":{"path":"feed"},` + secretCfg + `}`, wantErr: "sync.path"},
		{name: "sync disabled", config: `{"sync":{"cluster":""},` + secretCfg + `}`},
		{name: "several errors at once", config: `{"fail_mode":"x","missing_token":"y",` + secretCfg + `}`, wantErr: "missing_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.config), getenv)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConfig() error = %v; want ErrInvalidConfig containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig() = %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestConfigErrorNeverEchoesSecrets(t *testing.T) {
	_, err := ParseConfig([]byte(`{"fail_mode":"x","jwt":{"hmac_secrets":[{"secret":"TOPSECRET"}]}}`), nil)
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error = %v; must fail without quoting the secret", err)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestSyncHeadersFromEnv: sync.headers_env reads a feed token from the VM's environment, so
// it stays out of configuration dumps; a missing variable is an error naming it.
func TestSyncHeadersFromEnv(t *testing.T) {
	base := `{"jwt":{"hmac_secrets":[{"secret":"s3cret-s3cret-s3cret-s3cret-s3cret"}]},"sync":`
	env := map[string]string{"FEED_AUTH": "Bearer feed-token-value", "BROKEN": "a\r\nx-evil: 1"}
	getenv := func(k string) string { return env[k] }
	cfg, err := ParseConfig([]byte(base+`{"headers":{"x-tenant":"t1"},"headers_env":{"authorization":"FEED_AUTH"}}}`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sync.Headers; got["authorization"] != "Bearer feed-token-value" || got["x-tenant"] != "t1" {
		t.Fatalf("sync headers = %q", got)
	}
	for _, tt := range []struct{ sync, want string }{
		{`{"headers_env":{"authorization":"UNSET"}}`, `sync.headers_env.authorization: environment variable "UNSET" is not set`},
		{`{"headers_env":{"authorization":"BROKEN"}}`, `environment variable "BROKEN" holds a line break`},
		{`{"headers":{"Authorization":"x"},"headers_env":{"authorization":"FEED_AUTH"}}`, `sync.headers_env: "authorization" is also in headers`},
		{`{"headers_env":{"host":"FEED_AUTH"}}`, `sync.headers_env: "host" cannot be set`},
		{`{"headers_env":{"authorization":""}}`, `want the name of an environment variable`},
	} {
		_, err := ParseConfig([]byte(base+tt.sync+`}`), getenv)
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("sync %s: %v; want %q", tt.sync, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), "feed-token-value") || strings.Contains(err.Error(), "x-evil")) {
			t.Errorf("sync %s: the error echoes a variable's value: %v", tt.sync, err)
		}
	}
}
