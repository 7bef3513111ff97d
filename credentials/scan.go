package credentials

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// Kind is the kind of route flask-jwt-extended selects a token for: @jwt_required() reads
// access-token sources, @jwt_required(refresh=True) refresh-token sources. The proxy does not
// know the route's kind, so it selects for both (the ones jwt.token_types allows).
type Kind uint8

// Route kinds.
const (
	Access Kind = iota
	Refresh
)

// MaxCandidates bounds the distinct candidate payloads one request may carry. A request with
// more is refused (Result.Ambiguous): checking only some of them would let one through.
const MaxCandidates = 32

// Result is what Scan found. Its strings are valid until the Scanner's next Scan.
type Result struct {
	// Candidates are the payloads discovered anywhere in the request: base64 text as it
	// appeared (a span of a run may contain dots; Peek skips them as PyJWT does).
	Candidates []string
	// Selected holds, per Kind, the token flask-jwt-extended would read for a route of that
	// kind; only the kinds the Scanner was built for are filled in.
	Selected [2]Selection
	// Ambiguous, when not empty, says why the request could be read differently by the app
	// than by this package; the request must be refused.
	Ambiguous string
}

// Selection is the outcome of flask-jwt-extended's search for one route kind.
type Selection struct {
	// Token is the token the app would decode ("" if none was found).
	Token string
	// Location is where Token was found.
	Location Location
	// Payload is what lies between Token's first and last dots, when discovery already knew
	// where they are (the common "Bearer <token>" header); "" means it was not worked out
	// (or Token has fewer than two dots).
	Payload string
	// Bad is flask-jwt-extended's 422 message for a malformed credential that stops its
	// search (InvalidHeaderError, InvalidQueryParamError, a JSON token that is not a string).
	Bad string
	// Known, when not 0, names Token's bytes: the Scanner found it in a header value it
	// remembers (known.go). No other token is given the same number, by any Scanner; the
	// same token is, while the Scanner remembers its value. 0 says nothing.
	Known uint64
	// misses says why each location searched held nothing, in order.
	misses [4]miss
	nMiss  int
}

// reset makes sel the zero Selection, field by field (see find.set).
func (sel *Selection) reset() {
	sel.Token, sel.Location, sel.Payload, sel.Bad, sel.Known = "", "", "", "", 0
	sel.misses, sel.nMiss = [4]miss{}, 0
}

// miss is why one location held no token; Missing turns it into flask's words.
type miss uint8

const (
	missHeader miss = iota
	missHeaderType
	missCookie
	missQuery
	missJSONKey
	missJSONType
)

// Scanner discovers and selects tokens for one VM. Not safe for concurrent use.
type Scanner struct {
	cfg   Config
	kinds [2]bool
	// scanned are the header names (lower case) whose values are searched for tokens.
	scanned []string
	// normHeader is the configured header name normalized as WSGI does ('-' and '_' alike).
	normHeader string
	// payloadHeader names a header holding a bare base64url payload (Envoy jwt_authn's
	// forward_payload_header), "" for none.
	payloadHeader string
	msgs          messages

	scratch []byte
	body    []byte // a copy of the body for selection, which unescapes in place
	res     Result
	peek    Peeked

	// What each location holds, for the Scan under way.
	header, query find
	// The configured header's (last) value and its last run of token characters, as discovery
	// saw it: fromHeader's common case needs no second pass over the token. headerCount is
	// how many headers of that name discovery saw, headerVariant whether it saw one that
	// WSGI would read as that name: fromHeader needs no pass of its own over the headers.
	headerValue   string
	headerRun     run
	headerKnown   uint64 // the value's id among the known values, 0 if it is not one
	known         knownValues
	headerCount   int
	headerVariant bool
	// bodyVariant: discovery saw a header that WSGI reads as Content-Type, Content-Length or
	// Transfer-Encoding under another spelling (bodyHeaderVariant); only with the json location.
	bodyVariant bool
	// wantsJSON: the json location is configured (WantsBody asks on every request).
	wantsJSON bool
	// The request being scanned, for reserve, which runs at the first decoded form (most
	// requests make none, and skip its pass over the headers); reserved says it has run.
	reqHeaders [][2]string
	reqBody    []byte
	reserved   bool
	// discovered[n] is true if discovery reads some header whose name is n bytes long: the
	// other headers (most of a request's) are passed over on their length alone.
	discovered []bool
	// locs are cfg.Locations as small numbers, for the request path's switches.
	locs          []locationCode
	cookies, json [2]find
}

