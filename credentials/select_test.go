package credentials

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// genRequest is a generated request: header pairs as Envoy presents them (lower-case names),
// and a body or nil.
type genRequest struct {
	headers [][2]string
	body    []byte
}

func (g genRequest) String() string {
	var b strings.Builder
	for _, h := range g.headers {
		fmt.Fprintf(&b, "%s: %q\n", h[0], h[1])
	}
	if g.body != nil {
		fmt.Fprintf(&b, "body: %q\n", g.body)
	}
	return b.String()
}

// pick returns one of xs.
func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// Pieces from which requests are generated: the shapes of issue 8 and their neighbours.
var (
	genTokens = []string{
		"aaa.bbb.ccc", "ddd.eee.fff", "h1.p1.s1", "x.y", "tok", "a.b.c.d", "h.p.s==", "h.p.s==AAAA",
		"eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln", "h.p.s!!", "h.p.s+/", "",
	}
	genBlanks  = []string{" ", "  ", "\t", "\u00a0", "\u0085", "\x85", "\xa0", "\u3000", "\u2003", "\x1c", "\x1f", " \t "}
	genSchemes = []string{"Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer,", ""}
)

func genHeaderValue(r *rand.Rand) string {
	var fields []string
	for n := 1 + r.IntN(2); n > 0; n-- {
		scheme := pick(r, genSchemes...)
		f := scheme + pick(r, genBlanks...) + pick(r, genTokens...)
		if r.IntN(4) == 0 {
			f = pick(r, genTokens...)
		}
		if r.IntN(5) == 0 {
			f += pick(r, genBlanks...) + "extra"
		}
		fields = append(fields, f)
	}
	v := strings.Join(fields, pick(r, ",", ", ", " , ", ",,"))
	if r.IntN(4) == 0 {
		v = pick(r, " ", ",", " ,", "\t") + v + pick(r, " ", ",", "")
	}
	return v
}

func genCookieHeader(r *rand.Rand) string {
	names := []string{"access_token_cookie", "refresh_token_cookie", " access_token_cookie", "access_token_cookie ",
		"access%5Ftoken_cookie", "other", "\taccess_token_cookie", "refresh_token_cookie\u00a0", "Access_token_cookie"}
	var pairs []string
	for n := 1 + r.IntN(4); n > 0; n-- {
		name := pick(r, names...)
		val := pick(r, genTokens...)
		switch r.IntN(6) {
		case 0:
			val = `"` + val + `"`
		case 1:
			val = `"` + strings.ReplaceAll(val, ".", `\056`) + `"`
		case 2:
			val = `"` + val + `;x"`
		}
		if r.IntN(8) == 0 {
			pairs = append(pairs, name)
			continue
		}
		pairs = append(pairs, name+pick(r, "=", " = ", "=")+val)
	}
	return strings.Join(pairs, pick(r, "; ", ";", " ; ", ";  "))
}

func genQuery(r *rand.Rand) string {
	names := []string{"jwt", "%6Awt", "jwt%20", "jwt+", "Jwt", "other", "j%77t"}
	var params []string
	for n := r.IntN(4); n > 0; n-- {
		val := pick(r, genTokens...)
		switch r.IntN(5) {
		case 0:
			val = strings.ReplaceAll(val, ".", "%2E")
		case 1:
			val = "Bearer%20" + val
		case 2:
			val = "Bearer+" + val
		}
		params = append(params, pick(r, names...)+"="+val)
	}
	q := strings.Join(params, pick(r, "&", "&", ";", "&&"))
	if q == "" {
		return "/api"
	}
	return "/api?" + q
}

func genBody(r *rand.Rand) (ct string, body []byte) {
	keys := []string{"access_token", "refresh_token", "other", `access\u005ftoken`}
	var members []string
	for n := r.IntN(3); n > 0; n-- {
		v := `"` + pick(r, genTokens...) + `"`
		if r.IntN(6) == 0 {
			v = pick(r, "1", "0", "null", "true", "[1]", `""`)
		}
		members = append(members, `"`+pick(r, keys...)+`":`+v)
	}
	b := "{" + strings.Join(members, ",") + "}"
	if r.IntN(8) == 0 {
		b = b[:len(b)-1] // malformed
	}
	return pick(r, "application/json", "application/json; charset=utf-8", "application/x+json", "text/plain", "Application/JSON"), []byte(b)
}

