package differential

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf16"
)

// A shape is a request with token placeholders (see tokenNames and spellings): it can be
// printed, and materialized for a route's token kind.
type shape struct {
	Class   string // the family it probes; violations are summed per class
	Name    string // the request, readably: which token where, how written
	Route   string // protected | refresh | optional
	Method  string
	Query   string   // raw, after '?'
	Headers []header // raw header lines, in order
	Body    string
	Chunked bool // send the body with Transfer-Encoding: chunked
	Random  bool
}

type header struct{ Name, Value string }

// route names what a route reads: its token kind, cookie and JSON key (flask's defaults).
type route struct{ path, kind, cookie, jsonKey string }

var (
	protected = route{"protected", "access", "access_token_cookie", "access_token"}
	refresh   = route{"refresh", "refresh", "refresh_token_cookie", "refresh_token"}
	optional  = route{"optional", "access", "access_token_cookie", "access_token"}
)

// q quotes a header value or body for a shape's name: Go escapes show every odd byte.
func q(s string) string { return strconv.Quote(s) }

func auth(r route, class, name string, values ...string) shape {
	s := shape{Class: class, Route: r.path, Method: "GET"}
	var names []string
	for _, v := range values {
		s.Headers = append(s.Headers, header{"Authorization", v})
		names = append(names, "Authorization: "+q(v))
	}
	s.Name = strings.Join(names, " + ")
	if name != "" {
		s.Name = name + ": " + s.Name
	}
	return s
}

func cookie(r route, class string, values ...string) shape {
	s := shape{Class: class, Route: r.path, Method: "GET"}
	var names []string
	for _, v := range values {
		s.Headers = append(s.Headers, header{"Cookie", v})
		names = append(names, "Cookie: "+q(v))
	}
	s.Name = strings.Join(names, " + ")
	return s
}

func query(r route, class, raw string) shape {
	return shape{Class: class, Route: r.path, Method: "GET", Query: raw, Name: "?" + raw}
}

func jsonBody(r route, class, ctype, body string) shape {
	s := shape{Class: class, Route: r.path, Method: "POST", Body: body}
	if ctype != "" {
		s.Headers = append(s.Headers, header{"Content-Type", ctype})
	}
	s.Name = fmt.Sprintf("POST Content-Type: %s, body %s", q(ctype), abbreviate(body))
	return s
}

// combine merges shapes into one request (headers and query in order, the last body).
func combine(class string, parts ...shape) shape {
	s := shape{Class: class, Route: parts[0].Route, Method: "GET"}
	var names, qs []string
	for _, p := range parts {
		s.Headers = append(s.Headers, p.Headers...)
		if p.Query != "" {
			qs = append(qs, p.Query)
		}
		if p.Body != "" {
			s.Body, s.Method, s.Chunked = p.Body, p.Method, p.Chunked
		}
		names = append(names, p.Name)
	}
	s.Query = strings.Join(qs, "&")
	s.Name = strings.Join(names, " + ")
	return s
}

func abbreviate(s string) string {
	if len(s) > 120 {
		return q(s[:50]) + fmt.Sprintf("…(%d bytes)…", len(s)-100) + q(s[len(s)-50:])
	}
	return q(s)
}