// find is what one location holds for one kind: a token, flask's 422 for a malformed
// credential, or why it holds none.
type find struct {
	tok, bad string
	m        miss
	payload  string // tok's payload when discovery saw where its dots are (see Selection)
	known    uint64 // see Selection.Known
}

// NewScanner returns a Scanner for a validated cfg, selecting for the given route kinds.
// payloadHeader (lower case, or "") is a header that carries a bare token payload.
func NewScanner(cfg *Config, kinds [2]bool, payloadHeader string) *Scanner {
	s := &Scanner{cfg: *cfg, kinds: kinds, payloadHeader: payloadHeader}
	s.cfg.Locations = slices.Clone(cfg.Locations) // s.locs is worked out from it, once
	s.cfg.headerKey = strings.ToLower(cfg.HeaderName)
	s.normHeader = wsgiName(s.cfg.headerKey)
	s.scanned = []string{"authorization"}
	if s.cfg.headerKey != "authorization" {
		s.scanned = append(s.scanned, s.cfg.headerKey)
	}
	s.msgs = newMessages(&s.cfg)
	s.known = newKnownValues()
	s.wantsJSON = s.cfg.Has(LocationJSON)
	s.res.Candidates = make([]string, 0, MaxCandidates)
	for _, l := range s.cfg.Locations {
		s.locs = append(s.locs, codeOf(l))
	}
	names := append([]string{":path", "cookie", payloadHeader}, s.scanned...)
	for _, n := range names {
		if len(n) >= len(s.discovered) {
			s.discovered = append(s.discovered, make([]bool, len(n)+1-len(s.discovered))...)
		}
		s.discovered[len(n)] = true
	}
	return s
}

// WantsBody reports whether the body of a request with these headers must be read before
// deciding: only with the json location, and only for bodies a framework would parse for a
// token (JSON of any spelling, forms, or no content type at all).
func (s *Scanner) WantsBody(headers [][2]string) bool {
	if !s.wantsJSON {
		return false
	}
	ct, n := "", 0
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see find.set)
		if h[0] == "content-type" {
			ct = h[1]
			n++
		}
	}
	if n != 1 {
		return true // none, or several: read it either way
	}
	ct = strings.ToLower(ct)
	return strings.Contains(ct, "json") || strings.Contains(ct, "x-www-form-urlencoded")
}

// MaxBodyBytes is the configured bound on a body that WantsBody asks for.
func (s *Scanner) MaxBodyBytes() int { return s.cfg.MaxBodyBytes }

// Scan searches headers (and body, when WantsBody asked for it; nil otherwise).
func (s *Scanner) Scan(headers [][2]string, body []byte) *Result {
	r := &s.res
	r.Candidates = r.Candidates[:0]
	r.Ambiguous = ""
	s.discoverAll(headers, body)
	s.selectAll(headers, body)
	s.reqHeaders, s.reqBody = nil, nil
	return r
}

