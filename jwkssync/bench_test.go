package jwkssync

import (
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// BenchmarkKidMiss is the request path's extra cost for a token naming an unknown kid while a
// key set is held, in a flood of them (a miss was noted less than MissGap ago): the
// verification failure itself is not counted. BenchmarkFirstKidMiss is the first of them.
func BenchmarkKidMiss(b *testing.B) { benchMiss(b, true) }

func BenchmarkFirstKidMiss(b *testing.B) { benchMiss(b, false) }

func benchMiss(b *testing.B, flood bool) {
	r := newRig(b)
	w := r.vm(1)
	k := testKeys()
	w.sync.Tick()
	w.host.answer(200, jsonHeaders, jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey)))
	tok := esToken(b, k.ec2, "unknown", "j")
	var c jwtverify.Claims
	err := w.v.Verify(tok, &c)
	if err == nil {
		b.Fatal("verified")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !flood {
			w.sync.missAt = time.Time{}
		}
		if w.sync.OnVerifyFailure(tok, err) != Reject {
			b.Fatal("verdict")
		}
	}
}

// BenchmarkAcceptAndBuild is what each VM pays once per new key set: checking a JWKS of two
// RSA-2048 and two P-256 keys and building the key set with an inline HMAC secret.
func BenchmarkAcceptAndBuild(b *testing.B) {
	k := testKeys()
	doc := []byte(jwks(jwkRSA("r1", "RS256", &k.rsa.PublicKey), jwkRSA("r2", "", &k.rsa.PublicKey),
		jwkEC("e1", "ES256", &k.ec1.PublicKey), jwkEC("e2", "ES256", &k.ec2.PublicKey)))
	bl, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"HS256", "RS256", "ES256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte(hsSecret)}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if acc, err := bl.Accept(doc); err != nil || acc.Keys != 4 {
			b.Fatal(err)
		}
	}
}