// Separators that Python's str.split() splits on. In a header, werkzeug decodes bytes as
// latin-1, so a single byte 0x85 or 0xA0 is U+0085 / U+00A0 to flask; the UTF-8 encodings of
// U+2000..U+200A and U+3000 arrive as several latin-1 characters and split nothing (tested
// all the same: the table records what flask does).
var separators = []struct{ name, s string }{
	{"space", " "}, {"two spaces", "  "}, {"tab", "\t"}, {"VT", "\x0b"}, {"FF", "\x0c"},
	{"U+001C", "\x1c"}, {"U+001D", "\x1d"}, {"U+001E", "\x1e"}, {"U+001F", "\x1f"},
	{"U+0085 byte", "\x85"}, {"U+00A0 byte", "\xa0"}, {"space U+0085", " \x85"}, {"U+00A0 space", "\xa0 "},
	{"U+0085 UTF-8", "\u0085"}, {"U+00A0 UTF-8", "\u00a0"},
	{"U+2000", "\u2000"}, {"U+2001", "\u2001"}, {"U+2002", "\u2002"}, {"U+2003", "\u2003"}, {"U+2004", "\u2004"},
	{"U+2005", "\u2005"}, {"U+2006", "\u2006"}, {"U+2007", "\u2007"}, {"U+2008", "\u2008"}, {"U+2009", "\u2009"},
	{"U+200A", "\u200a"}, {"U+3000", "\u3000"},
}

// corpus is the deterministic set of shapes.
func corpus() []shape {
	var out []shape
	for _, r := range []route{protected, refresh} {
		out = append(out, headerShapes(r)...)
		out = append(out, cookieShapes(r)...)
		out = append(out, queryShapes(r)...)
		out = append(out, jsonShapes(r)...)
		out = append(out, spellingShapes(r)...)
		out = append(out, comboShapes(r)...)
	}
	out = append(out, subjectShapes()...)
	out = append(out, methodShapes()...)
	for _, s := range []shape{
		auth(optional, "optional route", "", "Bearer {R}"),
		auth(optional, "optional route", "", "Bearer\x85{R}"),
		auth(optional, "optional route", "", "bearer {R}"),
		cookie(optional, "optional route", "access_token_cookie={R}"),
		cookie(optional, "optional route", " access_token_cookie ={R}"),
		query(optional, "optional route", "jwt={R}"),
		query(optional, "optional route", "%6Awt={R}"),
		jsonBody(optional, "optional route", "application/json", `{"access_token":"{R}"}`),
	} {
		out = append(out, s)
	}
	return out
}

func headerShapes(r route) []shape {
	var out []shape
	out = append(out, auth(r, "baseline", "", "Bearer {R}"), auth(r, "baseline", "", "Bearer {D}"))
	for _, sc := range []string{"bearer", "BEARER", "BeArEr", "Bearer:", "Token", "JWT"} {
		out = append(out, auth(r, "authorization: scheme spelling", "", sc+" {R}"))
	}
	out = append(out, auth(r, "authorization: no scheme", "", "{R}"))
	for _, sep := range separators {
		out = append(out, auth(r, "authorization: whitespace between scheme and token", sep.name, "Bearer"+sep.s+"{R}"))
	}
	for _, sep := range []struct{ name, s string }{{"space", " "}, {"tab", "\t"}, {"U+0085 byte", "\x85"},
		{"U+00A0 byte", "\xa0"}, {"U+001C", "\x1c"}, {"U+001F", "\x1f"}, {"comma", ","}, {"U+3000", "\u3000"}} {
		out = append(out,
			auth(r, "authorization: whitespace around", sep.name+" before", sep.s+"Bearer {R}"),
			auth(r, "authorization: whitespace around", sep.name+" after", "Bearer {R}"+sep.s))
	}
	for _, v := range []string{"Basic dXNlcjpwYXNz, Bearer {R}", "Basic dXNlcjpwYXNz,Bearer {R}", "Bearer {R}, Basic dXNlcjpwYXNz",
		"Bearer {D}, Bearer {R}", "Bearer {R}, Bearer {D}", "Bearer {R},", ",Bearer {R}", "Bearer {R}, Bearer",
		"Basic x,\x85Bearer {R}", "Basic x,\tBearer {R}", "Digest a=1, Bearer {R}, Basic b"} {
		out = append(out, auth(r, "authorization: comma-separated credentials", "", v))
	}
	for _, vs := range [][]string{{"Bearer {D}", "Bearer {R}"}, {"Bearer {R}", "Bearer {D}"},
		{"Basic dXNlcjpwYXNz", "Bearer {R}"}, {"Bearer {R}", "Basic dXNlcjpwYXNz"}, {"", "Bearer {R}"}} {
		out = append(out, auth(r, "authorization: several headers", "", vs...))
	}
	return out
}