// discoverAll finds the candidates of every header discovery reads, and of the body, and
// notes the configured header's values for fromHeader.
func (s *Scanner) discoverAll(headers [][2]string, body []byte) {
	s.headerValue, s.headerCount, s.headerVariant, s.bodyVariant = "", 0, false, false
	s.headerRun.start = -1 // no run: set where the header's value is searched
	s.headerKnown = 0
	s.reqHeaders, s.reqBody, s.reserved = headers, body, false
	s.scratch = s.scratch[:0]
	for i := range headers {
		name, value := headers[i][0], headers[i][1]
		if s.wantsJSON && bodyHeaderVariant(name) {
			s.bodyVariant = true
		}
		if len(name) >= len(s.discovered) || !s.discovered[len(name)] {
			continue
		}
		if len(name) == len(s.cfg.headerKey) { // the configured header, or a variant of its name (wsgiName keeps the length)
			switch {
			case name == s.cfg.headerKey:
				s.headerValue = value
				s.headerCount++
			case wsgiName(name) == s.normHeader:
				s.headerVariant = true // WSGI servers map '-' and '_' alike: the app would read this one too
			}
		}
		switch {
		case name == ":path":
			s.discover(value, formPercent)
		case name == "cookie":
			s.discover(value, formPercent|formBackslash)
		case name == s.payloadHeader:
			s.addCandidate(trimBlank(value))
			s.discover(value, 0)
		case name == s.cfg.headerKey:
			s.headerRun = s.discoverHeader(value)
		case s.isScanned(name):
			s.runs(value)
		}
	}
	if body != nil {
		s.discover(unsafe.String(unsafe.SliceData(body), len(body)), formPercent|formJSON)
	}
}

// selectAll runs the selection, and records the ambiguities that must refuse the request.
// Each location is read once; the two kinds differ only in the cookie and JSON key they look
// for.
func (s *Scanner) selectAll(headers [][2]string, body []byte) {
	for _, loc := range s.locs {
		switch loc {
		case codeHeaders:
			s.fromHeader(&s.header)
		case codeCookies:
			s.findCookies(headers)
		case codeQueryString:
			s.query = s.fromQuery(headers)
		case codeJSON:
			if s.bodyVariant {
				s.ambiguous(s.msgs.bodyVariant)
			}
			s.fromJSON(headers, body)
		}
	}
	for k := range s.res.Selected {
		if s.kinds[k] {
			s.selectFor(&s.res.Selected[k], Kind(k))
		} else {
			s.res.Selected[k].reset()
		}
	}
}

func (s *Scanner) isScanned(name string) bool {
	for _, n := range s.scanned {
		if n == name {
			return true
		}
	}
	return false
}

// ambiguous records the first reason to refuse the request.
func (s *Scanner) ambiguous(msg string) {
	if s.res.Ambiguous == "" {
		s.res.Ambiguous = msg
	}
}

// reserve grows the scratch buffer so that every decoded form of this request fits without
// moving: candidates are views into it. It runs before the request's first form is written
// (form calls it), when the buffer is still empty.
func (s *Scanner) reserve(headers [][2]string, body []byte) {
	s.reserved = true
	n := len(body)
	for i := range headers {
		n += len(headers[i][1])
	}
	need := 6*n + 64
	if cap(s.scratch) < need {
		s.scratch = make([]byte, 0, need)
	}
	s.scratch = s.scratch[:0]
}

type formSet uint8

const (
	formPercent   formSet = 1 << iota // %XX and '+', once and twice
	formBackslash                     // cookie escapes: \ooo and \x
	formJSON                          // JSON string escapes
)

// discover searches text and each of its decoded forms for candidate payloads. Which forms
// exist is known from the bytes runs saw: only text with '%' or '+', '\\' or NUL has them.
func (s *Scanner) discover(text string, forms formSet) {
	if mayHoldPayload(text) {
		s.discoverForms(text, forms)
	}
}

