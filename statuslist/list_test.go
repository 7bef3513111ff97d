package statuslist

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// draftVectors are the examples and test vectors of draft-ietf-oauth-status-list-20, copied
// from the draft's repository into testdata (see its "source").
type draftVectors struct {
	Source    string `json:"source"`
	Section41 []struct {
		Bits      int    `json:"bits"`
		Lst       string `json:"lst"`
		ByteArray string `json:"byte_array_hex"`
	} `json:"section_4_1"`
	StatusListJWT struct {
		Token string          `json:"token"`
		JWK   json.RawMessage `json:"jwk"`
		URI   string          `json:"uri"`
	} `json:"status_list_jwt"`
	Long []struct {
		Name     string            `json:"name"`
		Size     uint64            `json:"size"`
		Bits     int               `json:"bits"`
		Lst      string            `json:"lst"`
		Statuses map[string]Status `json:"statuses"`
	} `json:"long"`
}

func loadVectors(t testing.TB) *draftVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/draft-20-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v draftVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func inflateLst(t testing.TB, lst string, max int) []byte {
	t.Helper()
	c, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Inflate(c, max)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDraftSection41Examples: the two byte arrays of section 4.1 (16 tokens at 1 bit, 12 at 2
// bits), their compressed forms, and the statuses the section lists index by index.
func TestDraftSection41Examples(t *testing.T) {
	v := loadVectors(t)
	want := [][]Status{
		{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1},
		{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3},
	}
	if len(v.Section41) != len(want) {
		t.Fatalf("%d section 4.1 examples; want %d", len(v.Section41), len(want))
	}
	for n, ex := range v.Section41 {
		got := inflateLst(t, ex.Lst, 1<<10)
		if hex.EncodeToString(got) != ex.ByteArray {
			t.Fatalf("example %d: lst inflates to %x; the draft's byte array is %s", n, got, ex.ByteArray)
		}
		l := List{Bits: uint8(ex.Bits), Bytes: got}
		for i, w := range want[n] {
			if s, err := l.At(uint64(i)); err != nil || s != w {
				t.Errorf("example %d: At(%d) = %v, %v; want %v", n, i, s, err, w)
			}
		}
		enc, err := Encode(ex.Bits, want[n])
		if err != nil || hex.EncodeToString(enc.Bytes) != ex.ByteArray {
			t.Errorf("example %d: Encode = %x, %v; want %s", n, enc.Bytes, err, ex.ByteArray)
		}
	}
}

// TestDraftTestVectors: the appendix's four lists of 2^20 entries. Every index is looked up:
// the listed ones hold their values, all others 0 (VALID), and the first index past 2^20
// (the lists have no padding) is out of range.
func TestDraftTestVectors(t *testing.T) {
	v := loadVectors(t)
	if len(v.Long) != 4 {
		t.Fatalf("%d long vectors; want 4", len(v.Long))
	}
	for _, vec := range v.Long {
		t.Run(vec.Name, func(t *testing.T) {
			l := List{Bits: uint8(vec.Bits), Bytes: inflateLst(t, vec.Lst, 16<<20)}
			if l.Len() != vec.Size {
				t.Fatalf("Len = %d; want %d", l.Len(), vec.Size)
			}
			want := make(map[uint64]Status, len(vec.Statuses))
			for k, s := range vec.Statuses {
				i, err := strconv.ParseUint(k, 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				want[i] = s
			}
			nonZero := 0
			for i := range vec.Size {
				s, err := l.At(i)
				if err != nil {
					t.Fatalf("At(%d): %v", i, err)
				}
				if s != want[i] {
					t.Fatalf("At(%d) = %v; want %v", i, s, want[i])
				}
				if s != 0 {
					nonZero++
				}
			}
			if nonZero == 0 {
				t.Fatal("no non-zero status found: the vector did not load")
			}
			if _, err := l.At(vec.Size); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("At(size) = %v; want ErrOutOfRange", err)
			}
		})
	}
}

// TestEncodeAtRoundTrip: for random lists of every size, At reads back what Encode packed,
// and indices from Len on are out of range, up to the largest uint64.
func TestEncodeAtRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 400 {
		bits := []int{1, 2, 4, 8}[r.IntN(4)]
		n := r.IntN(300)
		st, l := randomList(r, bits, n, 1+r.IntN(4))
		if l.Len() < uint64(n) || l.Len() >= uint64(n)+uint64(8/bits) && n > 0 {
			t.Fatalf("bits %d, %d statuses: Len %d", bits, n, l.Len())
		}
		for i, w := range st {
			if s, err := l.At(uint64(i)); err != nil || s != w {
				t.Fatalf("bits %d: At(%d) = %v, %v; want %v", bits, i, s, err, w)
			}
		}
		for i := uint64(n); i < l.Len(); i++ { // the last byte's padding groups are 0
			if s, err := l.At(i); err != nil || s != 0 {
				t.Fatalf("bits %d: padding At(%d) = %v, %v", bits, i, s, err)
			}
		}
		for _, i := range []uint64{l.Len(), l.Len() + 1, 1 << 40, ^uint64(0), ^uint64(0) / uint64(bits)} {
			if _, err := l.At(i); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("bits %d len %d: At(%d) = %v; want out of range", bits, l.Len(), i, err)
			}
		}
	}
	if _, err := Encode(3, nil); err == nil {
		t.Fatal("Encode with 3 bits succeeded")
	}
	if _, err := Encode(2, []Status{4}); err == nil {
		t.Fatal("Encode of 4 in 2 bits succeeded")
	}
	if _, err := (&List{}).At(0); !errors.Is(err, ErrOutOfRange) {
		t.Fatal("the zero List answered a lookup")
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{0: "VALID", 1: "INVALID", 2: "SUSPENDED", 3: "0x03", 0xff: "0xff", 0x0c: "0x0c"} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q; want %q", s, got, want)
		}
	}
}