func cookieShapes(r route) []shape {
	c := r.cookie
	var out []shape
	out = append(out, cookie(r, "baseline", c+"={R}"))
	for _, v := range []string{" " + c + "={R}", c + " ={R}", c + "= {R}", " " + c + " = {R} ", "\t" + c + "\t=\t{R}",
		"\x85" + c + "={R}", "\xa0" + c + "={R}", c + "\x1c={R}", "a=1; " + c + " ={R}"} {
		out = append(out, cookie(r, "cookie: whitespace around the name or value", v))
	}
	for _, v := range []string{c + `="{R}"`, c + "={R|qoct}", c + "={R|qbs}", c + `="{R} "`, c + `=" {R}"`, c + `="{R}`} {
		out = append(out, cookie(r, "cookie: quoted and escaped values", v))
	}
	for _, v := range []string{c + "={D}; " + c + "={R}", c + "={R}; " + c + "={D}", c + "=; " + c + "={R}",
		c + "={R}; " + c + "=", c + "=\"\"; " + c + "={R}", c + "={D}; " + c + " ={R}", " " + c + "={D}; " + c + "={R}"} {
		out = append(out, cookie(r, "cookie: duplicate names (werkzeug: first wins)", v))
	}
	for _, vs := range [][]string{{"a=1", c + "={R}"}, {c + "={R}", "a=1"}, {c + "={D}", c + "={R}"}, {c + "={R}", c + "={D}"}} {
		out = append(out, cookie(r, "cookie: several Cookie headers", vs...))
	}
	for _, v := range []string{"a=1;" + c + "={R}", "a=1," + c + "={R}", "a=1, " + c + "={R}", c + "={R};", c + "={R};;a",
		"a=\"x;y\"; " + c + "={R}", "a=\"x\\\"; " + c + "={R}\""} {
		out = append(out, cookie(r, "cookie: separators and quoting of other cookies", v))
	}
	for _, v := range []string{strings.ToUpper(c) + "={R}", strings.ReplaceAll(c, "_", "%5F") + "={R}", c + "%20={R}"} {
		out = append(out, cookie(r, "cookie: other spellings of the name", v))
	}
	return out
}

func queryShapes(r route) []shape {
	var out []shape
	out = append(out, query(r, "baseline", "jwt={R}"))
	for _, v := range []string{"%6Awt={R}", "j%77t={R}", "%6A%77%74={R}", "%6a%77%74={R}", "jwt%20={R}", "+jwt={R}", "jwt+={R}", "JWT={R}"} {
		out = append(out, query(r, "query: percent-encoded or spaced names", v))
	}
	for _, v := range []string{"jwt={R|pct}", "jwt={R|pctdot}", "jwt={R|stdpct}", "jwt={R|q20}", "jwt={R|qu2000}", "jwt={R|q0a}", "jwt=%20{R}"} {
		out = append(out, query(r, "query: encoded values", v))
	}
	for _, v := range []string{"jwt={D}&jwt={R}", "jwt={R}&jwt={D}", "jwt=&jwt={R}", "jwt={R}&jwt=", "%6Awt={D}&jwt={R}", "jwt={D}&%6Awt={R}"} {
		out = append(out, query(r, "query: duplicate names (werkzeug: first wins)", v))
	}
	for _, v := range []string{"x=1;jwt={R}", "jwt={R};x=1", "&&jwt={R}&", "jwt={R}&jwt", "x=1&&jwt={R}"} {
		out = append(out, query(r, "query: separators", v))
	}
	return out
}

