package filter

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/rsatest"
)

// BenchmarkColdVerify is the native side of the RS256/ES256 attribution in docs/benchmarks.md:
// new tokens (each one verified, then cached) through the filter under the SDK's emulator,
// as the native column of the module table measures them, for HS256, RS256 (2048-bit) and
// ES256 (P-256), and RS256 with a key whose exponent is 3 (RS256e3). It reports each request's p50 and p99 (p50-ns, p99-ns). e2e's
// BenchmarkPKAttribution runs it twice, with Go's assembly and with -tags purego (Go's generic
// code, the code the module runs), next to the module. JTIGUARD_COLD_N sets the tokens per
// algorithm (default 1000).
func BenchmarkColdVerify(b *testing.B) {
	quietEmulator(b)
	n := 1000
	if s := os.Getenv("JTIGUARD_COLD_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("JTIGUARD_COLD_N=%q: want a positive integer", s)
		}
	}
	k := testKeys()
	// A second RSA key, with e = 3 and a kid of its own (tokens without a kid meet the
	// e = 65537 key first): see rsatest.
	e3, err := rsatest.KeyE3(2048)
	if err != nil {
		b.Fatal(err)
	}
	cfg := `{"jwt":{"algorithms":["HS256","RS256","ES256"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) +
		`}],"public_keys":[{"pem":` + jsonString(pemOf(b, &k.rsa.PublicKey)) + `},{"pem":` + jsonString(pemOf(b, &k.p256.PublicKey)) +
		`},{"kid":"e3","pem":` + jsonString(pemOf(b, &e3.PublicKey)) + `}]},"sync":{"cluster":""}}`
	f := &fixture{t: &testing.T{}, now: testNow}
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithVMContext(newVMContext(func() time.Time { return f.now })).WithPluginConfiguration([]byte(cfg)))
	defer reset()
	f.host = host
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		b.Fatalf("start: %v", st)
	}
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "the-revoked-one"}}, nil)
	for _, c := range []struct {
		alg    string
		method jwt.SigningMethod
		key    any
		header map[string]any
	}{{"HS256", jwt.SigningMethodHS256, k.hs, nil}, {"RS256", jwt.SigningMethodRS256, k.rsa, nil},
		{"RS256e3", jwt.SigningMethodRS256, e3, map[string]any{"kid": "e3"}}, {"ES256", jwt.SigningMethodES256, k.p256, nil}} {
		b.Run(c.alg, func(b *testing.B) {
			var samples []time.Duration
			tokens := make([][][2]string, n+20)
			round := 0
			for b.Loop() {
				b.StopTimer()
				round++
				for i := range tokens { // new tokens on every round
					tokens[i] = bearer(sign(b, c.method, c.key, claimsAt(testNow, fmt.Sprintf("cold-%s-%d-%d", c.alg, round, i)), c.header))
				}
				b.StartTimer()
				samples = samples[:0]
				for i, h := range tokens {
					t0 := time.Now()
					_, resp := f.request(h)
					d := time.Since(t0)
					if resp != nil {
						b.Fatalf("%s token %d refused: %d", c.alg, i, resp.StatusCode)
					}
					if i >= 20 { // the first ones warm up
						samples = append(samples, d)
					}
				}
			}
			slices.Sort(samples)
			b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}