// discoverForms is discover without its first test.
func (s *Scanner) discoverForms(text string, forms formSet) {
	_, seen := s.runs(text)
	if forms&formPercent != 0 && seen&(seenPercent|seenPlus) != 0 {
		s.percentForms(appendPercentDecoded, text)
		if seen&seenPlus != 0 && seen&seenPercent != 0 {
			s.percentForms(appendPercentDecodedKeepPlus, text)
		}
	}
	if forms&formBackslash != 0 && seen&seenBackslash != 0 {
		s.runs(s.form(appendCookieUnescaped, text))
	}
	if forms&formJSON != 0 && seen&seenBackslash != 0 {
		s.runs(s.form(appendJSONUnescaped, text))
	}
	if forms&formJSON != 0 && seen&seenNUL != 0 {
		// Python's json.loads(bytes), which Flask calls, reads UTF-16 and UTF-32 too (by BOM
		// or NUL pattern): dropping the NULs leaves the ASCII of such a body, escapes and all.
		ascii := s.form(appendWithoutNUL, text)
		if _, seen := s.runs(ascii); seen&seenBackslash != 0 {
			s.runs(s.form(appendJSONUnescaped, ascii))
		}
	}
}

// mayHoldPayload reports whether text, or a decoded form of it, can hold a candidate: a run
// with two dots needs a '.', or an escape that decodes to one ('%' for percent-encoding, '\\'
// for cookie and JSON escapes, NUL for the UTF-16 and UTF-32 bodies whose NULs are dropped).
// Most request paths have none of them: they are passed over without the machinery of runs
// (about a quarter of a request without a token, in wasm).
func mayHoldPayload(text string) bool {
	for i := 0; i < len(text); i++ {
		if mayDecodeToDot[text[i]] {
			return true
		}
	}
	return false
}

var mayDecodeToDot = [256]bool{'.': true, '%': true, '\\': true, 0: true}

// percentForms searches text percent-decoded once and, when that leaves escapes, twice.
func (s *Scanner) percentForms(decode func([]byte, string) []byte, text string) {
	once := s.form(decode, text)
	if _, seen := s.runs(once); seen&seenPercent != 0 {
		s.runs(s.form(decode, once))
	}
}

// form appends a decoded form of text to the scratch buffer and returns a view of it.
func (s *Scanner) form(decode func([]byte, string) []byte, text string) string {
	if !s.reserved {
		s.reserve(s.reqHeaders, s.reqBody)
	}
	start := len(s.scratch)
	s.scratch = decode(s.scratch, text)
	if len(s.scratch) == start {
		return ""
	}
	return unsafe.String(&s.scratch[start], len(s.scratch)-start)
}

// runs cuts text into runs of token characters and adds the payload candidates of each run
// with at least two dots: every interior segment, and the span from the first to the last
// dot when there are more than three segments. It returns the last run, and which of the
// bytes that call for a decoded form ('%', '+', '\\', NUL) text holds.
func (s *Scanner) runs(text string) (lastRun run, seen uint8) {
	for i := 0; i < len(text); {
		if c := text[i]; !isRunByte(c) {
			seen |= formBytes[c]
			i++
			continue
		}
		r := run{start: i}
		var dots int
		var plus bool
		r.end, r.first, r.last, dots, plus = scanRun(text, i)
		i, lastRun = r.end, r
		if plus {
			seen |= seenPlus
		}
		if dots < 2 {
			continue
		}
		span := text[r.first+1 : r.last]
		s.addCandidate(span)
		if dots > 2 {
			for rest := span; rest != ""; {
				seg, tail, _ := strings.Cut(rest, ".")
				s.addCandidate(seg)
				rest = tail
			}
		}
	}
	return lastRun, seen
}

// run is where a run of token characters lies in its text: [start, end), with its first and
// last dots (-1 if it has none).
type run struct{ start, end, first, last int }

// The bytes runs reports: each calls for a decoded form of the text that holds it.
const (
	seenPercent uint8 = 1 << iota
	seenPlus
	seenBackslash
	seenNUL
)

// formBytes maps the bytes that are not token characters to their seen bit.
var formBytes = [256]uint8{'%': seenPercent, '\\': seenBackslash, 0: seenNUL}

func (s *Scanner) addCandidate(p string) {
	if p == "" {
		return
	}
	for _, c := range s.res.Candidates {
		if c == p {
			return
		}
	}
	if len(s.res.Candidates) == MaxCandidates {
		s.ambiguous(s.msgs.tooMany)
		return
	}
	s.res.Candidates = append(s.res.Candidates, p)
}