func jsonShapes(r route) []shape {
	k := r.jsonKey
	body := `{"` + k + `":"{R}"}`
	var out []shape
	out = append(out, jsonBody(r, "baseline", "application/json", body))
	for _, ct := range []string{"application/json; charset=utf-8", "application/x+json", "application/vnd.api+json", "APPLICATION/JSON",
		"application/json ", "text/json", "", "text/plain", "application/json, text/plain", "application/jsonx"} {
		out = append(out, jsonBody(r, "json: content types", ct, body))
	}
	for _, b := range []string{`{"` + k + `":"{D}","` + k + `":"{R}"}`, `{"` + k + `":"{R}","` + k + `":"{D}"}`,
		`{"` + k + `":"","` + k + `":"{R}"}`, `{"` + k + `":null,"` + k + `":"{R}"}`} {
		out = append(out, jsonBody(r, "json: duplicate keys (Python: last wins)", "application/json", b))
	}
	esc := strings.Replace(k, "_", `\u005f`, 1)
	for _, b := range []string{`{"` + esc + `":"{R}"}`, `{"` + k + `":"{R|jsonesc}"}`, `{"` + k + `":"{D}","` + esc + `":"{R}"}`,
		"\ufeff" + body, ` ` + body + "\n\t", `{"x":NaN,"` + k + `":"{R}"}`, `{"x":Infinity,"` + k + `":"{R}"}`,
		`{"x":1e999,"` + k + `":"{R}"}`, `{"x":"\ud800","` + k + `":"{R}"}`, `{"x":"` + "\xff" + `","` + k + `":"{R}"}`,
		`{"` + k + `":"{R}"}garbage`, `{"` + k + `":"{R}",}`, `[{"` + k + `":"{R}"}]`, `{"data":{"` + k + `":"{R}"}}`} {
		out = append(out, jsonBody(r, "json: encodings and odd documents", "application/json", b))
	}
	for _, enc := range []struct{ name, bom string }{{"UTF-16LE", ""}, {"UTF-16LE with BOM", "\ufeff"}} {
		s := jsonBody(r, "json: encodings and odd documents", "application/json", utf16le(enc.bom+body))
		s.Name = "POST application/json, body " + q(body) + " in " + enc.name
		out = append(out, s)
	}
	big := jsonBody(r, "json: body size", "application/json", `{"pad":"`+strings.Repeat("x", 1200<<10)+`","`+k+`":"{R}"}`)
	big.Name = "POST application/json, 1.2 MiB body, token last"
	out = append(out, big)
	chunked := jsonBody(r, "json: body size", "application/json", body)
	chunked.Chunked, chunked.Name = true, chunked.Name+", Transfer-Encoding: chunked"
	get := jsonBody(r, "json: content types", "application/json", body)
	get.Method, get.Name = "GET", "GET with "+get.Name[5:]
	return append(out, chunked, get)
}

// utf16le marks a body to be sent in UTF-16LE. The shape keeps it readable, with its
// placeholders; materialized replaces them first and encodes afterwards.
func utf16le(s string) string { return utf16Marker + s }

// utf16Marker prefixes a shape's body that goes out in UTF-16LE.
const utf16Marker = "\x00UTF16LE\x00"

func encodeUTF16LE(s string) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(s)) {
		b.WriteByte(byte(u))
		b.WriteByte(byte(u >> 8))
	}
	return b.String()
}

func spellingShapes(r route) []shape {
	var out []shape
	for _, sp := range []string{"pad1", "pad2", "std", "junk", "lower"} {
		out = append(out,
			auth(r, "token spelling: "+spellings[sp], "", "Bearer {R|"+sp+"}"),
			cookie(r, "token spelling: "+spellings[sp], r.cookie+"={R|"+sp+"}"),
			query(r, "token spelling: "+spellings[sp], "jwt={R|"+sp+"}"),
			jsonBody(r, "token spelling: "+spellings[sp], "application/json", `{"`+r.jsonKey+`":"{R|`+sp+`}"}`))
	}
	for _, sp := range []string{"sp", "u2000"} {
		out = append(out,
			cookie(r, "token spelling: "+spellings[sp], r.cookie+`="{R|`+sp+`}"`),
			jsonBody(r, "token spelling: "+spellings[sp], "application/json", `{"`+r.jsonKey+`":"{R|`+sp+`}"}`))
	}
	out = append(out, jsonBody(r, "token spelling: "+spellings["nl"], "application/json", `{"`+r.jsonKey+`":"{R}\n"}`))
	return out
}

