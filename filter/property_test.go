package filter

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
)

// The property the product is sold on: a request that carries a revoked token anywhere is
// never allowed, whatever else it carries, however the token is wrapped or encoded, whether
// its signature checks out, and under every missing_token and invalid_token policy.

// propertyFixture is one plugin with every location on, and a list revoking one jti, every
// token of one session (sid), and every token of one subject issued before a cutoff.
func propertyFixture(tb testing.TB) (*pluginContext, func()) {
	tb.Helper()
	quietLogs(tb)
	f := &fixture{now: testNow}
	var p *pluginContext
	vm := newVMContext(func() time.Time { return f.now })
	cfg := `{"token":{"locations":["headers","cookies","query_string","json"]},"jwt":{"hmac_secrets":[{"secret":` +
		jsonString(string(testKeys().hs)) + `}]},"sync":{"cluster":""},` + propertyRules + `}`
	opt := proxytest.NewEmulatorOption().WithVMContext(&capturingVM{vmContext: vm, got: &p}).
		WithPluginConfiguration([]byte(cfg))
	host, reset := proxytest.NewHostEmulator(opt)
	f.host = host
	host.StartPlugin()
	f.t = &testing.T{}
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked-jti"}, {claim: "sid", jti: "revoked-session"}},
		[]cutoffEntry{{sub: "cut-user", before: testNow.Add(-time.Hour)}})
	return p, reset
}

// propertyRules are per-route rules that relax what a route requires as far as rules can:
// none of them may let a revoked token through.
const propertyRules = `"rules":[{"match":{"path_prefix":"/public"},"skip":true},
	{"match":{"path":"/auth/refresh","methods":["POST"]},"token_types":["refresh"],"missing_token":"allow","invalid_token":"allow"}]`

// onRoute moves a request built for /api to one of the routes propertyRules name (0: none).
func onRoute(headers [][2]string, route byte) [][2]string {
	to := []string{"/api", "/public/page", "/auth/refresh"}[route%3]
	for i := range headers {
		if headers[i][0] == ":path" {
			headers[i][1] = to + strings.TrimPrefix(headers[i][1], "/api")
		}
	}
	return headers
}

// revokedToken is a token the list revokes: by jti (how 0), by its subject's cutoff (1), or
// by its session (2).
func revokedToken(tb testing.TB, how byte, refresh bool, garble byte) string {
	c := claimsAt(testNow, "revoked-jti")
	switch how % 3 {
	case 1:
		c["jti"], c["sub"] = "fine-jti", "cut-user"
		c["iat"], c["nbf"] = testNow.Add(-2*time.Hour).Unix(), testNow.Add(-2*time.Hour).Unix()
	case 2:
		c["jti"], c["sid"] = "fine-jti", "revoked-session"
	}
	if refresh {
		c["type"] = "refresh"
	}
	tok := sign(tb, jwt.SigningMethodHS256, testKeys().hs, c, nil)
	h, p, s := splitToken(tok)
	switch garble % 6 {
	case 1:
		s = "not-the-signature"
	case 2:
		s += "==AAAA" // PyJWT stops at complete padding
	case 3:
		s = strings.NewReplacer("-", "+", "_", "/").Replace(s) // the other alphabet
	case 4:
		s += "!!" // junk PyJWT's decoder skips
	case 5:
		s = sign(tb, jwt.SigningMethodHS256, testKeys().hsOther, c, nil) // another key's token...
		_, _, s = splitToken(s)                                          // ...signature
	}
	return h + "." + p + "." + s
}

func splitToken(tok string) (h, p, s string) {
	parts := strings.SplitN(tok, ".", 3)
	return parts[0], parts[1], parts[2]
}

// placeToken puts token into a request: in which container, how encoded, what around it.
func placeToken(container, encoding byte, prefix, suffix, token, decoy string) ([][2]string, []byte) {
	enc := token
	switch encoding % 5 {
	case 1:
		if container%5 >= 2 {
			enc = strings.ReplaceAll(token, ".", "%2E")
		}
	case 2:
		if container%5 == 2 {
			enc = `"` + strings.ReplaceAll(token, ".", `\056`) + `"`
		}
	case 3:
		if container%5 == 4 {
			enc = strings.ReplaceAll(token, ".", `\u002e`)
		}
	case 4:
		enc = "Bearer" + string(rune(pick(encoding, 0xa0, 0x85, 0x3000, 0x2003, 0x1c))) + token
	}
	v := prefix + enc + suffix
	headers := [][2]string{{":method", "POST"}, {":path", "/api"}, {":authority", "app"}}
	if decoy != "" {
		headers = append(headers, [2]string{"authorization", "Bearer " + decoy})
	}
	var body []byte
	switch container % 5 {
	case 0:
		headers = append(headers, [2]string{"authorization", v})
	case 1:
		headers = append(headers, [2]string{"cookie", "refresh_token_cookie=" + v})
	case 2:
		headers = append(headers, [2]string{"cookie", v})
	case 3:
		headers[1][1] = "/api?" + v
	case 4:
		headers = append(headers, [2]string{"content-type", "application/json"})
		body = []byte(v)
	}
	return headers, body
}

func pick(b byte, xs ...int) int { return xs[int(b)%len(xs)] }

