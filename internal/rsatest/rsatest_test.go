package rsatest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

// TestKeyE3SignsAndVerifies: the key is 2048 bits with e = 3, and crypto/rsa signs with it
// and verifies its signatures (and refuses another message's).
func TestKeyE3SignsAndVerifies(t *testing.T) {
	k, err := KeyE3(2048)
	if err != nil {
		t.Fatal(err)
	}
	if k.E != 3 || k.N.BitLen() != 2048 {
		t.Fatalf("key e=%d, %d bits; want e=3, 2048 bits", k.E, k.N.BitLen())
	}
	sum := sha256.Sum256([]byte("message"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("own signature refused: %v", err)
	}
	other := sha256.Sum256([]byte("other"))
	if rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, other[:], sig) == nil {
		t.Fatal("signature accepted for another message")
	}
}
