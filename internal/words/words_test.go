package words

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEqualIsStringEquality(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		n := r.IntN(40)
		a := make([]byte, n)
		for i := range a {
			a[i] = "ab\x00\xff"[r.IntN(4)]
		}
		b := append([]byte(nil), a...)
		if n > 0 && r.IntN(2) == 0 {
			b[r.IntN(n)] ^= byte(1 + r.IntN(255))
		}
		if r.IntN(8) == 0 {
			b = append(b, 'a')
		}
		if got, want := Equal(string(a), string(b)), string(a) == string(b); got != want {
			t.Fatalf("Equal(%q, %q) = %v; want %v", a, b, got, want)
		}
	}
}

func TestHashDependsOnEveryByteAndTheSeed(t *testing.T) {
	s := strings.Repeat("eyJqdGkiOiJ4In0", 9)
	seen := map[uint64]string{}
	for i := 0; i <= len(s); i++ {
		for _, v := range []string{s[:i], s[:i] + "!"} {
			h := Hash(v, 1)
			if prev, ok := seen[h]; ok && prev != v {
				t.Fatalf("Hash(%q) = Hash(%q)", v, prev)
			}
			seen[h] = v
		}
	}
	for i := range len(s) {
		b := []byte(s)
		b[i] ^= 1
		if Hash(string(b), 1) == Hash(s, 1) {
			t.Fatalf("flipping byte %d keeps the hash", i)
		}
	}
	if Hash(s, 1) == Hash(s, 2) {
		t.Fatal("the seed does not change the hash")
	}
}

func TestLoad64IsLittleEndian(t *testing.T) {
	if got := Load64("\x01\x02\x03\x04\x05\x06\x07\x08\x09", 1); got != 0x0908070605040302 {
		t.Fatalf("Load64 = %#x", got)
	}
	if got := Load32("\x01\x02\x03\x04\x05", 1); got != 0x05040302 {
		t.Fatalf("Load32 = %#x", got)
	}
}