// Peek reads a candidate's claims into the Scanner's own Peeked, valid until the next Peek.
func (s *Scanner) Peek(payload string) *Peeked {
	s.peek.Peek(payload)
	return &s.peek
}

// selectFor runs flask-jwt-extended's search for one route kind over the locations in order,
// into sel: the first location holding a token wins; a malformed one stops the search.
func (s *Scanner) selectFor(sel *Selection, k Kind) {
	sel.reset()
	for i, code := range s.locs {
		var f *find
		switch code {
		case codeHeaders:
			f = &s.header
		case codeCookies:
			f = &s.cookies[k]
		case codeQueryString:
			f = &s.query
		case codeJSON:
			f = &s.json[k]
		default:
			f = &noFind
		}
		if f.bad != "" {
			sel.Bad, sel.Location = f.bad, s.cfg.Locations[i]
			return
		}
		if f.tok != "" {
			sel.Token, sel.Location, sel.Payload, sel.Known = f.tok, s.cfg.Locations[i], f.payload, f.known
			return
		}
		sel.misses[sel.nMiss] = f.m
		sel.nMiss++
	}
}

// locationCode numbers the locations.
type locationCode uint8

const (
	codeOther locationCode = iota // none of the four (the configuration rules it out)
	codeHeaders
	codeCookies
	codeQueryString
	codeJSON
)

func codeOf(l Location) locationCode {
	switch l {
	case LocationHeaders:
		return codeHeaders
	case LocationCookies:
		return codeCookies
	case LocationQueryString:
		return codeQueryString
	case LocationJSON:
		return codeJSON
	}
	return codeOther
}

// set sets every field of f. Field by field: in wasm, Go zeroes or moves a struct of this
// size with memory.fill or memory.copy, which the engines run as a call (docs/benchmarks.md).
func (f *find) set(tok, bad string, m miss, payload string) {
	f.tok, f.bad, f.m, f.payload, f.known = tok, bad, m, payload, 0
}

// noFind is what a location that is none of the four holds (the configuration rules it out).
var noFind find

// Missing is flask-jwt-extended's NoAuthorizationError message for a route of kind k whose
// search found nothing.
func (s *Scanner) Missing(sel *Selection, k Kind) string {
	msgs := make([]string, sel.nMiss)
	for i, m := range sel.misses[:sel.nMiss] {
		switch m {
		case missHeader:
			msgs[i] = fmt.Sprintf("Missing %s Header", s.cfg.HeaderName)
		case missHeaderType:
			msgs[i] = fmt.Sprintf("Missing '%s' type in '%s' header. Expected '%s: %s <JWT>'", s.cfg.HeaderType, s.cfg.HeaderName, s.cfg.HeaderName, s.cfg.HeaderType)
		case missCookie:
			msgs[i] = fmt.Sprintf("Missing cookie \"%s\"", s.cookieName(k))
		case missQuery:
			// flask-jwt-extended 4.4's spelling, typo included: clients see the same text.
			msgs[i] = fmt.Sprintf("Missing '%s' query paramater", s.cfg.QueryStringName)
		case missJSONKey:
			msgs[i] = fmt.Sprintf("Missing \"%s\" key in json data.", s.jsonKey(k))
		case missJSONType:
			msgs[i] = "Invalid content-type. Must be application/json."
		}
	}
	if len(s.cfg.Locations) == 1 && len(msgs) == 1 {
		return msgs[0]
	}
	return fmt.Sprintf("Missing JWT in %s (%s)", locationList(s.cfg.Locations), strings.Join(msgs, "; "))
}

func (s *Scanner) cookieName(k Kind) string {
	if k == Refresh {
		return s.cfg.RefreshCookieName
	}
	return s.cfg.CookieName
}

