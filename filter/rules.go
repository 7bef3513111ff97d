package filter

import (
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// Per-route rules change what a route requires of its token: none at all (skip), or other
// missing_token, invalid_token and token_types than the top level's. They never change the
// revocation check: every token anywhere in every request is checked against the list,
// whatever rule matched, so no rule, however written or however a request is shaped to
// match it, lets a revoked token through. To take the filter off a route entirely, Envoy's
// per-route FilterConfig{disabled: true} does that, and says so in the route table.

// Rule is one entry of the "rules" list: the first whose match holds decides.
type Rule struct {
	Match RuleMatch `json:"match"`
	// Skip requires no valid token on the route (a login page, a health check): the request
	// is allowed unless a token in it is revoked, the request is ambiguous, or the list is
	// unavailable with a token present and fail_mode closed.
	Skip         bool     `json:"skip"`
	MissingToken Policy   `json:"missing_token"`
	InvalidToken Policy   `json:"invalid_token"`
	TokenTypes   []string `json:"token_types"`
}

// RuleMatch holds when every condition given holds.
type RuleMatch struct {
	// Path is the exact path (no query); PathPrefix a prefix that ends at a segment boundary:
	// "/api" matches /api and /api/x, not /apix (Envoy's path_separated_prefix).
	Path       string `json:"path"`
	PathPrefix string `json:"path_prefix"`
	// Methods lists request methods, matched without case as werkzeug upper-cases them; GET
	// also matches HEAD, as Flask answers HEAD on a GET route.
	Methods []string `json:"methods"`
	// Host is the request's :authority, compared without case, and without the port unless
	// it names one.
	Host string `json:"host"`
	// RouteName is the name of the Envoy route the request took (the xds.route_name property).
	RouteName string `json:"route_name"`
}

// policy is what a route requires; the top level's, or a rule's.
type policy struct {
	missing, invalid Policy
	kinds            [2]bool // token kinds the route accepts, by credentials.Kind
	skip             bool
}

// rule is a Rule ready to match.
type rule struct {
	path       string
	prefix     bool
	methods    []string
	host       string
	hostPort   bool // host names a port
	routeName  string
	pol        policy
	matchPaths bool
}

// Limits on rules.
const (
	maxRules       = 64
	maxRuleMethods = 16
	maxRuleString  = 256
)

// compileRules checks rules and compiles them over the top level's policy.
func compileRules(rules []Rule, top policy, bad func(field, format string, args ...any)) []rule {
	if len(rules) > maxRules {
		bad("rules", "at most %d rules, got %d", maxRules, len(rules))
		return nil
	}
	out := make([]rule, 0, len(rules))
	for i, r := range rules {
		field := fmt.Sprintf("rules[%d]", i)
		m := r.Match
		c := rule{pol: top, routeName: m.RouteName}
		switch {
		case m.Path != "" && m.PathPrefix != "":
			bad(field+".match", "give path or path_prefix, not both")
		case m.Path != "":
			c.path, c.matchPaths = m.Path, true
		case m.PathPrefix != "":
			c.path, c.prefix, c.matchPaths = m.PathPrefix, true, true
		}
		if c.matchPaths {
			if _, ok := canonicalPath(c.path, nil); !ok || strings.ContainsAny(c.path, "%?#") || len(c.path) > maxRuleString {
				bad(field+".match.path", "must be a path in normal form: '/' then visible ASCII, no query or fragment, no '%%', '\\\\' or ';', no empty, '.' or '..' segment, at most %d bytes; got %q", maxRuleString, c.path)
			}
		}
		if len(m.Methods) > maxRuleMethods {
			bad(field+".match.methods", "at most %d methods", maxRuleMethods)
		}
		for _, meth := range m.Methods {
			if meth == "" || len(meth) > 32 || strings.ToUpper(meth) != meth || strings.ContainsFunc(meth, func(r rune) bool { return r <= ' ' || r > '~' }) {
				bad(field+".match.methods", "a method is an upper-case token such as GET, got %q", meth)
			}
		}
		c.methods = slices.Clone(m.Methods)
		if m.Host != "" {
			if len(m.Host) > maxRuleString || strings.ContainsFunc(m.Host, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' }) {
				bad(field+".match.host", "must be a host name (and port) of visible ASCII, got %q", m.Host)
			}
			c.host = strings.ToLower(m.Host)
			c.hostPort = hostPortIndex(c.host) >= 0
		}
		if len(m.RouteName) > maxRuleString {
			bad(field+".match.route_name", "at most %d bytes", maxRuleString)
		}
		if !c.matchPaths && len(m.Methods) == 0 && m.Host == "" && m.RouteName == "" {
			bad(field+".match", "needs at least one of path, path_prefix, methods, host, route_name (the top level is what every route gets)")
		}
		changes := r.MissingToken != "" || r.InvalidToken != "" || r.TokenTypes != nil
		switch {
		case r.Skip && changes:
			bad(field, "skip requires nothing of the token, so missing_token, invalid_token and token_types would not apply")
		case !r.Skip && !changes:
			bad(field, "changes nothing: give skip, missing_token, invalid_token or token_types")
		}
		c.pol.skip = r.Skip
		if r.MissingToken != "" {
			if r.MissingToken != PolicyAllow && r.MissingToken != PolicyDeny {
				bad(field+".missing_token", "must be \"allow\" or \"deny\", got %q", r.MissingToken)
			}
			c.pol.missing = r.MissingToken
		}
		if r.InvalidToken != "" {
			if r.InvalidToken != PolicyAllow && r.InvalidToken != PolicyDeny {
				bad(field+".invalid_token", "must be \"allow\" or \"deny\", got %q", r.InvalidToken)
			}
			c.pol.invalid = r.InvalidToken
		}
		if r.TokenTypes != nil {
			if k, err := tokenKinds(r.TokenTypes); err != nil {
				bad(field+".token_types", "%v", err)
			} else {
				c.pol.kinds = k
			}
		}
		out = append(out, c)
	}
	return out
}

// tokenKinds reads a token_types list.
func tokenKinds(types []string) ([2]bool, error) {
	var k [2]bool
	if len(types) == 0 {
		return k, fmt.Errorf("must allow at least one of access, refresh")
	}
	for _, t := range types {
		if !slices.Contains(knownTokenTypes, t) {
			return k, fmt.Errorf("unknown token type %q (want access or refresh)", t)
		}
		k[kindOf(t)] = true
	}
	return k, nil
}

// routePolicy is the policy of the request's route: the first rule that matches, else the
// top level's. ambiguous is set when rules match on paths and the request's path is not in
// normal form: the application could route it elsewhere than it reads (a dot segment, an
// encoded slash), so no rule can be chosen for it with confidence, and it is refused.
func (p *pluginContext) routePolicy(headers [][2]string) (pol *policy, ambiguous string) {
	cfg := p.cfg
	if len(cfg.rules) == 0 {
		return &cfg.topPolicy, ""
	}
	var method, authority, rawPath string
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see decide)
		switch h[0] {
		case ":method":
			method = h[1]
		case ":authority":
			authority = h[1]
		case ":path":
			rawPath = h[1]
		}
	}
	path := ""
	if cfg.rulesMatchPaths {
		var ok bool
		if path, ok = canonicalPath(rawPath, &p.pathBuf); !ok {
			return &cfg.topPolicy, "Ambiguous request: the path is not in normal form (a '.' or '..' or empty segment, an encoded '/' or '\\', a '\\' or ';', or a bad escape); Envoy's normalize_path and merge_slashes remove most"
		}
	}
	routeName, routeRead := "", false
	for i := range cfg.rules {
		r := &cfg.rules[i]
		if r.matchPaths && !r.matchesPath(path) ||
			len(r.methods) > 0 && !r.matchesMethod(method) ||
			r.host != "" && !r.matchesHost(authority) {
			continue
		}
		if r.routeName != "" {
			if !routeRead {
				routeName, routeRead = currentRouteName(), true
			}
			if routeName != r.routeName {
				continue
			}
		}
		return &r.pol, ""
	}
	return &cfg.topPolicy, ""
}

