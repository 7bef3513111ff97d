package statuslist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// Duration is a Go duration string in JSON ("5s", "10m"), as everywhere in the configuration.
type Duration = blocklistsync.Duration

// Policy is the answer to a token whose status is not simply VALID or INVALID.
type Policy string

// Policies.
const (
	// PolicyRevoked answers as for a revoked token (the filter's revoked reply).
	PolicyRevoked Policy = "revoked"
	// PolicyDeny refuses the token with an explanation (the filter's invalid reply).
	PolicyDeny Policy = "deny"
	// PolicyAllow lets the request through.
	PolicyAllow Policy = "allow"
)

// Config is the "status_list" section of the plugin configuration. It is parsed by
// ParseConfig; the zero Config (no lists) turns the feature off.
type Config struct {
	// Lists are the status lists that may be fetched: a uri, or every uri under a prefix,
	// each with the Envoy cluster, authority and path that serve it, and the keys that sign it.
	Lists []ListConfig `json:"lists"`
	// Keys sign the lists of every entry that names no keys of its own.
	Keys *KeysConfig `json:"keys"`
	// Suspended answers a token whose status is SUSPENDED (0x02).
	Suspended Policy `json:"suspended"`
	// OtherStatus answers every status but VALID, INVALID and SUSPENDED (0x03 to 0xff: the
	// application-specific and reserved values).
	OtherStatus Policy `json:"other_status"`
	// UnknownList answers a token whose status list uri no entry allows (it is never fetched),
	// and one whose status_list reference is malformed.
	UnknownList Policy `json:"unknown_list"`
	// MinTTL and MaxTTL clamp a list's ttl: it is fetched again after ttl, but not sooner than
	// MinTTL (an issuer cannot make every proxy poll it in a loop) and not later than MaxTTL
	// (a list without ttl is fetched every MaxTTL). A list with exp is also fetched again
	// before it expires; see refreshDue.
	MinTTL Duration `json:"min_ttl"`
	MaxTTL Duration `json:"max_ttl"`
	// MaxAge is how long a list stays usable after its last successful fetch when every fetch
	// since has failed, exp or not: past it the list is unavailable and the filter's fail_mode
	// decides. 0 means only exp limits it.
	MaxAge Duration `json:"max_age"`
	// Timeout bounds one fetch.
	Timeout Duration `json:"timeout"`
	// RetryInterval is the first retry's delay after a failed fetch; it doubles up to
	// MaxBackoff, but while a list is unusable it is retried every RetryInterval.
	RetryInterval Duration `json:"retry_interval"`
	MaxBackoff    Duration `json:"max_backoff"`
	// MaxListBytes bounds a decompressed list; MaxBodyBytes a fetched token.
	MaxListBytes int `json:"max_list_bytes"`
	MaxBodyBytes int `json:"max_body_bytes"`
	// MaxLists bounds the lists held at once (each worker VM holds every one).
	MaxLists int `json:"max_lists"`
}

// ListConfig allows one status list uri, or every uri under a prefix.
type ListConfig struct {
	// URI allows exactly this uri; URIPrefix every uri that starts with it, whose rest is a
	// plain path (see matchRest). Exactly one is set. Exact uris are fetched at start;
	// a prefix's uris when a token first names them.
	URI       string `json:"uri"`
	URIPrefix string `json:"uri_prefix"`
	// Cluster, Authority and Path say where Envoy fetches the list: the callout goes to Cluster
	// with :authority Authority and :path Path, or, for a prefix, Path followed by the uri's
	// rest after URIPrefix.
	Cluster   string `json:"cluster"`
	Authority string `json:"authority"`
	Path      string `json:"path"`
	// Keys sign this entry's lists; nil uses the section's keys.
	Keys *KeysConfig `json:"keys"`

	keys *jwtverify.KeySet
	// fingerprint names the key configuration in the list's shared-data id: a list verified
	// under keys this configuration does not name is never used.
	fingerprint string
}

