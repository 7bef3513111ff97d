package jwkssync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

// Duration is a Go duration string in JSON ("10m", "5s"), as in the sync section.
type Duration = blocklistsync.Duration

// Config is the jwt.remote_jwks section: where the JWKS is fetched and how often.
type Config struct {
	// Cluster is the Envoy cluster of the JWKS endpoint (Istio: outbound|443||issuer.example.com).
	Cluster string `json:"cluster"`
	// Authority is the :authority of the fetch, usually the issuer's host name.
	Authority string `json:"authority"`
	Path      string `json:"path"`
	// RefreshInterval is the time between two fetches that succeeded. A token naming a key
	// that is not held fetches earlier (at most once per MissGap).
	RefreshInterval Duration `json:"refresh_interval"`
	Timeout         Duration `json:"timeout"`
	// MaxBytes bounds the response body; a larger one is refused whole.
	MaxBytes int               `json:"max_bytes"`
	Headers  map[string]string `json:"headers"`
}

// Limits of the section.
const (
	defaultMaxBytes = 256 << 10
	minMaxBytes     = 1 << 10
	maxMaxBytes     = 4 << 20
	maxHeaders      = 32
	minRefresh      = time.Second
	maxRefresh      = 24 * time.Hour
	maxTimeout      = time.Minute
)

// ErrInvalidConfig wraps every jwt.remote_jwks configuration error.
var ErrInvalidConfig = errors.New("invalid jwt.remote_jwks configuration")

// DefaultConfig is what an empty section means: the well-known path, refreshed every 10
// minutes. Cluster and authority have no default: they name the issuer.
func DefaultConfig() Config {
	return Config{
		Path:            "/.well-known/jwks.json",
		RefreshInterval: Duration(10 * time.Minute),
		Timeout:         Duration(5 * time.Second),
		MaxBytes:        defaultMaxBytes,
	}
}

// UnmarshalJSON fills the defaults, then the members given; an unknown member is an error
// (the filter's decoder cannot refuse it inside a custom unmarshaler).
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	p := plain(DefaultConfig())
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("jwt.remote_jwks: %w", err)
	}
	*c = Config(p)
	return nil
}

// Validate checks the section; every error names its field, the value and the form wanted.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("jwt.remote_jwks.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Cluster == "" {
		bad("cluster", "must name the Envoy cluster of the JWKS endpoint")
	}
	if c.Authority == "" || strings.ContainsAny(c.Authority, "/ \t") {
		bad("authority", "must be a host name (with optional port), got %q", c.Authority)
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t#") {
		bad("path", "must start with '/' and hold no spaces or fragment, got %q", c.Path)
	}
	if r := c.RefreshInterval.D(); r < minRefresh || r > maxRefresh {
		bad("refresh_interval", "must be %s to %s, got %s", minRefresh, maxRefresh, r)
	}
	if t := c.Timeout.D(); t <= 0 || t > maxTimeout {
		bad("timeout", "must be above 0 and at most %s, got %s", maxTimeout, t)
	}
	if c.MaxBytes < minMaxBytes || c.MaxBytes > maxMaxBytes {
		bad("max_bytes", "must be %d to %d, got %d", minMaxBytes, maxMaxBytes, c.MaxBytes)
	}
	if len(c.Headers) > maxHeaders {
		bad("headers", "at most %d headers, got %d", maxHeaders, len(c.Headers))
	}
	for name := range c.Headers {
		lower := strings.ToLower(name)
		if name == "" || strings.HasPrefix(name, ":") || lower == "host" || lower == "if-none-match" || strings.ContainsAny(name, " \t:") {
			bad("headers", "%q cannot be set: pseudo-headers, host and if-none-match belong to the filter", name)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}
