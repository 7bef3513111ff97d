package jwtverify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// partsToken is the module benchmark's cold HS256 token (e2e's claims): its header, payload
// and signature as the filter sees them.
func partsToken(b *testing.B, secret []byte) string {
	now := time.Now().Unix()
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT"})
	p, _ := json.Marshal(map[string]any{"jti": "cold-HS256-1-1234", "sub": "user-1", "type": "access", "fresh": false,
		"iat": now - 60, "nbf": now - 60, "exp": now + 3600})
	enc := base64.RawURLEncoding
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + enc.EncodeToString(m.Sum(nil))
}

// BenchmarkHS256Parts splits one HS256 verification into its pieces, to run in wasm
// (GOOS=wasip1 GOARCH=wasm go test -exec=... -bench HS256Parts) as well as natively.
func BenchmarkHS256Parts(b *testing.B) {
	secret := []byte("a shared secret of 32 bytes!!!!!")
	ks, err := NewKeySet(Keys{Algorithms: []string{"HS256"}, HMAC: []HMACKey{{Secret: secret}}})
	if err != nil {
		b.Fatal(err)
	}
	v, _ := New(ks, Options{})
	tok := partsToken(b, secret)
	b.Logf("token %d bytes", len(tok))
	var c Claims
	if err := v.Verify(tok, &c); err != nil {
		b.Fatal(err)
	}
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			_ = v.Verify(tok, &c)
		}
	})
	d1, d2 := 0, 0
	for i := range tok {
		if tok[i] == '.' {
			if d1 == 0 {
				d1 = i
			} else {
				d2 = i
			}
		}
	}
	buf := make([]byte, 2*len(tok))
	enc := base64.RawURLEncoding.Strict()
	b.Run("copy", func(b *testing.B) {
		for b.Loop() {
			copy(buf, tok)
		}
	})
	b.Run("base64-3", func(b *testing.B) {
		for b.Loop() {
			n, _ := enc.Decode(buf[len(tok):], []byte(tok[:d1]))
			m, _ := enc.Decode(buf[len(tok)+n:], []byte(tok[d1+1:d2]))
			enc.Decode(buf[len(tok)+n+m:], []byte(tok[d2+1:]))
		}
	})
	hdr, _ := enc.DecodeString(tok[:d1])
	pay, _ := enc.DecodeString(tok[d1+1 : d2])
	sig, _ := enc.DecodeString(tok[d2+1:])
	b.Run("utf8-hdr+pay", func(b *testing.B) {
		for b.Loop() {
			utf8.Valid(hdr)
			utf8.Valid(pay)
		}
	})
	b.Run("scanHeader", func(b *testing.B) {
		for b.Loop() {
			var h header
			scanHeader(hdr, &h)
		}
	})
	b.Run("scanPayload", func(b *testing.B) {
		for b.Loop() {
			var p payload
			c.reset()
			v.scanPayload(pay, &c, &p)
		}
	})
	k := ks.byFamily[familyHMAC][0]
	in := []byte(tok[:d2])
	b.Run("hmac-"+strconv.Itoa(len(in)), func(b *testing.B) {
		for b.Loop() {
			k.hmac.verify(0, in, sig)
		}
	})
	b.Run("sha256-64", func(b *testing.B) {
		var blk [64]byte
		for b.Loop() {
			sha256.Sum256(blk[:])
		}
	})
	b.Run("checkClaims", func(b *testing.B) {
		var p payload
		c.reset()
		v.scanPayload(pay, &c, &p)
		for b.Loop() {
			v.checkClaims(&c, &p)
		}
	})
	b.Run("time.Now", func(b *testing.B) {
		for b.Loop() {
			time.Now()
		}
	})
}

var sinkInt int

func BenchmarkScanPieces(b *testing.B) {
	secret := []byte("a shared secret of 32 bytes!!!!!")
	tok := partsToken(b, secret)
	d1 := 0
	for tok[d1] != '.' {
		d1++
	}
	d2 := d1 + 1
	for tok[d2] != '.' {
		d2++
	}
	pay, _ := base64.RawURLEncoding.DecodeString(tok[d1+1 : d2])
	b.Run("members+skip", func(b *testing.B) {
		for b.Loop() {
			s := scanner{b: pay}
			s.begin()
			for first := true; ; first = false {
				_, done, _ := s.member(first)
				if done {
					break
				}
				s.skip(1)
			}
		}
	})
	names := [][]byte{[]byte("exp"), []byte("fresh"), []byte("iat"), []byte("jti"), []byte("nbf"), []byte("sub"), []byte("type")}
	b.Run("switch", func(b *testing.B) {
		for b.Loop() {
			for _, name := range names {
				switch string(name) {
				case "jti":
					sinkInt++
				case "sub":
					sinkInt += 2
				case "iss":
					sinkInt += 3
				case "aud":
					sinkInt += 4
				case "exp":
					sinkInt += 5
				case "nbf":
					sinkInt += 6
				case "iat":
					sinkInt += 7
				case "type":
					sinkInt += 8
				}
			}
		}
	})
	b.Run("readDate", func(b *testing.B) {
		t := []byte("1796000000")
		for b.Loop() {
			readDate(val{kind: kindNumber, start: 0, end: len(t)}, t)
		}
	})
}
