package blocklistsync

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string ("5s", "250ms").
type Duration time.Duration

// UnmarshalJSON accepts a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the "sync" section of the plugin configuration.
type Config struct {
	// Cluster is the Envoy cluster of the revocation source. Empty disables syncing: the
	// filter then only reads a list that something else with the same prefix writes.
	Cluster   string            `json:"cluster"`
	Authority string            `json:"authority"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers"`
	// HeadersEnv names, per header, an environment variable of the VM that holds its value
	// (Envoy vm_config.environment_variables, Istio vmConfig.env), so a feed token stays out
	// of configuration dumps; ResolveHeaders reads them into Headers.
	HeadersEnv map[string]string `json:"headers_env"`
	Interval   Duration          `json:"interval"`
	Timeout    Duration          `json:"timeout"`
	// MaxBodyBytes bounds a feed response; a larger one is rejected whole.
	MaxBodyBytes int `json:"max_body_bytes"`
	// MaxEntries bounds entries plus cutoffs in one list.
	MaxEntries int `json:"max_entries"`
	// Jitter spreads polls by up to this fraction of Interval, so many proxies started
	// together do not poll in lockstep.
	Jitter float64 `json:"jitter"`
	// LeaseTTL is how long a silent lease holder keeps the lease before another VM takes over.
	// 0 means three intervals.
	LeaseTTL   Duration `json:"lease_ttl"`
	MaxBackoff Duration `json:"max_backoff"`
	// MaxShrink is the largest fraction of the held list's live entries and cutoffs that one
	// update may remove without a warning (and a sync.large_shrinks count): a source that
	// lost its data answers with a well-formed, nearly empty list. 1 turns the guard off.
	MaxShrink float64 `json:"max_shrink"`
	// RefuseShrink refuses such an update (counted as rejected; the held list stays and ages)
	// instead of only warning.
	RefuseShrink bool `json:"refuse_shrink"`
	// Watch is the long poll: the lease holder keeps one poll open at the source until the
	// list changes, so a revocation arrives in well under a second instead of at the next
	// interval. A source that ignores it answers at once and is polled once per interval,
	// exactly as without it.
	Watch WatchConfig `json:"watch"`
}

// WatchConfig is the "sync.watch" section.
type WatchConfig struct {
	// Wait is how long the source may hold a poll waiting for a change (sent as wait=);
	// 0 turns the long poll off. The callout's timeout is Wait plus sync.timeout, so the
	// source always has sync.timeout to answer after the wait ends. While the filter has a
	// max_staleness, the wait sent is at most half of it: a held poll ends in a 304 that
	// refreshes the list's age, and must do so before the list counts as stale.
	Wait Duration `json:"wait"`
}

// Limits on feed content and configuration.
const (
	MaxJTILen    = 256
	MaxIssuerLen = 512

	defaultMaxBody    = 128 << 20
	maxMaxBody        = 1 << 30
	defaultMaxEntries = 2_000_000
	maxMaxEntries     = 16_000_000
	maxHeaders        = 32
	// maxWatchWait stays within Envoy's default stream idle timeout (5 minutes) on the
	// cluster of the source.
	maxWatchWait = 5 * time.Minute
	// defaultWatchWait stays below cmd/revocation-source's cap (30 s) and the idle
	// timeout of most load balancers (60 s).
	defaultWatchWait = 25 * time.Second
)

// ErrInvalidConfig wraps every sync configuration error.
var ErrInvalidConfig = errors.New("invalid sync configuration")

// DefaultConfig is the sync section's defaults.
func DefaultConfig() Config {
	return Config{
		Cluster:      "revocation_source",
		Authority:    "revocation-source",
		Path:         "/v1/revocations",
		Interval:     Duration(5 * time.Second),
		Timeout:      Duration(2 * time.Second),
		MaxBodyBytes: defaultMaxBody,
		MaxEntries:   defaultMaxEntries,
		Jitter:       0.1,
		MaxBackoff:   Duration(time.Minute),
		MaxShrink:    0.5,
		Watch:        WatchConfig{Wait: Duration(defaultWatchWait)},
	}
}