func genRequestFor(r *rand.Rand) genRequest {
	g := genRequest{headers: [][2]string{{":path", genQuery(r)}, {":method", "GET"}}}
	for n := r.IntN(3); n > 0; n-- {
		g.headers = append(g.headers, [2]string{pick(r, "authorization", "authorization", "x-token", "x_token"), genHeaderValue(r)})
	}
	for n := r.IntN(3); n > 0; n-- {
		g.headers = append(g.headers, [2]string{"cookie", genCookieHeader(r)})
	}
	if r.IntN(3) == 0 {
		ct, body := genBody(r)
		g.headers = append(g.headers, [2]string{"content-type", ct})
		g.body = body
	}
	return g
}

// refConfig is the JSON the reference script reads.
func refConfig(c *Config) map[string]any {
	locs := make([]string, len(c.Locations))
	for i, l := range c.Locations {
		locs[i] = string(l)
	}
	return map[string]any{
		"locations": locs, "header_name": c.HeaderName, "header_type": c.HeaderType,
		"cookie_name": c.CookieName, "refresh_cookie_name": c.RefreshCookieName,
		"query_string_name": c.QueryStringName, "query_string_value_prefix": c.QueryStringValuePrefix,
		"json_key": c.JSONKey, "refresh_json_key": c.RefreshJSONKey,
	}
}

type refSearch struct {
	Token, Location, Bad, Missing, Crash string
}

// TestSelectionMatchesFlask generates requests from the shapes above and requires that,
// whenever Scan does not refuse a request as ambiguous, it selects exactly the token
// flask-jwt-extended reads for each route kind, or reports the same error or missing message.
func TestSelectionMatchesFlask(t *testing.T) {
	ref := startReference(t, "testdata/flask_select.py", "flask_jwt_extended", "werkzeug")
	configs := []func(*Config){
		func(c *Config) {},
		func(c *Config) {
			c.Locations = []Location{LocationHeaders, LocationCookies, LocationQueryString, LocationJSON}
		},
		func(c *Config) {
			c.Locations = []Location{LocationCookies, LocationJSON, LocationHeaders}
			c.HeaderName, c.HeaderType = "X-Token", ""
		},
		func(c *Config) {
			c.Locations = []Location{LocationQueryString, LocationHeaders}
			c.QueryStringValuePrefix = "Bearer "
		},
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(1, 2))
	compared, refused := 0, 0
	for i := 0; i < n; i++ {
		cfg := DefaultConfig()
		configs[i%len(configs)](&cfg)
		var errs []string
		cfg.Validate("", func(f, format string, args ...any) { errs = append(errs, f+": "+fmt.Sprintf(format, args...)) })
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		s := NewScanner(&cfg, [2]bool{true, true}, "")
		g := genRequestFor(r)
		var body []byte
		if s.WantsBody(g.headers) {
			body = g.body
		}
		res := s.Scan(g.headers, body)
		if res.Ambiguous != "" {
			refused++
			continue
		}
		var hs [][2]string
		path := "/"
		for _, h := range g.headers {
			if h[0] == ":path" {
				path = h[1]
			}
			hs = append(hs, [2]string{latin1(h[0]), latin1(h[1])})
		}
		req := map[string]any{"config": refConfig(&cfg), "headers": hs, "path": latin1(path), "body": nil}
		if g.body != nil {
			req["body"] = latin1(string(g.body))
		}
		var want map[string]refSearch
		ref.ask(req, &want)
		for k, kind := range []string{"access", "refresh"} {
			w, got := want[kind], res.Selected[k]
			var gotMissing string
			if got.Token == "" && got.Bad == "" {
				gotMissing = s.Missing(&got, Kind(k))
			}
			switch {
			case w.Crash != "":
				// flask answers 500: nothing is authenticated, whatever we select.
			case w.Token != "" && (got.Token != w.Token || string(got.Location) != w.Location),
				w.Bad != "" && got.Bad != w.Bad,
				w.Missing != "" && gotMissing != w.Missing:
				t.Errorf("request %d (%s route), config %d:\n%s\nflask: %+v\nours:  token=%q location=%q bad=%q missing=%q",
					i, kind, i%len(configs), g, w, got.Token, got.Location, got.Bad, gotMissing)
			}
		}
		compared++
		if t.Failed() && compared > 20 {
			t.FailNow()
		}
	}
	t.Logf("%d requests compared with flask-jwt-extended, %d refused as ambiguous", compared, refused)
	if compared < n/4 {
		t.Errorf("only %d of %d generated requests were not ambiguous: the generator no longer tests selection", compared, n)
	}
}
