package jwkssync

import (
	"bytes"
	"testing"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// FuzzAccept: whatever an endpoint sends, Accept neither panics nor keeps what it should not:
// an accepted document holds 1 to 100 keys, and accepting the stored document again gives
// the same document (readers on other VMs rebuild exactly what the holder accepted).
func FuzzAccept(f *testing.F) {
	k := testKeys()
	f.Add([]byte(jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey))))
	f.Add([]byte(jwks(jwkRSA("r", "RS256", &k.rsa.PublicKey), jwkRSA("w", "", &k.weakRSA.PublicKey))))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""},1,null,[]]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte("\xff"))
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"HS256", "RS256", "ES256", "EdDSA"}, HMAC: []jwtverify.HMACKey{{Secret: []byte(hsSecret)}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		acc, err := b.Accept(doc)
		if err != nil {
			if acc != nil {
				t.Fatal("refusal with a result")
			}
			return
		}
		if acc.Keys < 1 || acc.Keys > jwtverify.MaxJWKSKeys || acc.Set == nil {
			t.Fatalf("accepted %d keys", acc.Keys)
		}
		again, err := b.Accept(acc.Doc)
		if err != nil || !bytes.Equal(again.Doc, acc.Doc) || len(again.Skipped) != 0 {
			t.Fatalf("the stored document does not rebuild the same: %v", err)
		}
	})
}
