package statuslist

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// NpmInstall is the command that installs the npm implementations the tests compare against,
// run in statuslist/testdata (package.json and package-lock.json pin them). The tests run it
// when node_modules is missing; docs/status-list.md quotes it.
var NpmInstall = []string{"npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"}

var (
	npmOnce sync.Once
	npmErr  error
)

// needNode makes sure node and the npm packages are there. Without them the test fails under
// CI=true and is skipped, loudly, elsewhere.
func needNode(t *testing.T) {
	t.Helper()
	npmOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			npmErr = fmt.Errorf("node is not installed: %w", err)
			return
		}
		if _, err := os.Stat("testdata/node_modules/.package-lock.json"); err == nil {
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			npmErr = fmt.Errorf("npm is not installed (and testdata/node_modules is missing): %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, NpmInstall[0], NpmInstall[1:]...)
		cmd.Dir = "testdata"
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = fmt.Errorf("%s in statuslist/testdata: %w\n%s", strings.Join(NpmInstall, " "), err, out)
		}
	})
	if npmErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the npm reference implementations are required in CI: %v", npmErr)
		}
		t.Skipf("SKIPPED (set CI=true to make this a failure): %v", npmErr)
	}
}

type genCase struct {
	Impl   string         `json:"impl"`
	Alg    string         `json:"alg"`
	Bits   int            `json:"bits"`
	Size   int            `json:"size"`
	Set    [][2]int       `json:"set"`
	Claims map[string]any `json:"claims"`
	Header map[string]any `json:"header,omitempty"`
}

type genDecode struct {
	Impl string `json:"impl"`
	Bits int    `json:"bits"`
	Lst  string `json:"lst"`
}

type genResponse struct {
	JWKS    json.RawMessage `json:"jwks"`
	Tokens  []string        `json:"tokens"`
	Decoded [][]Status      `json:"decoded"`
}

// gen runs testdata/gen.mjs.
func gen(t *testing.T, make []genCase, decode []genDecode) *genResponse {
	t.Helper()
	needNode(t)
	req, _ := json.Marshal(map[string]any{"make": make, "decode": decode})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "gen.mjs"))
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node gen.mjs: %v\n%s", err, stderr.String())
	}
	var resp genResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

var impls = []string{"sd-jwt", "owf"}

// TestNodeTokensValidate: Status List Tokens that both npm implementations make (their own
// packing and compression, signed by jose with five algorithms) validate here, and every
// index reads back the status they were given.
func TestNodeTokensValidate(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	now := time.Now()
	var cases []genCase
	var want [][]Status
	n := 0
	for _, impl := range impls {
		for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"} {
			for _, bits := range []int{1, 2, 4, 8} {
				size := 1 + r.IntN(5000)
				if n%7 == 0 {
					size = 1 << 16
				}
				st := make([]Status, size)
				var set [][2]int
				for range 1 + r.IntN(size/4+1) {
					i, v := r.IntN(size), r.IntN(1<<bits)
					st[i] = Status(v)
					set = append(set, [2]int{i, v})
				}
				claims := map[string]any{"sub": fmt.Sprintf("https://issuer.example/lists/%d", n), "iat": now.Unix() - 10}
				if n%2 == 0 {
					claims["exp"] = now.Unix() + 3600
				}
				if n%3 == 0 {
					claims["ttl"] = 600
				}
				cases = append(cases, genCase{Impl: impl, Alg: alg, Bits: bits, Size: size, Set: set, Claims: claims})
				want = append(want, st)
				n++
			}
		}
	}
	resp := gen(t, cases, nil)
	ks, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}, JWKS: resp.JWKS})
	if err != nil {
		t.Fatal(err)
	}
	for k, c := range cases {
		uri := c.Claims["sub"].(string)
		tok, err := ParseToken([]byte(resp.Tokens[k]), TokenOptions{URI: uri, Keys: ks, MaxListBytes: 1 << 20})
		if err != nil {
			t.Fatalf("%s %s %d bits: %v", c.Impl, c.Alg, c.Bits, err)
		}
		if int(tok.Bits) != c.Bits || tok.Len() < uint64(c.Size) || tok.Len()-uint64(c.Size) >= uint64(8/c.Bits) {
			t.Fatalf("%s %s: bits %d len %d; want %d bits, %d entries", c.Impl, c.Alg, tok.Bits, tok.Len(), c.Bits, c.Size)
		}
		for i, w := range want[k] {
			if s, err := tok.At(uint64(i)); err != nil || s != w {
				t.Fatalf("%s %s %d bits: At(%d) = %v, %v; want %v", c.Impl, c.Alg, c.Bits, i, s, err, w)
			}
		}
		if _, err := tok.At(tok.Len()); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("At(Len) = %v", err)
		}
		if _, ok := c.Claims["ttl"]; ok != (tok.TTL == 600*time.Second) {
			t.Fatalf("ttl %v", tok.TTL)
		}
		if _, ok := c.Claims["exp"]; ok == tok.Expires.IsZero() {
			t.Fatalf("exp %v", tok.Expires)
		}
		// The same token for another uri is refused (sub must equal the uri).
		if _, err := ParseToken([]byte(resp.Tokens[k]), TokenOptions{URI: uri + "/x", Keys: ks, MaxListBytes: 1 << 20}); !errors.Is(err, ErrBadToken) {
			t.Fatalf("another uri: %v", err)
		}
	}
}