func (s *Scanner) jsonKey(k Kind) string {
	if k == Refresh {
		return s.cfg.RefreshJSONKey
	}
	return s.cfg.JSONKey
}

// fromHeader reads the configured header as flask-jwt-extended's _decode_jwt_from_headers
// does.
// Which headers hold the name, or a variant of it, discovery counted (discoverAll): the value
// is the last one's.
func (s *Scanner) fromHeader(f *find) {
	value, found := s.headerValue, s.headerCount
	if s.headerVariant {
		s.ambiguous(s.msgs.headerVariant)
	}
	if found > 1 {
		s.ambiguous(s.msgs.manyHeaders)
		f.set("", "", missHeader, "")
		return
	}
	// The common case: exactly "<type> <token>", the token of token characters, which
	// discovery already knows.
	if r := s.headerRun; s.commonForm(value, r) {
		payload := ""
		if r.first >= 0 && r.last > r.first {
			payload = value[r.first+1 : r.last]
		}
		f.set(value[r.start:], "", 0, payload)
		f.known = s.headerKnown // the token is a fixed part of the value: the value's id names it
		return
	}
	if value == "" {
		f.set("", "", missHeader, "") // no header (or an empty one): what the lines below find
		return
	}
	if hasCtlOrNonASCII(value, true) {
		s.ambiguous(s.msgs.headerChars)
	}
	v := strings.Trim(trimBlank(value), ",")
	if v == "" {
		f.set("", "", missHeader, "")
		return
	}
	if s.cfg.HeaderType == "" {
		if fieldsN(v) != 1 {
			f.set("", s.msgs.badHeader, 0, "")
			return
		}
		f.set(trimBlank(v), "", 0, "")
		return
	}
	var ours string
	count := 0
	for rest := v; ; {
		field, tail, more := strings.Cut(rest, ",")
		scheme, _ := splitBlank(trimBlank(field))
		switch {
		case scheme == s.cfg.HeaderType:
			ours = trimBlank(field)
			count++
		case scheme != "" && strings.EqualFold(scheme, s.cfg.HeaderType):
			// flask compares the scheme case-sensitively, RFC 9110 does not.
			s.ambiguous(s.msgs.schemeCase)
		}
		if !more {
			break
		}
		rest = tail
	}
	switch {
	case count == 0:
		f.set("", "", missHeaderType, "")
		return
	case count > 1:
		s.ambiguous(s.msgs.severalSchemes)
		f.set("", "", missHeaderType, "")
		return
	}
	if fieldsN(ours) != 2 {
		f.set("", s.msgs.badHeader, 0, "")
		return
	}
	_, tok := splitBlank(ours)
	f.set(tok, "", 0, "")
}

// findCookies parses the Cookie headers as werkzeug does, once for both kinds, and records
// the ambiguities of the configured names.
func (s *Scanner) findCookies(headers [][2]string) {
	names := [2]string{s.cfg.CookieName, s.cfg.RefreshCookieName}
	s.cookies = [2]find{{m: missCookie}, {m: missCookie}}
	var seen [2]bool
	headersSeen := 0
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see find.set)
		if h[0] != "cookie" {
			continue
		}
		headersSeen++
		for c := range cookiePairs(h[1]) {
			for k, name := range names {
				switch {
				case c.key == name:
					if strings.TrimLeft(c.rawKey, " ") != name {
						s.ambiguous(s.msgs.cookieName[k]) // white space werkzeug strips and others keep
					}
				case s.decodedName(c.key) == name:
					s.ambiguous(s.msgs.cookieName[k])
					continue
				default:
					continue
				}
				if strings.IndexByte(c.rawValue, '\\') >= 0 || hasCtlOrNonASCII(c.value, false) {
					s.ambiguous(s.msgs.cookieValue[k])
				}
				if seen[k] {
					if c.value != s.cookies[k].tok {
						s.ambiguous(s.msgs.cookieDup[k]) // werkzeug keeps the first, others the last
					}
					continue
				}
				seen[k] = true
				s.cookies[k].tok = c.value
			}
		}
	}
	if headersSeen > 1 && (seen[0] || seen[1]) {
		s.ambiguous(s.msgs.cookieHeaders) // WSGI servers join them with ',', Envoy does not
	}
}

