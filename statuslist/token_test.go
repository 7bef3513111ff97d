package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// TestDraftStatusListJWT: the Status List Token example of section 5.1, signed with the
// draft's example key, validates for its uri and holds the section 4.1 list.
func TestDraftStatusListJWT(t *testing.T) {
	v := loadVectors(t)
	ks, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"ES256"}, JWKS: []byte(`{"keys":[` + string(v.StatusListJWT.JWK) + `]}`)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0) // between its iat (2023) and exp (2042)
	tok, err := ParseToken([]byte(v.StatusListJWT.Token), TokenOptions{URI: v.StatusListJWT.URI, Keys: ks, MaxListBytes: 1 << 20, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Bits != 1 || fmt.Sprintf("%x", tok.Bytes) != "b9a3" {
		t.Fatalf("list = %d bits %x; want 1 bit b9a3", tok.Bits, tok.Bytes)
	}
	if tok.IssuedAt.Unix() != 1686920170 || tok.Expires.Unix() != 2291720170 || tok.TTL != 43200*time.Second {
		t.Fatalf("iat %v exp %v ttl %v", tok.IssuedAt.Unix(), tok.Expires.Unix(), tok.TTL)
	}
	// The same token names another uri, has expired, or meets another key: refused.
	if _, err := ParseToken([]byte(v.StatusListJWT.Token), TokenOptions{URI: v.StatusListJWT.URI + "0", Keys: ks, MaxListBytes: 1 << 20, Now: func() time.Time { return now }}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("another uri: %v", err)
	}
	late := time.Unix(2291720170, 0)
	if _, err := ParseToken([]byte(v.StatusListJWT.Token), TokenOptions{URI: v.StatusListJWT.URI, Keys: ks, MaxListBytes: 1 << 20, Now: func() time.Time { return late }}); !errors.Is(err, jwtverify.ErrTokenExpired) {
		t.Fatalf("at exp: %v; want expired", err)
	}
	other := newIssuer(t, 9)
	if _, err := ParseToken([]byte(v.StatusListJWT.Token), TokenOptions{URI: v.StatusListJWT.URI, Keys: other.keySet(t), MaxListBytes: 1 << 20, Now: func() time.Time { return now }}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("EdDSA-only key set: %v", err)
	}
}

// TestParseToken runs the validation rules one by one: each case breaks one of them.
func TestParseToken(t *testing.T) {
	is := newIssuer(t, 1)
	clk := newClock()
	const uri = "https://issuer.example/lists/1"
	lst := compress([]byte{0xb9, 0xa3})
	hdr := `{"alg":"EdDSA","kid":"k1","typ":"statuslist+jwt"}`
	pay := func(extra string) string {
		return fmt.Sprintf(`{"sub":%q,"iat":%d%s}`, uri, clk.unix(-time.Minute), extra)
	}
	sl := `,"status_list":{"bits":1,"lst":"` + lst + `"}`
	zl := func(b []byte, dict []byte, trailing string) string {
		var buf bytes.Buffer
		w, _ := zlib.NewWriterLevelDict(&buf, 9, dict)
		w.Write(b)
		w.Close()
		return base64.RawURLEncoding.EncodeToString(append(buf.Bytes(), trailing...))
	}
	opts := TokenOptions{URI: uri, Keys: is.keySet(t), MaxListBytes: 64, Now: clk.now}
	cases := []struct {
		name    string
		token   string
		wantErr string // "" = valid
	}{
		{"valid", is.sign(hdr, pay(sl)), ""},
		{"valid with exp and ttl", is.sign(hdr, pay(sl+fmt.Sprintf(`,"exp":%d,"ttl":3600`, clk.unix(time.Hour)))), ""},
		{"typ as a full media type", is.sign(`{"alg":"EdDSA","typ":"application/statuslist+jwt"}`, pay(sl)), ""},
		{"typ in another case", is.sign(`{"alg":"EdDSA","typ":"StatusList+JWT"}`, pay(sl)), ""},
		{"trailing newline", is.sign(hdr, pay(sl)) + "\n", ""},
		{"fractional ttl", is.sign(hdr, pay(sl+`,"ttl":0.5`)), ""},
		{"other claims", is.sign(hdr, pay(sl+`,"iss":"https://issuer.example","status_list_extra":{"x":1}`)), ""},
		{"aggregation_uri", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+lst+`","aggregation_uri":"https://x/agg"}`)), ""},

		{"no typ", is.sign(`{"alg":"EdDSA"}`, pay(sl)), "typ must be"},
		{"typ jwt", is.sign(`{"alg":"EdDSA","typ":"JWT"}`, pay(sl)), "typ must be"},
		{"typ not a string", is.sign(`{"alg":"EdDSA","typ":1}`, pay(sl)), "typ must be"},
		{"typ twice", is.sign(`{"alg":"EdDSA","typ":"JWT","typ":"statuslist+jwt"}`, pay(sl)), "names \"typ\" twice"},
		{"alg none", strings.Join(strings.Split(is.sign(`{"alg":"none","typ":"statuslist+jwt"}`, pay(sl)), ".")[:2], ".") + ".", "alg value is not allowed"},
		{"alg HS256", is.sign(`{"alg":"HS256","typ":"statuslist+jwt"}`, pay(sl)), "alg value is not allowed"},
		{"bad signature", is.sign(hdr, pay(sl))[:len(is.sign(hdr, pay(sl)))-4] + "AAAA", "Signature verification failed"},
		{"signed by another key", newIssuer(t, 2).sign(hdr, pay(sl)), "Signature verification failed"},
		{"two segments", "a.b", "(2 segments, want 3)"},
		{"JWE", "a.b.c.d.e", "JWE"},
		{"header not base64", "!!." + strings.SplitN(is.sign(hdr, pay(sl)), ".", 2)[1], "header is not base64url"},
		{"sub another uri", is.sign(hdr, strings.Replace(pay(sl), uri, uri+"x", 1)), "is not the list's uri"},
		{"sub a prefix of the uri", is.sign(hdr, strings.Replace(pay(sl), uri, uri[:len(uri)-1], 1)), "is not the list's uri"},
		{"sub missing", is.sign(hdr, fmt.Sprintf(`{"iat":%d%s}`, clk.unix(0), sl)), "sub (absent)"},
		{"sub a number", is.sign(hdr, fmt.Sprintf(`{"sub":1,"iat":%d%s}`, clk.unix(0), sl)), "Subject must be a string"},
		{"iat missing", is.sign(hdr, fmt.Sprintf(`{"sub":%q%s}`, uri, sl)), "iat is missing"},
		{"iat in the future", is.sign(hdr, fmt.Sprintf(`{"sub":%q,"iat":%d%s}`, uri, clk.unix(time.Hour), sl)), "not yet valid (iat)"},
		{"iat a string", is.sign(hdr, fmt.Sprintf(`{"sub":%q,"iat":"1"%s}`, uri, sl)), "Issued At claim (iat) must be an integer"},
		{"expired", is.sign(hdr, pay(sl+fmt.Sprintf(`,"exp":%d`, clk.unix(-time.Second)))), "Signature has expired"},
		{"nbf in the future", is.sign(hdr, pay(sl+fmt.Sprintf(`,"nbf":%d`, clk.unix(time.Hour)))), "not yet valid (nbf)"},
		{"ttl zero", is.sign(hdr, pay(sl+`,"ttl":0`)), "ttl must be a positive number"},
		{"ttl negative", is.sign(hdr, pay(sl+`,"ttl":-5`)), "ttl must be a positive number"},
		{"ttl a string", is.sign(hdr, pay(sl+`,"ttl":"60"`)), "ttl must be a positive number"},
		{"ttl null", is.sign(hdr, pay(sl+`,"ttl":null`)), "ttl must be a positive number"},
		{"status_list missing", is.sign(hdr, pay("")), "status_list claim is missing"},
		{"status_list a string", is.sign(hdr, pay(`,"status_list":"x"`)), "status_list is not a JSON object"},
		{"status_list twice", is.sign(hdr, pay(sl+sl)), "names \"status_list\" twice"},
		{"bits 3", is.sign(hdr, pay(`,"status_list":{"bits":3,"lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"bits 16", is.sign(hdr, pay(`,"status_list":{"bits":16,"lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"bits 1.0", is.sign(hdr, pay(`,"status_list":{"bits":1.0,"lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"bits a string", is.sign(hdr, pay(`,"status_list":{"bits":"1","lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"bits missing", is.sign(hdr, pay(`,"status_list":{"lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"bits twice", is.sign(hdr, pay(`,"status_list":{"bits":1,"bits":2,"lst":"`+lst+`"}`)), "names \"bits\" twice"},
		{"Bits in capitals only", is.sign(hdr, pay(`,"status_list":{"BITS":1,"lst":"`+lst+`"}`)), "bits must be 1, 2, 4 or 8"},
		{"lst missing", is.sign(hdr, pay(`,"status_list":{"bits":1}`)), "lst must be a string"},
		{"lst not base64url", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"eN+/"}`)), "not base64url"},
		{"lst not zlib", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"AAAA"}`)), "not a ZLIB stream"},
		{"lst raw deflate", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+lst[3:]+`"}`)), "ZLIB"},
		{"lst truncated", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+lst[:len(lst)-3]+`"}`)), "does not inflate"},
		{"lst with a preset dictionary", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+zl([]byte{1}, []byte("dict"), "")+`"}`)), "not a ZLIB stream"},
		{"lst with bytes after the stream", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+zl([]byte{1}, nil, "x")+`"}`)), "after its ZLIB stream"},
		{"lst larger than max_list_bytes", is.sign(hdr, pay(`,"status_list":{"bits":1,"lst":"`+zl(make([]byte, 65), nil, "")+`"}`)), "more than max_list_bytes 64"},
		{"payload not an object", is.sign(hdr, `[1]`), "Invalid payload string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken([]byte(tc.token), opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseToken: %v", err)
				}
				if s, err := tok.At(0); err != nil || s != Invalid {
					t.Fatalf("At(0) = %v, %v; want INVALID", s, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseToken accepted it; want an error containing %q", tc.wantErr)
			}
			if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrBadToken nor ErrTooLarge", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q; want it to contain %q", err, tc.wantErr)
			}
		})
	}
	if _, err := ParseToken([]byte(is.sign(hdr, pay(sl))), TokenOptions{URI: uri}); !errors.Is(err, ErrBadToken) {
		t.Fatalf("no keys: %v", err)
	}
}

// TestInflateBound: the bound is exact, and a zip bomb costs no more than the bound.
func TestInflateBound(t *testing.T) {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, 9)
	w.Write(make([]byte, 8<<20)) // 8 MiB of zeros compresses to about 8 KiB
	w.Close()
	if buf.Len() > 16<<10 {
		t.Fatalf("compressed to %d bytes", buf.Len())
	}
	if _, err := Inflate(buf.Bytes(), 8<<20-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("8 MiB under a bound one byte short: %v", err)
	}
	b, err := Inflate(buf.Bytes(), 8<<20)
	if err != nil || len(b) != 8<<20 {
		t.Fatalf("8 MiB under an 8 MiB bound: %d bytes, %v", len(b), err)
	}
}
