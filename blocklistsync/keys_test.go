package blocklistsync

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

// claimMessageOf builds the documented claim message the slow, obvious way.
func claimMessageOf(domain byte, iss, claim, value string) []byte {
	msg := []byte{domain}
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(iss)))
	msg = append(msg, iss...)
	msg = binary.LittleEndian.AppendUint32(msg, uint32(len(claim)))
	msg = append(msg, claim...)
	return append(msg, value...)
}

func TestClaimKeyIsTheDocumentedHash(t *testing.T) {
	h := testHasher
	msg := claimMessageOf(domainClaim, "https://i", "sid", "s-1")
	if got, want := h.ClaimKey("https://i", "sid", "s-1"), sipHash24(h.k0, h.k1, msg); got != want {
		t.Fatalf("ClaimKey = %#x; want SipHash of the documented message %#x", got, want)
	}
	k, id := claimKeyAndID(h, "https://i", "https://i", "sid", "s-1")
	msg[0] |= domainID
	if k != h.ClaimKey("https://i", "sid", "s-1") || id != sipHash24(h.k0, h.k1, msg) || id == k {
		t.Fatalf("claimKeyAndID = %#x, %#x", k, id)
	}
	if kb, idb := claimKeyAndID(h, []byte("https://i"), []byte("https://i"), []byte("sid"), []byte("s-1")); kb != k || idb != id {
		t.Fatal("[]byte and string inputs hash differently")
	}
}

// TestClaimKeysAreSeparated: the claim's name, the issuer and the value are each part of the
// key, unambiguously, and no claim key is the key of a jti or a subject of the same text.
func TestClaimKeysAreSeparated(t *testing.T) {
	h := testHasher
	distinct := []struct {
		name string
		a, b uint64
	}{
		{"sid=x vs other=x", h.ClaimKey("", "sid", "x"), h.ClaimKey("", "other", "x")},
		{"claim/value boundary", h.ClaimKey("", "sida", "b"), h.ClaimKey("", "sid", "ab")},
		{"issuer/claim boundary", h.ClaimKey("ab", "c", "v"), h.ClaimKey("a", "bc", "v")},
		{"issuer matters", h.ClaimKey("https://a", "sid", "x"), h.ClaimKey("https://b", "sid", "x")},
		{"claim vs jti", h.ClaimKey("", "sid", "x"), h.TokenKey("", "x")},
		{"claim named jti vs jti", h.ClaimKey("", "jti", "x"), h.TokenKey("", "x")},
		{"claim named sub vs subject", h.ClaimKey("", "sub", "x"), h.SubjectKey("", "x")},
		{"claim vs jti of the whole message", h.ClaimKey("", "sid", "x"), h.TokenKey("", "\x03\x00\x00\x00sidx")},
	}
	for _, d := range distinct {
		if d.a == d.b {
			t.Errorf("%s: keys collide (%#x)", d.name, d.a)
		}
	}
	other := Hasher{h.k0 ^ 1, h.k1}
	if h.ClaimKey("", "sid", "x") == other.ClaimKey("", "sid", "x") {
		t.Fatal("the hasher's key does not change a claim key")
	}
}

// TestClaimKeyLongInputs: inputs around and past the stack buffer's size hash as the whole
// documented message does, whichever path computes them.
func TestClaimKeyLongInputs(t *testing.T) {
	h := testHasher
	rng := rand.New(rand.NewPCG(7, 9))
	for range 500 {
		iss := strings.Repeat("i", rng.IntN(600))
		claim := strings.Repeat("c", 1+rng.IntN(MaxClaimNameLen))
		value := strings.Repeat("v", 1+rng.IntN(MaxJTILen))
		msg := claimMessageOf(domainClaim, iss, claim, value)
		want := nonZero(sipHash24(h.k0, h.k1, msg))
		if got := h.ClaimKey(iss, claim, value); got != primary(want) {
			t.Fatalf("len(iss)=%d len(claim)=%d len(value)=%d: ClaimKey %#x; whole message %#x", len(iss), len(claim), len(value), got, want)
		}
		msg[0] |= domainID
		if _, id := claimKeyAndID(h, iss, iss, claim, value); id != nonZero(sipHash24(h.k0, h.k1, msg)) {
			t.Fatalf("len(iss)=%d: claim ID differs from the whole message's hash", len(iss))
		}
	}
}

// TestClaimKeyAllocatesNothing: the filter computes a claim key per request.
func TestClaimKeyAllocatesNothing(t *testing.T) {
	iss, sid := "https://auth.example.com", "08a5019c-17e1-4977-8f42-65a12843ea02"
	if n := testing.AllocsPerRun(100, func() { _ = testHasher.ClaimKey(iss, "sid", sid) }); n != 0 {
		t.Fatalf("ClaimKey allocates %.0f times; want 0", n)
	}
}

func BenchmarkClaimKey(b *testing.B) {
	sid := "08a5019c-17e1-4977-8f42-65a12843ea02"
	b.ReportAllocs()
	for b.Loop() {
		if benchHasher.ClaimKey("https://auth.example.com", "sid", sid) == 0 {
			b.Fatal("zero key")
		}
	}
}

// claimEntry is the entry a feed's {"claim", "value", "exp", "iss"} parses into.
func claimEntry(iss, claim, value string, exp uint32) Entry {
	k, id := claimKeyAndID(testHasher, iss, iss, claim, value)
	return Entry{Key: k, ID: id, Exp: exp}
}

// FuzzClaimKey: for any issuer, claim and value, a claim key and ID are the SipHash of the
// documented message, on the stack path and the streaming one alike.
func FuzzClaimKey(f *testing.F) {
	f.Add("https://i", "sid", "s-1")
	f.Add("", "c", "")
	f.Add(strings.Repeat("i", 400), "sid", strings.Repeat("v", 256))
	f.Fuzz(func(t *testing.T, iss, claim, value string) {
		h := testHasher
		msg := claimMessageOf(domainClaim, iss, claim, value)
		k, id := claimKeyAndID(h, iss, iss, claim, value)
		if want := primary(nonZero(sipHash24(h.k0, h.k1, msg))); k != want || h.ClaimKey(iss, claim, value) != want {
			t.Fatalf("key %#x; the documented message hashes to %#x", k, want)
		}
		msg[0] |= domainID
		if want := nonZero(sipHash24(h.k0, h.k1, msg)); id != want {
			t.Fatalf("ID %#x; want %#x", id, want)
		}
		if kb, idb := claimKeyAndID(h, []byte(iss), []byte(iss), []byte(claim), []byte(value)); kb != k || idb != id {
			t.Fatal("[]byte and string inputs differ")
		}
	})
}