// comboShapes put a valid decoy in one place and the revoked token in another.
func comboShapes(r route) []shape {
	const cls = "decoy and revoked token in different locations"
	h := func(v string) shape { return auth(r, cls, "", v) }
	c := func(v string) shape { return cookie(r, cls, r.cookie+"="+v) }
	qs := func(v string) shape { return query(r, cls, "jwt="+v) }
	j := func(v string) shape {
		return jsonBody(r, cls, "application/json", `{"`+r.jsonKey+`":"`+v+`"}`)
	}
	basic := auth(r, cls, "", "Basic dXNlcjpwYXNz")
	return []shape{
		combine(cls, h("Bearer {D}"), c("{R}")), combine(cls, h("Bearer {R}"), c("{D}")),
		combine(cls, h("Bearer {D}"), qs("{R}")), combine(cls, c("{D}"), qs("{R}")), combine(cls, qs("{D}"), c("{R}")),
		combine(cls, h("Bearer {D}"), j("{R}")), combine(cls, c("{D}"), j("{R}")), combine(cls, qs("{D}"), j("{R}")),
		combine(cls, j("{D}"), h("Bearer {R}")),
		combine(cls, basic, c("{R}")), combine(cls, basic, qs("{R}")), combine(cls, basic, j("{R}")),
		combine(cls, h("Bearer\x85{R}"), c("{D}")), combine(cls, h("Bearer\xa0{R}"), qs("{D}")),
		combine(cls, h("bearer {R}"), c("{D}")), combine(cls, h("bearer {D}"), c("{R}")),
		combine(cls, h("Bearer {D}, Bearer {R}"), c("{D}")), combine(cls, h("Bearer\x85{D}"), c("{R}")),
		combine(cls, h(""), c("{R}")), combine(cls, h("Bearer"), c("{R}")), combine(cls, h("Bearer {R|junk}"), c("{D}")),
		combine(cls, cookie(r, cls, r.cookie+"={D}; "+r.cookie+" ={R}"), qs("{D}")),
		combine(cls, cookie(r, cls, " "+r.cookie+"={R}"), qs("{D}")),
		combine(cls, query(r, cls, "%6Awt={R}"), c("{D}")),
		combine(cls, query(r, cls, "jwt={D}&jwt={R}"), j("{D}")),
	}
}

func subjectShapes() []shape {
	var out []shape
	for _, r := range []route{protected, refresh} {
		for _, tok := range []string{"Rc", "Ri", "Rj"} {
			cls := map[string]string{"Rc": "subject cutoff", "Ri": "integer sub (identity=user.id), subject cutoff",
				"Rj": "integer sub (identity=user.id), revoked jti"}[tok]
			out = append(out,
				auth(r, cls, "", "Bearer {"+tok+"}"),
				cookie(r, cls, r.cookie+"={"+tok+"}"),
				query(r, cls, "jwt={"+tok+"}"),
				jsonBody(r, cls, "application/json", `{"`+r.jsonKey+`":"{`+tok+`}"}`),
				auth(r, cls, "", "Bearer {"+tok+"|pad1}"),
				combine(cls, auth(r, cls, "", "Bearer {D}"), cookie(r, cls, r.cookie+"={"+tok+"}")))
		}
	}
	return out
}

