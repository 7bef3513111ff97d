package statuslist

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The request path (Evaluate of a payload whose references were read once) and the costs paid
// once per payload (ReadSegment) and once per fetch (ParseToken), natively:
//
//	go test -run '^$' -bench . -benchmem ./statuslist/
//
// docs/status-list.md quotes the numbers.

func benchChecker(b *testing.B) (*env, *Refs) {
	is := newIssuer(b, 1)
	e := newEnv(b, exactConfig(is, ""), 1)
	r := rand.New(rand.NewPCG(1, 1))
	_, l := randomList(r, 2, 1<<20, 50)
	lst := &lists{is: is, clk: e.clk, byURI: map[string]*served{uri1: {list: l}}}
	e.serve = lst.serve("issuer.example")
	e.tick()
	var refs Refs
	refs.ReadJSON([]byte(`{"status":{"status_list":{"idx":123457,"uri":"` + uri1 + `"}}}`))
	if v := e.vms[0].c.Evaluate(&refs, e.clk.t); v.Action == Unavailable {
		b.Fatal("list not held")
	}
	return e, &refs
}

func BenchmarkEvaluate(b *testing.B) {
	e, refs := benchChecker(b)
	c, now := e.vms[0].c, e.clk.t
	b.ReportAllocs()
	for b.Loop() {
		c.Evaluate(refs, now)
	}
}

func BenchmarkCheck(b *testing.B) {
	e, _ := benchChecker(b)
	c, now := e.vms[0].c, e.clk.t
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		c.Check(uri1, i&(1<<20-1), now)
		i += 7919
	}
}

func BenchmarkReadSegment(b *testing.B) {
	seg := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://example.com/issuer","iat":1683000000,"exp":1883000000,` +
		`"sub":"6c5c0a49-b589-431d-bae7-219122a9ec2c","jti":"a1b2c3","status":{"status_list":{"idx":0,"uri":"https://example.com/statuslists/1"}},"_sd_alg":"sha-256"}`))
	var r Refs
	b.ReportAllocs()
	for b.Loop() {
		r.ReadSegment(seg)
	}
}

func BenchmarkParseToken(b *testing.B) {
	is := newIssuer(b, 1)
	now := time.Unix(1_800_000_000, 0)
	for _, n := range []int{1 << 10, 1 << 20} {
		r := rand.New(rand.NewPCG(2, 2))
		_, l := randomList(r, 1, n*8, 100) // n bytes, 1% revoked
		tok := []byte(is.listToken(uri1, l, now, now.Add(time.Hour), 300))
		opts := TokenOptions{URI: uri1, Keys: is.keySet(b), MaxListBytes: 16 << 20, Now: func() time.Time { return now }}
		b.Run(fmt.Sprintf("list=%dKiB/token=%dKiB", n>>10, len(tok)>>10), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseToken(tok, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