// fromQuery reads the query parameter as flask-jwt-extended's _decode_jwt_from_query_string
// does over werkzeug's url_decode: '&'-separated, names and values percent-decoded, the first
// value wins.
func (s *Scanner) fromQuery(headers [][2]string) find {
	path := ""
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see find.set)
		if h[0] == ":path" {
			path = h[1]
			break
		}
	}
	_, query, _ := strings.Cut(path, "?")
	query, _, _ = strings.Cut(query, "#")
	name := s.cfg.QueryStringName
	var value string
	found := false
	for rest := query; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		if _, after, ok := strings.Cut(pair, ";"); ok {
			// Older parsers (and some of today's) also split on ';'.
			for r := after; r != ""; {
				var p string
				p, r, _ = strings.Cut(r, ";")
				if k, _, _ := strings.Cut(p, "="); s.decodedName(k) == name {
					s.ambiguous(s.msgs.queryName)
				}
			}
		}
		if rawKey != name {
			if s.decodedName(rawKey) == name {
				s.ambiguous(s.msgs.queryName)
			}
			continue
		}
		v := rawValue
		if strings.ContainsAny(v, "%+") {
			v = s.form(appendPercentDecoded, rawValue)
		}
		if hasCtlOrNonASCII(v, false) {
			s.ambiguous(s.msgs.queryValue)
		}
		if found {
			if v != value {
				s.ambiguous(s.msgs.queryDup) // werkzeug keeps the first, others the last
			}
			continue
		}
		found, value = true, v
	}
	if value == "" {
		return find{m: missQuery}
	}
	if !strings.HasPrefix(value, s.cfg.QueryStringValuePrefix) {
		return find{bad: s.msgs.queryPrefix}
	}
	return find{tok: value[len(s.cfg.QueryStringValuePrefix):]}
}

// decodedName is a parameter or cookie name as the most forgiving framework would compare
// it: percent-decoded and trimmed of any Unicode white space.
func (s *Scanner) decodedName(raw string) string {
	if !strings.ContainsAny(raw, "%+ \t") && isVisibleASCII(raw) {
		return raw
	}
	return normName(s.form(appendPercentDecoded, raw))
}

// fromJSON reads the JSON body as flask-jwt-extended's _decode_jwt_from_json does, for both
// keys at once.
func (s *Scanner) fromJSON(headers [][2]string, body []byte) {
	ct := ""
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see find.set)
		if h[0] == "content-type" {
			ct = h[1]
			break
		}
	}
	if !isFlaskJSON(ct) {
		s.json = [2]find{{m: missJSONType}, {m: missJSONType}}
		return
	}
	s.json = [2]find{{m: missJSONKey}, {m: missJSONKey}}
	keys := [2]string{s.cfg.JSONKey, s.cfg.RefreshJSONKey}
	type member struct {
		value           string
		isString, found bool
	}
	var got [2]member
	var dup [2]bool
	s.body = append(s.body[:0], body...)
	j := jsonReader{b: s.body}
	j.skipBOM()
	j.ws()
	if !j.eat('{') {
		return // flask: BadRequest, reported as the missing key
	}
	for done := false; !done; {
		j.ws()
		if j.eat('}') {
			break
		}
		name, ok := j.str()
		if !ok {
			return
		}
		j.ws()
		if !j.eat(':') {
			return
		}
		j.ws()
		k := -1
		for i, key := range keys {
			if name == key {
				k = i
			}
		}
		if k < 0 {
			if !j.skip() {
				return
			}
		} else {
			var v string
			str := j.i < len(j.b) && j.b[j.i] == '"'
			if str {
				if v, ok = j.str(); !ok {
					return
				}
			} else {
				start := j.i
				if !j.skip() {
					return
				}
				v = string(j.b[start:j.i])
			}
			if got[k].found && (v != got[k].value || str != got[k].isString) {
				dup[k] = true
			}
			got[k] = member{v, str, true} // Python's json keeps the last of repeated names
		}
		j.ws()
		if !j.eat(',') {
			if !j.eat('}') {
				return
			}
			done = true
		}
	}
	if j.ws(); j.i != len(j.b) {
		return
	}
	for k, g := range got {
		if dup[k] {
			s.ambiguous(s.msgs.jsonDup[k]) // Python keeps the last, others the first
		}
		switch {
		case !g.found || g.isString && g.value == "" || !g.isString && pyFalsy(g.value):
			// absent, or falsy in Python: flask reports the key as missing
		case !g.isString:
			s.json[k] = find{bad: "Invalid token type. Token must be a <class 'bytes'>"}
		default:
			if hasCtlOrNonASCII(g.value, false) {
				s.ambiguous(s.msgs.jsonValue[k])
			}
			s.json[k] = find{tok: g.value}
		}
	}
}