// KeysConfig names the keys that sign Status List Tokens. Only public keys: the draft allows
// MACs but recommends signatures (section 12.5), and a MAC key shared with a list's issuer is
// one more secret in the proxy's configuration for no gain. A remote JWKS is the other
// KeySource (see Options.KeySource); it is not configured here yet.
type KeysConfig struct {
	Algorithms []string        `json:"algorithms"`
	PublicKeys []PublicKeyPEM  `json:"public_keys"`
	JWKS       json.RawMessage `json:"jwks"`
}

// PublicKeyPEM is a PEM public key: PKIX, PKCS#1 RSA or a certificate.
type PublicKeyPEM struct {
	KID string `json:"kid"`
	PEM string `json:"pem"`
}

// KeySet is the entry's inline key set, built by ParseConfig.
func (l *ListConfig) KeySet() *jwtverify.KeySet { return l.keys }

// Limits on values that come from configuration.
const (
	maxURILen       = 2048
	maxRestLen      = 512
	maxConfigLists  = 64
	maxMaxLists     = 256
	maxMaxListBytes = 256 << 20
	maxMaxBodyBytes = 512 << 20
)

// DefaultConfig is the section's defaults, with no lists.
func DefaultConfig() Config {
	return Config{
		Suspended:     PolicyRevoked,
		OtherStatus:   PolicyDeny,
		UnknownList:   PolicyDeny,
		MinTTL:        Duration(time.Minute),
		MaxTTL:        Duration(time.Hour),
		MaxAge:        Duration(24 * time.Hour),
		Timeout:       Duration(5 * time.Second),
		RetryInterval: Duration(5 * time.Second),
		MaxBackoff:    Duration(5 * time.Minute),
		MaxListBytes:  16 << 20,
		MaxBodyBytes:  8 << 20,
		MaxLists:      16,
	}
}

