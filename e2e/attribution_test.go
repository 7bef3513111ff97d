package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/rsatest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// BenchmarkPKAttribution makes the RS256/ES256 attribution table of docs/benchmarks.md: cold
// HS256, RS256 and ES256 requests natively with Go's assembly, natively with -tags purego
// (Go's generic code: math/big and bigmod without assembly, P-256 in fiat's generic code, the
// code the module runs), and in the module in wazero and V8, in one run. purego ÷ native is
// what the assembly is worth; module ÷ purego is what compiling that same Go code to wasm
// costs. The native sides are filter's BenchmarkColdVerify, run with and without the tag.
// JTIGUARD_BENCH_PK sets the tokens per algorithm (default 1000); JTIGUARD_BENCH_MD names a
// file for the markdown.
func BenchmarkPKAttribution(b *testing.B) {
	n := 1000
	if s := os.Getenv("JTIGUARD_BENCH_PK"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("JTIGUARD_BENCH_PK=%q: want a positive integer", s)
		}
	}
	for b.Loop() {
		md := pkAttribution(b, n)
		reportTable(b, "JTIGUARD_BENCH_MD", md)
	}
}

// TestPKAttributionRuns runs the attribution's code with a few tokens, so that the docs'
// command is known to work.
func TestPKAttributionRuns(t *testing.T) {
	t.Parallel() // no timing asserted, heavy on the CPU (doc.go)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds filter's tests with -tags purego and starts a V8 host")
	}
	md := pkAttribution(t, 5)
	for _, want := range []string{"| RS256 |", "| RS256, e = 3 |", "| ES256 |", "| HS256 |", "-tags purego", "| 19 m |"} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

var pkAlgs = []string{"HS256", "RS256", "RS256e3", "ES256"}

// pkRow names the table's rows.
var pkRow = map[string]string{"HS256": "HS256", "RS256": "RS256", "RS256e3": "RS256, e = 3", "ES256": "ES256"}