// TestNodeTokensRefused: what the libraries make when told to break a rule is refused here.
func TestNodeTokensRefused(t *testing.T) {
	now := time.Now().Unix()
	base := func(claims map[string]any, header map[string]any) genCase {
		c := map[string]any{"sub": "https://issuer.example/lists/1", "iat": now - 10}
		for k, v := range claims {
			c[k] = v
		}
		return genCase{Impl: "owf", Alg: "ES256", Bits: 1, Size: 8, Set: [][2]int{{0, 1}}, Claims: c, Header: header}
	}
	cases := []struct {
		c    genCase
		want string
	}{
		{base(nil, map[string]any{"typ": "JWT"}), "typ must be"},
		{base(map[string]any{"exp": now - 1}, nil), "Signature has expired"},
		{base(map[string]any{"iat": now + 3600}, nil), "not yet valid (iat)"},
		{base(map[string]any{"ttl": -1}, nil), "ttl must be a positive number"},
		{base(map[string]any{"sub": "https://issuer.example/lists/2"}, nil), "is not the list's uri"},
		{base(map[string]any{"nbf": now + 3600}, nil), "not yet valid (nbf)"},
	}
	var make []genCase
	for _, c := range cases {
		make = append(make, c.c)
	}
	resp := gen(t, make, nil)
	ks, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"ES256"}, JWKS: resp.JWKS})
	if err != nil {
		t.Fatal(err)
	}
	for k, c := range cases {
		_, err := ParseToken([]byte(resp.Tokens[k]), TokenOptions{URI: "https://issuer.example/lists/1", Keys: ks, MaxListBytes: 1 << 20})
		if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("case %d: %v; want %q", k, err, c.want)
		}
	}
}

// TestNodeDecodesOurLists: lists packed and compressed here decode, in both libraries, to the
// statuses they hold (the libraries report every group of the last byte too: 0 here).
func TestNodeDecodesOurLists(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var dec []genDecode
	var want [][]Status
	for _, impl := range impls {
		for _, bits := range []int{1, 2, 4, 8} {
			for range 3 {
				st, l := randomList(r, bits, 1+r.IntN(3000), 1+r.IntN(5))
				dec = append(dec, genDecode{Impl: impl, Bits: bits, Lst: compress(l.Bytes)})
				want = append(want, st)
			}
		}
	}
	resp := gen(t, nil, dec)
	for k, w := range want {
		got := resp.Decoded[k]
		if len(got) < len(w) || len(got)-len(w) >= 8/dec[k].Bits {
			t.Fatalf("%s %d bits: %d statuses; want %d", dec[k].Impl, dec[k].Bits, len(got), len(w))
		}
		for i := range got {
			var ws Status
			if i < len(w) {
				ws = w[i]
			}
			if got[i] != ws {
				t.Fatalf("%s %d bits: status %d = %v; want %v", dec[k].Impl, dec[k].Bits, i, got[i], ws)
			}
		}
	}
}

// TestNodeListThroughChecker: a list made by an npm implementation, served to the proxy,
// answers the Checker on every VM.
func TestNodeListThroughChecker(t *testing.T) {
	now := time.Now()
	resp := gen(t, []genCase{{Impl: "sd-jwt", Alg: "ES256", Bits: 2, Size: 1000, Set: [][2]int{{7, 1}, {8, 2}, {999, 3}},
		Claims: map[string]any{"sub": uri1, "iat": now.Unix() - 5, "exp": now.Unix() + 3600, "ttl": 300}}}, nil)
	cfg := `{"keys":{"algorithms":["ES256"],"jwks":` + string(resp.JWKS) + `},"lists":[
		{"uri":"` + uri1 + `","cluster":"issuer","authority":"issuer.example","path":"/lists/1"}]}`
	e := newEnv(t, cfg, 2)
	e.clk.t = now
	e.serve = func(c *call) reply {
		return reply{status: 200, headers: [][2]string{{"content-type", "application/statuslist+jwt"}}, body: resp.Tokens[0]}
	}
	e.tick()
	e.tick()
	for n := range e.vms {
		for idx, want := range map[uint64]Status{0: Valid, 7: Invalid, 8: Suspended, 999: 3, 500: Valid} {
			if s, err := e.check(n, uri1, idx); err != nil || s != want {
				t.Fatalf("vm %d idx %d: %v, %v; want %v", n, idx, s, err, want)
			}
		}
	}
}