func (r *rule) matchesPath(path string) bool {
	if !r.prefix {
		return path == r.path
	}
	if !strings.HasPrefix(path, r.path) {
		return false
	}
	return len(path) == len(r.path) || r.path[len(r.path)-1] == '/' || path[len(r.path)] == '/'
}

func (r *rule) matchesMethod(method string) bool {
	for _, m := range r.methods {
		// Without case: werkzeug upper-cases the method, and Envoy passes an HTTP/2
		// ":method: delete" on as it came.
		if strings.EqualFold(m, method) || m == "GET" && strings.EqualFold(method, "HEAD") {
			return true
		}
	}
	return false
}

func (r *rule) matchesHost(authority string) bool {
	if !r.hostPort {
		if i := hostPortIndex(authority); i >= 0 {
			authority = authority[:i]
		}
	}
	return strings.EqualFold(authority, r.host)
}

// hostPortIndex is the index of the ':' before a port in an authority, or -1 (IPv6
// literals are bracketed: [::1]:8080).
func hostPortIndex(authority string) int {
	i := strings.LastIndexByte(authority, ':')
	if i < 0 || strings.IndexByte(authority[i:], ']') >= 0 {
		return -1
	}
	return i
}

// currentRouteName reads the name of the route Envoy chose (xds.route_name; before that
// attribute, route_name). A host without either has no name: rules naming one never match.
func currentRouteName() string {
	for _, path := range [][]string{{"xds", "route_name"}, {"route_name"}} {
		if v, err := abi.GetProperty(path); err == nil {
			return string(v)
		}
	}
	return ""
}

// canonicalPath returns the path of a request target (before '?' and '#') percent-decoded,
// and whether it is in normal form: it starts with '/', and after decoding has no empty,
// '.' or '..' segment, no '\' or ';', no control byte, and no '/' or '\' that was encoded.
// Any of those could route differently in the application than the rules match, so a path
// that has one matches no rule with confidence. buf (reused across requests) holds the
// decoded path when it differs; nil decodes into a new buffer.
func canonicalPath(target string, buf *[]byte) (string, bool) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if target == "" || target[0] != '/' {
		return "", false
	}
	path := target
	if strings.IndexByte(target, '%') >= 0 {
		var local []byte
		if buf == nil {
			buf = &local
		}
		b := (*buf)[:0]
		for i := 0; i < len(target); i++ {
			c := target[i]
			if c == '%' {
				if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
					return "", false
				}
				c = unhex(target[i+1])<<4 | unhex(target[i+2])
				if c == '/' || c == '\\' || c == '%' {
					return "", false
				}
				i += 2
			}
			b = append(b, c)
		}
		*buf = b
		path = unsafe.String(unsafe.SliceData(b), len(b))
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
			return "", false
		}
	}
	for seg := path[1:]; ; {
		j := strings.IndexByte(seg, '/')
		s := seg
		if j >= 0 {
			s = seg[:j]
		}
		if s == "." || s == ".." || s == "" && j >= 0 {
			return "", false
		}
		if j < 0 {
			return path, true
		}
		seg = seg[j+1:]
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// kindsOf is every token kind the top level or a rule accepts: what discovery must select.
func kindsOf(top policy, rules []rule) [2]bool {
	k := top.kinds
	for _, r := range rules {
		for i, on := range r.pol.kinds {
			k[i] = k[i] || on && !r.pol.skip
		}
	}
	return k
}
