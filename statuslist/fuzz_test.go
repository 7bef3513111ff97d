package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParseToken signs whatever header and payload the fuzzer makes (so the signature never
// stops it) and checks every token ParseToken accepts against a reference reading with
// encoding/json and compress/zlib: typ, sub, iat, bits, and the list's bytes.
func FuzzParseToken(f *testing.F) {
	is := newIssuer(f, 1)
	ks := is.keySet(f)
	const uri = "https://issuer.example/lists/1"
	now := time.Unix(1_800_000_000, 0)
	lst := compress([]byte{0xb9, 0xa3})
	f.Add(`{"alg":"EdDSA","typ":"statuslist+jwt"}`, `{"sub":"`+uri+`","iat":1799999999,"status_list":{"bits":1,"lst":"`+lst+`"}}`)
	f.Add(`{"alg":"EdDSA","typ":"statuslist+jwt","kid":"k1"}`, `{"sub":"`+uri+`","iat":1,"exp":1900000000,"ttl":1.5,"status_list":{"bits":8,"lst":"`+compress(make([]byte, 300))+`"}}`)
	f.Add(`{"alg":"EdDSA","typ":"application/statuslist+jwt"}`, `{"sub":"`+uri+`","iat":1,"status_list":{"bits":2,"lst":"eNo76fITAAPfAgc"},"status_list":{}}`)
	f.Fuzz(func(t *testing.T, header, payload string) {
		tok, err := ParseToken([]byte(is.sign(header, payload)), TokenOptions{URI: uri, Keys: ks, MaxListBytes: 1 << 16, Now: func() time.Time { return now }})
		if err != nil {
			return
		}
		var h map[string]any
		if err := json.Unmarshal([]byte(header), &h); err != nil {
			t.Fatalf("accepted a header encoding/json refuses: %v", err)
		}
		if typ, _ := h["typ"].(string); !isStatusListType(typ) {
			t.Fatalf("accepted typ %v", h["typ"])
		}
		var p struct {
			Sub        *string         `json:"sub"`
			Iat        *json.Number    `json:"iat"`
			StatusList json.RawMessage `json:"status_list"`
		}
		dec := json.NewDecoder(strings.NewReader(payload))
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("accepted a payload encoding/json refuses: %v", err)
		}
		if p.Sub == nil || *p.Sub != uri || p.Iat == nil {
			t.Fatalf("accepted sub %v iat %v", p.Sub, p.Iat)
		}
		var sl struct {
			Bits int    `json:"bits"`
			Lst  string `json:"lst"`
		}
		if err := json.Unmarshal(p.StatusList, &sl); err != nil || int(tok.Bits) != sl.Bits {
			t.Fatalf("bits %d; encoding/json reads %d (%v)", tok.Bits, sl.Bits, err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(sl.Lst, "="))
		if err != nil {
			t.Fatalf("accepted lst %q: %v", sl.Lst, err)
		}
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(want, tok.Bytes) {
			t.Fatalf("list %x; zlib reads %x (%v)", tok.Bytes, want, err)
		}
	})
}

// FuzzRecords: the shared-data decoders never panic on any bytes (shared data is written by
// every VM of every plugin with the same vm_id), and what they accept encodes back to the same
// reading.
func FuzzRecords(f *testing.F) {
	f.Add(encodeDir([]dirSlot{{uri: "https://a/1", added: time.UnixMilli(5), lastUsed: time.UnixMilli(7)}, {}}))
	f.Add(encodeGen(meta{bits: 2, generation: 3, fetched: time.UnixMilli(9), iat: time.Unix(4, 0), length: 10, nonce: 11}))
	f.Add(encodeList(meta{bits: 1, generation: 3, iat: time.Unix(4, 0)}, []byte{1, 2, 3}))
	f.Add(lease{failures: 2, holder: 3, expires: time.UnixMilli(4), nextDue: time.UnixMilli(5)}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if slots, err := decodeDir(b); err == nil {
			again, err := decodeDir(encodeDir(slots))
			if err != nil || !reflect.DeepEqual(again, slots) {
				t.Fatalf("directory does not round-trip: %v", err)
			}
		}
		if m, err := decodeGen(b); err == nil {
			if again, err := decodeGen(encodeGen(m)); err != nil || again != m {
				t.Fatalf("generation record does not round-trip: %v", err)
			}
		}
		if m, list, err := decodeList(b); err == nil {
			again, list2, err := decodeList(encodeList(m, list))
			if err != nil || again != m || !bytes.Equal(list, list2) || len(list) != int(m.length) {
				t.Fatalf("list record does not round-trip: %v", err)
			}
		}
		if l, err := parseLease(b); err == nil {
			if again, err := parseLease(l.marshal()); err != nil || again != l {
				t.Fatalf("lease does not round-trip: %v", err)
			}
		}
	})
}