func pkAttribution(tb testing.TB, n int) string {
	started := time.Now()
	native := coldVerifyNative(tb, n, false)
	purego := coldVerifyNative(tb, n, true)

	log.SetOutput(io.Discard)
	defer log.SetOutput(os.Stderr)
	keys := newBenchKeys(tb)
	e3, err := rsatest.KeyE3(2048)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := attributionConfig(tb, keys, e3)
	hcfg := harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).WithPluginConfig(cfg).WithTimers(false)
	wasm := localproxytest.Module(tb)
	module := map[string]map[string]stats{}
	for _, e := range []hosttest.Engine{hosttest.Wazero, hosttest.V8} {
		h, err := hosttest.Start(context.Background(), e, wasm, hcfg)
		if err != nil {
			tb.Fatalf("start %s: %v", e, err)
		}
		t := &hostTarget{h: h}
		if err := t.publish(localproxytest.List{JTIs: []string{"bench-revoked"}}); err != nil {
			tb.Fatal(err)
		}
		module[string(e)] = map[string]stats{}
		for _, alg := range pkAlgs {
			pool := func(tag string, count int) []string {
				out := make([]string, count)
				for i := range out {
					c := claims(fmt.Sprintf("pk-%s-%s-%d", tag, alg, i), "user-1")
					if alg == "RS256e3" {
						out[i] = signRS256(tb, e3, "e3", c)
					} else {
						out[i] = keys.signJWT(tb, alg, c)
					}
				}
				return out
			}
			if _, err := t.run(benchCase{"warm", pool("warm", 20), allowed}, 20); err != nil {
				tb.Fatal(err)
			}
			st, err := t.run(benchCase{"cold " + alg, pool("cold", n), allowed}, n)
			if err != nil {
				tb.Fatal(err)
			}
			module[string(e)][alg] = st
		}
		t.close()
	}

	var b strings.Builder
	us := func(ns float64) string { return strconv.FormatFloat(ns/1000, 'f', 1, 64) }
	ratio := func(a, d float64) string { return strconv.FormatFloat(a/d, 'f', 1, 64) + "×" }
	fmt.Fprintf(&b, "%d new tokens per algorithm; %s; %d-core %s/%s; %s; took %s.\n\n", n, runtime.Version(), runtime.NumCPU(),
		runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02"), time.Since(started).Round(time.Second))
	b.WriteString("Cold request (`proxy_on_request_headers` with a new token), µs p50 / p99. Native: the filter under the SDK's emulator, " +
		"built as usual (Go's assembly) and with `-tags purego` (Go's generic code).\n\n")
	b.WriteString("| alg | native | native `-tags purego` | wazero | V8 | purego ÷ native | wazero ÷ purego | V8 ÷ purego | wazero ÷ native | V8 ÷ native |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, alg := range pkAlgs {
		nat, pg, wz, v8 := native[alg], purego[alg], module["wazero"][alg], module["v8"][alg]
		fmt.Fprintf(&b, "| %s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s | %s | %s | %s |\n", pkRow[alg],
			us(nat.p50), us(nat.p99), us(pg.p50), us(pg.p99), us(wz.p50), us(wz.p99), us(v8.p50), us(v8.p99),
			ratio(pg.p50, nat.p50), ratio(wz.p50, pg.p50), ratio(v8.p50, pg.p50), ratio(wz.p50, nat.p50), ratio(v8.p50, nat.p50))
	}
	// e = 65537 is 16 squarings and a multiplication, e = 3 one of each, and both convert in
	// and out of Montgomery form (2 more): 19 and 4 modular multiplications.
	b.WriteString("\nRS256 split by the two exponents (p50, µs): one 2048-bit modular multiplication m = (RS256 − RS256 e=3) / 15; " +
		"the exponentiation for e = 65537 is 19 m; the rest is everything else of the request (the modulus set-up crypto/rsa " +
		"repeats per verification included).\n\n| | native | native `-tags purego` | wazero | V8 |\n| --- | --- | --- | --- | --- |\n")
	cols := []map[string]stats{native, purego, module["wazero"], module["v8"]}
	for _, part := range []string{"m", "19 m", "rest"} {
		fmt.Fprintf(&b, "| %s |", part)
		for _, c := range cols {
			m := (c["RS256"].p50 - c["RS256e3"].p50) / 15
			v := map[string]float64{"m": m, "19 m": 19 * m, "rest": c["RS256"].p50 - 19*m}[part]
			fmt.Fprintf(&b, " %s |", us(v))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// attributionConfig is benchPluginConfig with a second RSA key, of exponent 3 and kid "e3"
// (listed last: a token without a kid meets the e = 65537 key first).
func attributionConfig(tb testing.TB, k benchKeys, e3 *rsa.PrivateKey) []byte {
	b, err := json.Marshal(map[string]any{
		"prefix": prefix,
		"token":  map[string]any{"locations": []string{"headers"}},
		"jwt": map[string]any{"algorithms": []string{"HS256", "RS256", "ES256"},
			"hmac_secrets": []map[string]string{{"secret": secret}},
			"public_keys": []map[string]string{{"pem": pemOf(tb, &k.rsa.PublicKey)}, {"pem": pemOf(tb, &k.ec.PublicKey)},
				{"kid": "e3", "pem": pemOf(tb, &e3.PublicKey)}}},
		"max_staleness": "0s",
		"sync":          map[string]any{"cluster": ""},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signRS256 signs claims with key under a header that names kid.
func signRS256(tb testing.TB, key *rsa.PrivateKey, kid string, c map[string]any) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid})
	p, _ := json.Marshal(c)
	signing := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		tb.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// coldVerifyNative runs filter's BenchmarkColdVerify in a go test of its own (with -tags
// purego when asked) and reads its p50 and p99 per algorithm.
func coldVerifyNative(tb testing.TB, n int, purego bool) map[string]stats {
	root, err := moduletest.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkColdVerify$", "-benchtime", "1x", "-count", "1"}
	if purego {
		args = append(args, "-tags", "purego")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), append(args, "./filter/")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "JTIGUARD_COLD_N="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// BenchmarkColdVerify/RS256-2   1   40243925 ns/op   30588 p50-ns   169771 p99-ns
	res := map[string]stats{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "BenchmarkColdVerify/") {
			continue
		}
		alg, _, _ := strings.Cut(strings.TrimPrefix(f[0], "BenchmarkColdVerify/"), "-")
		var st stats
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "p50-ns":
				st.p50 = v
			case "p99-ns":
				st.p99 = v
			}
		}
		st.n = n
		res[alg] = st
	}
	for _, alg := range pkAlgs {
		if res[alg].p50 == 0 {
			tb.Fatalf("go %s: no p50 for %s in\n%s", strings.Join(args, " "), alg, out)
		}
	}
	return res
}