// ParseConfig parses and validates the status_list section (its raw JSON; empty or null
// means off). Unknown fields are errors; every error names its field, all are reported at
// once, each wrapped in ErrInvalidConfig.
func ParseConfig(data []byte) (*Config, error) {
	cfg := DefaultConfig()
	data = bytes.TrimSpace(data)
	if len(data) == 0 || string(data) == "null" {
		return &cfg, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%w: status_list: %v", ErrInvalidConfig, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: status_list: trailing data after the JSON object", ErrInvalidConfig)
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("status_list.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, p := range []struct {
		field string
		v     Policy
	}{{"suspended", cfg.Suspended}, {"other_status", cfg.OtherStatus}, {"unknown_list", cfg.UnknownList}} {
		switch p.v {
		case PolicyRevoked, PolicyDeny, PolicyAllow:
		default:
			bad(p.field, "must be \"revoked\", \"deny\" or \"allow\", got %q", p.v)
		}
	}
	if cfg.MinTTL.D() < time.Second || cfg.MinTTL.D() > 24*time.Hour {
		bad("min_ttl", "must be 1s to 24h, got %s", cfg.MinTTL.D())
	}
	if cfg.MaxTTL.D() < cfg.MinTTL.D() || cfg.MaxTTL.D() > 7*24*time.Hour {
		bad("max_ttl", "must be from min_ttl (%s) to 168h, got %s", cfg.MinTTL.D(), cfg.MaxTTL.D())
	}
	if cfg.MaxAge.D() != 0 && cfg.MaxAge.D() < cfg.MaxTTL.D() {
		bad("max_age", "must be 0 (only exp limits a list) or at least max_ttl (%s), got %s", cfg.MaxTTL.D(), cfg.MaxAge.D())
	}
	if cfg.Timeout.D() < 100*time.Millisecond || cfg.Timeout.D() > time.Minute {
		bad("timeout", "must be 100ms to 1m, got %s", cfg.Timeout.D())
	}
	if cfg.RetryInterval.D() < time.Second || cfg.RetryInterval.D() > cfg.MaxTTL.D() {
		bad("retry_interval", "must be from 1s to max_ttl (%s), got %s", cfg.MaxTTL.D(), cfg.RetryInterval.D())
	}
	if cfg.MaxBackoff.D() < cfg.RetryInterval.D() || cfg.MaxBackoff.D() > 24*time.Hour {
		bad("max_backoff", "must be from retry_interval (%s) to 24h, got %s", cfg.RetryInterval.D(), cfg.MaxBackoff.D())
	}
	if cfg.MaxListBytes < 1 || cfg.MaxListBytes > maxMaxListBytes {
		bad("max_list_bytes", "must be 1 to %d (256 MiB), got %d", maxMaxListBytes, cfg.MaxListBytes)
	}
	if cfg.MaxBodyBytes < 64 || cfg.MaxBodyBytes > maxMaxBodyBytes {
		bad("max_body_bytes", "must be 64 to %d (512 MiB), got %d", maxMaxBodyBytes, cfg.MaxBodyBytes)
	}
	if cfg.MaxLists < 1 || cfg.MaxLists > maxMaxLists {
		bad("max_lists", "must be 1 to %d, got %d", maxMaxLists, cfg.MaxLists)
	}
	if len(cfg.Lists) > maxConfigLists {
		bad("lists", "at most %d entries, got %d", maxConfigLists, len(cfg.Lists))
	}
	var shared *jwtverify.KeySet
	if cfg.Keys != nil {
		ks, err := cfg.Keys.build()
		if err != nil {
			for _, e := range splitJoined(err) {
				bad("keys", "%v", e)
			}
		}
		shared = ks
	}
	exact := 0
	seen := map[string]bool{}
	for i := range cfg.Lists {
		l := &cfg.Lists[i]
		f := fmt.Sprintf("lists[%d].", i)
		switch {
		case (l.URI == "") == (l.URIPrefix == ""):
			bad(f+"uri", "give exactly one of uri and uri_prefix")
		case l.URI != "":
			exact++
			if err := checkURI(l.URI); err != nil {
				bad(f+"uri", "%v, got %q", err, l.URI)
			}
			if !strings.HasPrefix(l.Path, "/") || strings.ContainsAny(l.Path, " \t\r\n#") {
				bad(f+"path", "must start with '/' and hold no spaces or fragment, got %q", l.Path)
			}
		default:
			if err := checkURI(l.URIPrefix); err != nil {
				bad(f+"uri_prefix", "%v, got %q", err, l.URIPrefix)
			} else if !strings.HasSuffix(l.URIPrefix, "/") || strings.Count(l.URIPrefix, "/") < 3 {
				bad(f+"uri_prefix", "must end with '/' after the authority (https://host/lists/), so it matches whole path segments, got %q", l.URIPrefix)
			}
			if !strings.HasPrefix(l.Path, "/") || !strings.HasSuffix(l.Path, "/") || strings.ContainsAny(l.Path, " \t\r\n#?") {
				bad(f+"path", "must start and end with '/' (the uri's rest is appended) and hold no spaces, query or fragment, got %q", l.Path)
			}
		}
		key := l.URI + "\x00" + l.URIPrefix
		if seen[key] {
			bad(f+"uri", "%q is listed twice", l.URI+l.URIPrefix)
		}
		seen[key] = true
		if l.Cluster == "" {
			bad(f+"cluster", "must name the Envoy cluster that serves the list")
		}
		if l.Authority == "" || strings.ContainsAny(l.Authority, "/ \t\r\n") {
			bad(f+"authority", "must be a host name (with optional port), got %q", l.Authority)
		}
		switch {
		case l.Keys != nil:
			ks, err := l.Keys.build()
			if err != nil {
				for _, e := range splitJoined(err) {
					bad(f+"keys", "%v", e)
				}
			}
			l.keys, l.fingerprint = ks, l.Keys.fingerprint()
		case cfg.Keys != nil:
			l.keys, l.fingerprint = shared, cfg.Keys.fingerprint()
		default:
			bad(f+"keys", "no keys: give keys here or in status_list.keys (status list tokens must be signed)")
		}
	}
	if exact > cfg.MaxLists {
		bad("max_lists", "%d is fewer than the %d exact uris listed", cfg.MaxLists, exact)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return &cfg, nil
}

// Enabled reports whether any list is configured: without one the filter reads no status
// claims at all.
func (c *Config) Enabled() bool { return c != nil && len(c.Lists) > 0 }

func (k *KeysConfig) build() (*jwtverify.KeySet, error) {
	keys := jwtverify.Keys{Algorithms: k.Algorithms, JWKS: k.JWKS}
	for _, p := range k.PublicKeys {
		keys.PEM = append(keys.PEM, jwtverify.PEMKey{KID: p.KID, PEM: p.PEM})
	}
	return jwtverify.NewKeySet(keys)
}

// fingerprint is the key configuration in a canonical form (encoding/json compacts jwks).
func (k *KeysConfig) fingerprint() string {
	b, err := json.Marshal(k)
	if err != nil {
		return "unencodable" // only after build refused it
	}
	return string(b)
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkURI accepts an absolute http or https uri with an authority, no fragment, no white
// space or control bytes, of at most maxURILen bytes. Status list uris are compared as
// strings (section 5.1: sub must equal the uri), so no normalisation is done.
func checkURI(u string) error {
	switch {
	case len(u) > maxURILen:
		return fmt.Errorf("longer than %d bytes", maxURILen)
	case !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://"):
		return errors.New("must be an absolute http or https uri")
	case strings.ContainsAny(u, "#"):
		return errors.New("must not hold a fragment")
	}
	rest := u[strings.Index(u, "//")+2:]
	if rest == "" || rest[0] == '/' {
		return errors.New("must name a host")
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f {
			return errors.New("must be printable ASCII without spaces")
		}
	}
	return nil
}

// matchRest accepts the part of a uri after a uri_prefix: path segments of unreserved
// characters (RFC 3986: letters, digits, - . _ ~) separated by single slashes, no segment
// "." or "..", at most maxRestLen bytes. It is what a token may add to a configured prefix,
// and it becomes part of the :path Envoy sends, so nothing that a server could read as
// another path (percent escapes, dot segments, a query) gets through.
func matchRest(rest string) bool {
	if rest == "" || len(rest) > maxRestLen {
		return false
	}
	seg := 0 // length of the current segment
	dots := 0
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '/':
			if seg == 0 || seg == dots && dots <= 2 {
				return false
			}
			seg, dots = 0, 0
		case c == '.':
			seg++
			dots++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '~':
			seg++
		default:
			return false
		}
	}
	return seg > 0 && !(seg == dots && dots <= 2)
}