func methodShapes() []shape {
	var out []shape
	for _, m := range []string{"HEAD", "DELETE", "PUT", "OPTIONS", "PATCH"} {
		s := auth(protected, "methods", "", "Bearer {R}")
		s.Method, s.Name = m, m+" "+s.Name
		out = append(out, s)
	}
	s := combine("methods", auth(protected, "methods", "", "Basic x"), cookie(protected, "methods", "access_token_cookie={R}"))
	s.Method, s.Name = "DELETE", "DELETE "+s.Name
	return append(out, s)
}

// randomShapes composes n shapes from the pieces above with a seeded generator: one to
// four placements (header, cookie, query, JSON), each with a random token, spelling and
// writing of its location.
func randomShapes(seed uint64, n int) []shape {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	toks := []string{"R", "R", "R", "D", "D", "Rc", "Ri", "Rj"}
	spells := []string{"", "", "", "", "pad1", "std", "junk", "pad2"}
	tok := func() string {
		t, s := pick(toks), pick(spells)
		if s == "" {
			return "{" + t + "}"
		}
		return "{" + t + "|" + s + "}"
	}
	seps := make([]string, len(separators))
	for i, s := range separators {
		seps[i] = s.s
	}
	var out []shape
	for i := range n {
		r := []route{protected, protected, refresh, optional}[rng.IntN(4)]
		var parts []shape
		var ck, qs, js []string
		for range 1 + rng.IntN(4) {
			switch rng.IntN(4) {
			case 0:
				scheme := pick([]string{"Bearer", "Bearer", "bearer", "BEARER", "Basic", ""})
				v := scheme + pick(seps) + tok()
				if rng.IntN(4) == 0 {
					v = pick([]string{"Basic x, ", "Bearer " + tok() + ", ", "\x85", " ", ","}) + v
				}
				if rng.IntN(5) == 0 {
					v += pick([]string{",", " ", "\xa0", ", Basic y"})
				}
				parts = append(parts, auth(r, "random", "", v))
			case 1:
				name := pick([]string{r.cookie, r.cookie, " " + r.cookie, r.cookie + " ", "access_token_cookie", "refresh_token_cookie", "a"})
				val := tok()
				switch rng.IntN(4) {
				case 0:
					val = `"` + val + `"`
				case 1:
					val = pick([]string{"{R|qoct}", "{D|qoct}", "{R|qbs}"})
				}
				ck = append(ck, name+"="+val)
			case 2:
				name := pick([]string{"jwt", "jwt", "%6Awt", "j%77t", "JWT", "jwt%20"})
				val := tok()
				if rng.IntN(4) == 0 {
					val = pick([]string{"{R|pct}", "{R|stdpct}", "{R|q20}", "{D|pct}", "{R|qu2000}"})
				}
				qs = append(qs, name+"="+val)
			case 3:
				key := pick([]string{r.jsonKey, r.jsonKey, "access_token", "refresh_token", strings.Replace(r.jsonKey, "_", `\u005f`, 1)})
				js = append(js, `"`+key+`":"`+tok()+`"`)
			}
		}
		if len(ck) > 0 {
			if rng.IntN(3) == 0 {
				for _, c := range ck {
					parts = append(parts, cookie(r, "random", c))
				}
			} else {
				parts = append(parts, cookie(r, "random", strings.Join(ck, pick([]string{"; ", ";", "; ", ", "}))))
			}
		}
		if len(qs) > 0 {
			parts = append(parts, query(r, "random", strings.Join(qs, pick([]string{"&", "&", ";"}))))
		}
		if len(js) > 0 {
			parts = append(parts, jsonBody(r, "random", pick([]string{"application/json", "application/json", "application/x+json", "text/plain"}), "{"+strings.Join(js, ",")+"}"))
		}
		s := combine("random", parts...)
		s.Random, s.Name = true, fmt.Sprintf("random #%d (seed %d) %s %s", i, seed, r.path, s.Name)
		out = append(out, s)
	}
	return out
}