// Validate checks the section and fills LeaseTTL's default. Errors name the field.
// ResolveHeaders reads the values of HeadersEnv from getenv into Headers (a copy: the caller's
// map is not changed). An unset or empty variable is an error naming the variable, never its
// value.
func (c *Config) ResolveHeaders(getenv func(string) string) error {
	if len(c.HeadersEnv) == 0 {
		return nil
	}
	headers := make(map[string]string, len(c.Headers)+len(c.HeadersEnv))
	maps.Copy(headers, c.Headers)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.HeadersEnv)) {
		env := c.HeadersEnv[name]
		v := getenv(env)
		if v == "" {
			errs = append(errs, fmt.Errorf("sync.headers_env.%s: environment variable %q is not set in the VM (Envoy vm_config.environment_variables, Istio vmConfig.env)", name, env))
			continue
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("sync.headers_env.%s: environment variable %q holds a line break or NUL", name, env))
			continue
		}
		headers[name] = v
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	c.Headers = headers
	return nil
}

func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("sync.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Cluster != "" {
		if c.Authority == "" || strings.ContainsAny(c.Authority, "/ \t") {
			bad("authority", "must be a host name (with optional port), got %q", c.Authority)
		}
		if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t#") {
			bad("path", "must start with '/' and hold no spaces or fragment, got %q", c.Path)
		}
	}
	if n := len(c.Headers) + len(c.HeadersEnv); n > maxHeaders {
		bad("headers", "at most %d headers with headers_env, got %d", maxHeaders, n)
	}
	for _, field := range []struct {
		name string
		m    map[string]string
	}{{"headers", c.Headers}, {"headers_env", c.HeadersEnv}} {
		for name := range field.m {
			lower := strings.ToLower(name)
			if name == "" || strings.HasPrefix(name, ":") || lower == "if-none-match" || lower == "host" || strings.ContainsAny(name, " \t:") {
				bad(field.name, "%q cannot be set: pseudo-headers, host and if-none-match belong to the filter", name)
			}
		}
	}
	for name, env := range c.HeadersEnv {
		for other := range c.Headers {
			if strings.EqualFold(name, other) {
				bad("headers_env", "%q is also in headers: give it once", name)
			}
		}
		if env == "" || strings.ContainsAny(env, "=\x00") {
			bad("headers_env", "%q: want the name of an environment variable, got %q", name, env)
		}
	}
	if c.Interval.D() < 100*time.Millisecond || c.Interval.D() > time.Hour {
		bad("interval", "must be 100ms to 1h, got %s", c.Interval.D())
	}
	if c.Timeout.D() <= 0 || c.Timeout.D() > 5*time.Minute {
		bad("timeout", "must be above 0 and at most 5m, got %s", c.Timeout.D())
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > maxMaxBody {
		bad("max_body_bytes", "must be 1024 to %d, got %d", maxMaxBody, c.MaxBodyBytes)
	}
	if c.MaxEntries < 1 || c.MaxEntries > maxMaxEntries {
		bad("max_entries", "must be 1 to %d, got %d", maxMaxEntries, c.MaxEntries)
	}
	if c.Jitter < 0 || c.Jitter > 0.5 {
		bad("jitter", "must be 0 to 0.5 (a fraction of the interval), got %g", c.Jitter)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 3 * c.Interval
	}
	if c.LeaseTTL.D() < 2*c.Interval.D() || c.LeaseTTL.D() <= c.Timeout.D() {
		bad("lease_ttl", "must be at least twice the interval and longer than the timeout, got %s", c.LeaseTTL.D())
	}
	if c.MaxBackoff.D() < c.Interval.D() || c.MaxBackoff.D() > 24*time.Hour {
		bad("max_backoff", "must be from the interval up to 24h, got %s", c.MaxBackoff.D())
	}
	if !(c.MaxShrink > 0 && c.MaxShrink <= 1) { // also refuses NaN
		bad("max_shrink", "must be a fraction above 0 and at most 1 (1 turns the guard off), got %g", c.MaxShrink)
	}
	if w := c.Watch.Wait.D(); w != 0 && (w < time.Second || w > maxWatchWait) {
		bad("watch.wait", "must be 0s (long poll off) or 1s to %s, got %s", maxWatchWait, w)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}
