package jwtverify_test

import (
	"crypto"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// filterClaims is what the filter decodes claims into with golang-jwt today.
type filterClaims struct {
	jwt.RegisteredClaims
	Type *string `json:"type"`
}

// benchSetup is one algorithm's token, our verifier and golang-jwt's parser as the filter
// configures it (WithValidMethods, WithStrictDecoding, WithLeeway, WithIssuedAt).
func benchSetup(b *testing.B, alg string) (string, *jwtverify.Verifier, *jwt.Parser, jwt.Keyfunc) {
	var a algCase
	for _, c := range everyAlgorithm(b) {
		if c.alg == alg {
			a = c
		}
	}
	now := func() time.Time { return testNow }
	v := newVerifier(b, a.keys(b, false), jwtverify.Options{Leeway: 5 * time.Second, Now: now})
	claims := claimsAt(testNow, "2b5c0d1e-3f4a-4b6c-8d7e-9f0a1b2c3d4e")
	token := sign(b, alg, a.key, claims, nil)
	var verifyKey any = a.key // an HMAC secret
	if pk, ok := a.key.(crypto.Signer); ok {
		verifyKey = pk.Public()
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithStrictDecoding(),
		jwt.WithLeeway(5*time.Second), jwt.WithIssuedAt(), jwt.WithTimeFunc(now))
	return token, v, parser, func(*jwt.Token) (any, error) { return verifyKey, nil }
}

// timed runs op b.N times and reports the median, 99th percentile and maximum of one op.
func timed(b *testing.B, op func()) {
	samples := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range samples {
		start := time.Now()
		op()
		samples[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(samples[len(samples)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(samples[len(samples)-1].Nanoseconds()), "max-ns")
}

// BenchmarkVerify: one verification of a flask-jwt-extended access token, ours and
// golang-jwt's (with the filter's claims struct), in the same run.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		token, v, parser, keyFn := benchSetup(b, alg)
		b.Run(alg+"/jwtverify", func(b *testing.B) {
			var c jwtverify.Claims
			if err := v.Verify(token, &c); err != nil {
				b.Fatal(err)
			}
			timed(b, func() {
				if err := v.Verify(token, &c); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(alg+"/golang-jwt", func(b *testing.B) {
			timed(b, func() {
				var c filterClaims
				if _, err := parser.ParseWithClaims(token, &c, keyFn); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkVerifyMalformed: the paths hostile input reaches most.
func BenchmarkVerifyMalformed(b *testing.B) {
	token, v, parser, keyFn := benchSetup(b, "HS256")
	for name, bad := range map[string]string{
		"segments":  "not-a-token",
		"base64":    "!" + token,
		"signature": token[:len(token)-4] + "AAAA",
	} {
		b.Run(name+"/jwtverify", func(b *testing.B) {
			var c jwtverify.Claims
			timed(b, func() { _ = v.Verify(bad, &c) })
		})
		b.Run(name+"/golang-jwt", func(b *testing.B) {
			timed(b, func() {
				var c filterClaims
				_, _ = parser.ParseWithClaims(bad, &c, keyFn)
			})
		})
	}
}
