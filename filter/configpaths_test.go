package filter

// Configuration paths where a token was taken for more than it is.

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/jwkssync"
)

// TestTrustUpstreamMetadataChecksIssuers: jwt.issuers and jwt.audiences are enforced on the
// payload_header path (VerifyPayload runs checkClaims), but payload_in_metadata's metadataInfo
// once read only exp, nbf, jti and type: a token jwt_authn accepted from another provider's
// issuer was let through as valid. It now checks the issuer; jwt.audiences, whose metadata
// form it cannot read in full, is refused with payload_in_metadata at configuration.
func TestTrustUpstreamMetadataChecksIssuers(t *testing.T) {
	double := func(f float64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, math.Float64bits(f))
		return b
	}
	path := func(claim string) []string {
		return []string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", claim}
	}
	cfg := `{"jwt":{"trust_upstream":{"payload_in_metadata":"payload"},"issuers":["https://auth.example.com"]},` +
		`"sync":{"cluster":""},"missing_token":"deny"}`
	if _, err := ParseConfig([]byte(`{"jwt":{"trust_upstream":{"payload_in_metadata":"payload"},"audiences":["orders-api"]},"sync":{"cluster":""}}`), nil); err == nil {
		t.Error("jwt.audiences with payload_in_metadata accepted; want it refused (not checked there)")
	}
	// Control: the same claims through payload_header are refused (422).
	t.Run("control: payload_header refuses", func(t *testing.T) {
		f := start(t, `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"},"issuers":["https://auth.example.com"],"audiences":["orders-api"]},"sync":{"cluster":""}}`)
		f.keyed = true
		f.publish("jtiguard.", testNow, nil, nil)
		pl := base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"hd-1","sub":"user-1","iss":"https://auth.example.com","aud":"billing-api","exp":` +
			strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10) + `}`))
		if _, resp := f.request([][2]string{{"x-jwt-payload", pl}}); resp == nil || resp.StatusCode != 422 {
			t.Fatalf("payload_header with another audience: %+v; want 422", resp)
		}
	})
	for _, tc := range []struct {
		name     string
		iss, aud string
		want     int
	}{
		{"another issuer", "https://other-idp.example.com", "orders-api", 422},
		{"no issuer", "", "orders-api", 422},
		{"the issuer", "https://auth.example.com", "billing-api", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{t: t, now: testNow, keyed: true}
			opt := proxytest.NewEmulatorOption().
				WithVMContext(newVMContext(func() time.Time { return f.now })).
				WithPluginConfiguration([]byte(cfg)).
				WithProperty(path("jti"), []byte("md-1")).
				WithProperty(path("sub"), []byte("user-1")).
				WithProperty(path("aud"), []byte(tc.aud)).
				WithProperty(path("exp"), double(float64(testNow.Add(time.Hour).Unix())))
			if tc.iss != "" {
				opt = opt.WithProperty(path("iss"), []byte(tc.iss))
			}
			host, reset := proxytest.NewHostEmulator(opt)
			defer reset()
			f.host = host
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				t.Fatalf("start: %v %q", st, host.GetCriticalLogs())
			}
			f.publish("jtiguard.", testNow, nil, nil)
			_, resp := f.request(nil)
			switch {
			case tc.want == 0 && resp != nil:
				t.Fatalf("metadata payload of the configured issuer: %d %s; want it let through", resp.StatusCode, resp.Data)
			case tc.want != 0 && (resp == nil || int(resp.StatusCode) != tc.want):
				t.Fatalf("metadata payload with iss %q, config issuers [https://auth.example.com]: %+v; want %d (as payload_header mode answers)",
					tc.iss, resp, tc.want)
			}
		})
	}
}

// TestRemoteKeysOfAnotherConfigurationSharingThePrefix: two configurations with the same
// prefix in one shared-data store (the old one draining beside the new after a configuration
// change, or two WasmPlugins on one Istio proxy) once shared <prefix>jwks.*: the lease holder
// fetched its own remote_jwks endpoint, and every other configuration adopted what it
// published, so configuration B (IdP B) accepted tokens signed by IdP A's keys. The key set's
// records are now named after the endpoint (jwkssync.KeysForEndpoint).
func TestRemoteKeysOfAnotherConfigurationSharingThePrefix(t *testing.T) {
	k := testKeys()
	// B: the new configuration, IdP B's endpoint.
	f := start(t, `{"jwt":{"algorithms":["ES256"],"remote_jwks":{"cluster":"idp-b","authority":"idp-b.example","path":"/jwks.json"}},`+
		`"sync":{"cluster":""},"max_staleness":"0s"}`)
	f.publish("jtiguard.", testNow, nil, nil)

	// A: the old configuration, IdP A's endpoint, running in the same store (same prefix).
	cfgA, err := ParseConfig([]byte(`{"jwt":{"algorithms":["ES256"],"remote_jwks":{"cluster":"idp-a","authority":"idp-a.example","path":"/jwks.json"}},"sync":{"cluster":""}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := jwkssync.NewSyncer(*cfgA.JWT.RemoteJWKS, jwkssync.Options{
		Keys: jwkssync.KeysForEndpoint("jtiguard.", *cfgA.JWT.RemoteJWKS), Store: hostStore{}, Host: hostCalls{},
		Now: func() time.Time { return f.now }, Builder: cfgA.JWT.jwks, HolderID: 0xA,
	})
	// Run A first so it holds the lease (as the old configuration already does at a change).
	// B's earlier tick may have taken it: let it lapse, as when B started after A.
	calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	for _, c := range calls {
		f.host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "503"}}, nil, nil)
	}
	f.now = f.now.Add(time.Hour) // any lease B took has expired
	a.Tick()
	calls = f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) == 0 || calls[len(calls)-1].Upstream != "idp-a" {
		t.Fatalf("A did not fetch: %+v", calls)
	}
	f.host.CallOnHttpCallResponse(calls[len(calls)-1].CalloutID, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, nil,
		[]byte(jwksOf(t, jwkEC("idp-a-key", "ES256", &k.p256.PublicKey))))
	f.host.Tick() // B adopts the shared key set
	f.publish("jtiguard.", f.now, nil, nil)

	tokA := func() string {
		c := claimsAt(f.now, "from-idp-a")
		return sign(t, jwt.SigningMethodES256, k.p256, c, map[string]any{"kid": "idp-a-key"})
	}()
	if _, resp := f.request(bearer(tokA)); resp == nil {
		t.Fatalf("configuration B (remote_jwks cluster idp-b) let through a token signed by IdP A's key, fetched by another configuration under the same prefix")
	}
}

// TestReviewR2DecisionPropertyForUncheckedSignature: with remote_jwks, fail_mode open and no
// key set yet, a token no key verifies passes unchecked (its signature never verified: any
// key signed it). README says jtiguard_allowed means "a valid token, checked against the
// list" and that RBAC or CEL may read it; the unchecked cases are to read
// jtiguard_allowed_unchecked. The filter wrote jtiguard_allowed for it (and cached the token
// as verified), so a policy that trusted jtiguard_allowed trusted a forged token.
func TestDecisionPropertyForUncheckedSignature(t *testing.T) {
	f := start(t, jwksConfig(`,"fail_mode":"open","decision_property":"d"`))
	f.publish("jtiguard.", testNow, nil, nil)
	forged := es256(t, "k1", "forged", secondP256()) // signed by a key the IdP never published
	if _, resp := f.request(bearer(forged)); resp != nil {
		t.Fatalf("setup: fail_mode open before the first key set: %d %s; want it through", resp.StatusCode, resp.Data)
	}
	if got, _ := f.host.GetProperty([]string{"d"}); string(got) != "jtiguard_allowed_unchecked" {
		t.Fatalf("decision for a token whose signature was not checked = %q; want jtiguard_allowed_unchecked", got)
	}
}