// pyFalsy reports whether a JSON value that is not a string is false in Python: null,
// false, a zero, an empty array or object.
func pyFalsy(v string) bool {
	switch v {
	case "null", "false":
		return true
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f == 0
	}
	compact := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, v)
	return compact == "[]" || compact == "{}"
}

// isFlaskJSON is werkzeug's Request.is_json: application/json or application/*+json.
func isFlaskJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// bodyHeaderVariant reports a header name that WSGI servers read as Content-Type,
// Content-Length or Transfer-Encoding though it is not spelled so: with '_' for '-'. Envoy
// forwards such names by default (headers_with_underscores_action: ALLOW), and werkzeug then
// takes the body's type, length or framing from it: content_type: application/json beside
// content-type: text/plain makes the app parse a body the filter never reads, and
// transfer_encoding: chunked makes the app de-chunk a body whose framing cuts a token in two
// for the filter's reading. Neither reading can be the app's for every server (gunicorn drops
// such headers), so a request with one is ambiguous when the body may hold the token.
func bodyHeaderVariant(name string) bool {
	var want string
	switch len(name) {
	case len("content-type"):
		want = "content-type"
	case len("content-length"):
		want = "content-length"
	case len("transfer-encoding"):
		want = "transfer-encoding"
	default:
		return false
	}
	variant := false
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == want[i]:
		case c == '_' && want[i] == '-':
			variant = true
		default:
			return false
		}
	}
	return variant
}

// wsgiName is a header name as WSGI servers key it: '-' and '_' are the same.
func wsgiName(s string) string {
	if strings.IndexByte(s, '_') < 0 {
		return s
	}
	return strings.ReplaceAll(s, "_", "-")
}

// normName is a name trimmed of any Unicode white space.
func normName(s string) string {
	return strings.TrimFunc(s, isPyWhitespace)
}

// isPyWhitespace is Python's str.isspace: what str.split() and str.strip() split on.
func isPyWhitespace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0, 0x1680,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// hasCtlOrNonASCII reports bytes that apps split, decode or compare differently: controls
// (tab allowed where blank is), DEL, and anything outside ASCII.
func hasCtlOrNonASCII(s string, tabOK bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x7f || c < ' ' && !(tabOK && c == '\t') {
			return true
		}
	}
	return false
}

// trimBlank trims spaces and tabs.
func trimBlank(s string) string { return strings.Trim(s, " \t") }

// splitBlank splits "scheme   rest" at the first run of blanks.
func splitBlank(s string) (first, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// fieldsN counts blank-separated words without allocating.
func fieldsN(s string) int {
	n, in := 0, false
	for i := 0; i < len(s); i++ {
		blank := s[i] == ' ' || s[i] == '\t'
		if !blank && !in {
			n++
		}
		in = !blank
	}
	return n
}