// route is where a uri is fetched from.
type route struct {
	list *ListConfig
	path string
}

// routeOf finds the entry that allows uri: an exact uri first, then the longest prefix.
// It allocates only for a prefix's path, which only the fetching VM asks for.
func (c *Config) routeOf(uri string) (route, bool) {
	if i := c.exactIndex(uri); i >= 0 {
		return route{list: &c.Lists[i], path: c.Lists[i].Path}, true
	}
	if i := c.prefixIndex(uri); i >= 0 {
		l := &c.Lists[i]
		return route{list: l, path: l.Path + uri[len(l.URIPrefix):]}, true
	}
	return route{}, false
}

// allowed reports whether uri may be fetched, without allocating (the request path asks).
func (c *Config) allowed(uri string) bool {
	return c.exactIndex(uri) >= 0 || c.prefixIndex(uri) >= 0
}

func (c *Config) exactIndex(uri string) int {
	for i := range c.Lists {
		if c.Lists[i].URI != "" && c.Lists[i].URI == uri {
			return i
		}
	}
	return -1
}

func (c *Config) prefixIndex(uri string) int {
	best := -1
	for i := range c.Lists {
		p := c.Lists[i].URIPrefix
		if p != "" && strings.HasPrefix(uri, p) && matchRest(uri[len(p):]) && (best < 0 || len(p) > len(c.Lists[best].URIPrefix)) {
			best = i
		}
	}
	return best
}