func FuzzRevokedNeverAllowed(f *testing.F) {
	f.Add(byte(0), byte(0), byte(0), byte(0), "Bearer ", "", byte(0), false, true)
	f.Add(byte(0), byte(4), byte(0), byte(1), "", "", byte(2), false, true)
	f.Add(byte(2), byte(2), byte(3), byte(2), "a=1; access_token_cookie=", "; b=2", byte(1), false, false)
	f.Add(byte(3), byte(1), byte(1), byte(3), "%6Awt=", "&jwt=x", byte(2), true, true)
	f.Add(byte(4), byte(3), byte(2), byte(4), `{"access_token":"x","access_token":"`, `"}`, byte(1), true, false)
	f.Add(byte(1), byte(0), byte(5), byte(5), "", "", byte(0), true, true)
	p, reset := propertyFixture(f)
	defer reset()
	decoy := sign(f, jwt.SigningMethodHS256, testKeys().hs, claimsAt(testNow, "decoy-jti"), nil)
	f.Fuzz(func(t *testing.T, container, encoding, garble, policy byte, prefix, suffix string, how byte, refresh, withDecoy bool) {
		setPolicies(p, []Policy{PolicyAllow, PolicyDeny}[policy&1], []Policy{PolicyAllow, PolicyDeny}[policy>>1&1])
		d := ""
		if withDecoy {
			d = decoy
		}
		tok := revokedToken(t, how, refresh, garble)
		if (strings.HasSuffix(prefix, `\`)) && encoding%5 != 0 {
			t.Skip() // the prefix would escape the encoded dot: the app sees no token either
		}
		headers, body := placeToken(container, encoding, prefix, suffix, tok, d)
		headers = onRoute(headers, policy>>2)
		got := p.decide(headers, body, true)
		if got.allow {
			t.Fatalf("revoked token allowed: container %d encoding %d garble %d policy %d route %d\nheaders %q\nbody %q",
				container%5, encoding%5, garble%6, policy&3, policy>>2%3, headers, body)
		}
		if !strings.Contains(string(got.body), "revoked") && got.status != 401 {
			// Denied, but not as revoked: acceptable only where the request is refused before
			// any token is read (there is none such today); report it to see the shape.
			t.Logf("denied as %d %s", got.status, got.body)
		}
	})
}

// TestRevokedNeverAllowedShapes runs the fuzz target's seed shapes as a table in every CI run,
// with every container, encoding, garbling and policy combined.
func TestRevokedNeverAllowedShapes(t *testing.T) {
	p, reset := propertyFixture(t)
	defer reset()
	decoy := sign(t, jwt.SigningMethodHS256, testKeys().hs, claimsAt(testNow, "decoy-jti"), nil)
	n := 0
	for container := byte(0); container < 5; container++ {
		for encoding := byte(0); encoding < 5; encoding++ {
			for garble := byte(0); garble < 6; garble++ {
				for policy := byte(0); policy < 12; policy++ { // missing, invalid and the route
					for how := byte(0); how < 3; how++ {
						for _, withDecoy := range []bool{false, true} {
							setPolicies(p, []Policy{PolicyAllow, PolicyDeny}[policy&1], []Policy{PolicyAllow, PolicyDeny}[policy>>1&1])
							d := ""
							if withDecoy {
								d = decoy
							}
							tok := revokedToken(t, how, garble%2 == 0, garble)
							headers, body := placeToken(container, encoding, "x ", " y", tok, d)
							headers = onRoute(headers, policy>>2)
							got := p.decide(headers, body, true)
							if got.allow || got.status != 401 {
								t.Errorf("container %d encoding %d garble %d policy %d revoked by %d decoy %v: %s",
									container, encoding, garble, policy, how, withDecoy, describe(got))
							}
							n++
						}
					}
				}
			}
		}
	}
	t.Logf("%d request shapes with a revoked token: every one denied as revoked", n)

	// Control: the fixture does let a good token through, so the denials above are the
	// list's doing.
	setPolicies(p, PolicyAllow, PolicyDeny)
	for container := byte(0); container < 5; container++ {
		c := claimsAt(testNow, "good-jti")
		c["sid"] = "live-session" // a session the list does not revoke
		if container == 1 {       // the refresh cookie
			c["type"] = "refresh"
		}
		good := sign(t, jwt.SigningMethodHS256, testKeys().hs, c, nil)
		headers, body := placeToken(container, 0, "", "", good, "")
		if container == 0 {
			headers, body = placeToken(container, 0, "Bearer ", "", good, "")
		}
		if container == 2 {
			headers, body = placeToken(container, 0, "access_token_cookie=", "", good, "")
		}
		if container == 3 {
			headers, body = placeToken(container, 0, "jwt=", "", good, "")
		}
		if container == 4 {
			headers, body = placeToken(container, 0, `{"access_token":"`, `"}`, good, "")
		}
		if got := p.decide(headers, body, true); !got.allow {
			t.Errorf("control, container %d: a valid token was denied: %s", container, describe(got))
		}
	}
}

func describe(d *decision) string {
	if d.allow {
		return "allowed"
	}
	return fmt.Sprintf("%d %s", d.status, d.body)
}

// setPolicies sets the top level's missing_token and invalid_token of a started plugin.
func setPolicies(p *pluginContext, missing, invalid Policy) {
	p.cfg.MissingToken, p.cfg.InvalidToken = missing, invalid
	p.cfg.topPolicy.missing, p.cfg.topPolicy.invalid = missing, invalid
}
