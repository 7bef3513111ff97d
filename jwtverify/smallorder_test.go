package jwtverify

import (
	"crypto/ed25519"
	"crypto/rand"
	"strconv"
	"testing"
)

// forges reports whether the signature R = identity, S = 0 verifies for some of 64 messages
// under pub: what a key of small order allows, and a key of the prime-order group never does.
func forges(pub []byte) bool {
	sig := make([]byte, ed25519.SignatureSize)
	sig[0] = 1 // R: the identity (y = 1); S: zero
	for i := range 64 {
		if ed25519.Verify(ed25519.PublicKey(pub), []byte("payload "+strconv.Itoa(i)), sig) {
			return true
		}
	}
	return false
}

// TestSmallOrderEd25519Forges: every encoding the list refuses, with either sign bit, is a
// key under which crypto/ed25519 verifies a signature nobody made (where it decodes at all);
// generated keys are never refused and never forge.
func TestSmallOrderEd25519Forges(t *testing.T) {
	for i, p := range smallOrderPoints {
		for _, sign := range []byte{0, 0x80} {
			k := p
			k[31] |= sign
			if !smallOrderEd25519(k[:]) {
				t.Errorf("point %d (sign %#x) not refused", i, sign)
			}
			decodes := ed25519.Verify(ed25519.PublicKey(k[:]), nil, make([]byte, 64)) || forges(k[:])
			if decodes && !forges(k[:]) {
				t.Errorf("point %d (sign %#x): refused, but forges nothing", i, sign)
			}
		}
	}
	forged := 0
	for i, p := range smallOrderPoints {
		if forges(p[:]) {
			forged++
		} else {
			t.Logf("point %d does not decode in crypto/ed25519 with sign 0", i)
		}
	}
	if forged < 5 {
		t.Errorf("only %d of the listed points forge in crypto/ed25519; want most (the list is of small-order points)", forged)
	}
	for range 200 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if smallOrderEd25519(pub) || forges(pub) {
			t.Fatalf("a generated key %x refused or forging", pub)
		}
	}
}
