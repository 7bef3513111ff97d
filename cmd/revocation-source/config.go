package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/redisstore"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

// ErrConfig marks a bad flag or environment value.
var ErrConfig = errors.New("bad configuration")

// errHelp is returned for --help: the caller prints the reference and exits 0.
var errHelp = errors.New("help requested")

const envPrefix = "REVOCATION_SOURCE_"

// maxMaxWait bounds --max-wait: Envoy's default stream idle timeout is 5
// minutes, and the HTTP server's write timeout is set from it.
const maxMaxWait = 5 * time.Minute

// config is every setting. Each flag --name can also be set with the
// environment variable REVOCATION_SOURCE_NAME (upper case, '-' → '_'); a flag
// on the command line wins. Secrets (tokens, the Redis password) come from
// the environment or files only, never flags, which show in ps.
type config struct {
	listen           string
	store            string
	expiryGrace      time.Duration
	reconcile        time.Duration
	maxLog           int
	maxEntries       int
	adminTokenFile   string
	feedTokenFile    string
	metricsTokenFile string
	logLevel         string
	logFormat        string
	shutdownTimeout  time.Duration
	maxWait          time.Duration
	maxWatchers      int

	sqlitePath     string
	postgresDSN    string
	sqlTable       string
	sqlID          string
	sqlJTI         string
	sqlType        sqlstore.Column
	sqlCreated     sqlstore.Column
	sqlExpires     sqlstore.Column
	sqlIss         string
	sqlCutoffs     sqlstore.Column
	sqlClaims      sqlstore.Column
	sqlCreate      bool
	sqlPoll        time.Duration
	sqlPrune       time.Duration
	accessExpires  time.Duration
	refreshExpires time.Duration

	redisAddr       string
	redisDB         int
	redisUser       string
	redisPassFile   string
	redisPrefix     string
	redisCutoffsKey string
	redisClaims     string
	redisNotify     bool

	filePath string
	filePoll time.Duration

	bcIssuer      string
	bcAudience    string
	bcJWKSFile    string
	bcJWKSURL     string
	bcAlgorithms  string
	bcLifetime    time.Duration
	bcMaxAge      time.Duration
	bcLeeway      time.Duration
	bcRequireType bool
	bcAnyIssuer   bool

	// src names where each setting came from, for error messages: the flag
	// ("--sql-poll-interval") or the variable ("REVOCATION_SOURCE_…").
	src map[string]string
}

// where names the flag or variable that set name.
func (c *config) where(name string) string {
	if s, ok := c.src[name]; ok {
		return s
	}
	return "--" + name
}

// flagSpec is one flag: its value, its help text and its section.
type flagSpec struct {
	name    string
	section string
	usage   string
	value   flag.Value
	def     string
	// isString: an empty environment variable sets it to "" (rather than
	// being an error).
	isString bool
}

type strVal struct{ p *string }

func (v strVal) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v strVal) Set(s string) error { *v.p = s; return nil }

// colVal is a column name flag: Set records that it was named ("" = none).
type colVal struct{ p *sqlstore.Column }

func (v colVal) String() string {
	if v.p == nil {
		return ""
	}
	return v.p.Name
}
func (v colVal) Set(s string) error { *v.p = sqlstore.Named(s); return nil }

type enumVal struct {
	p       *string
	allowed []string
}

func (v enumVal) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v enumVal) Set(s string) error {
	for _, a := range v.allowed {
		if s == a {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("want one of %s", strings.Join(v.allowed, ", "))
}

type durVal struct{ p *time.Duration }

func (v durVal) String() string {
	if v.p == nil {
		return ""
	}
	return shortDuration(*v.p)
}

// shortDuration writes 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
func (v durVal) Set(s string) error {
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return fmt.Errorf("needs a unit, e.g. %ss (units: ms, s, m, h, d)", s)
	}
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		// Days, for token lifetimes: flask's refresh tokens live 30 days.
		if n, perr := strconv.ParseFloat(days, 64); perr == nil && n >= 0 && n < 1e5 {
			d, err = time.Duration(n*24*float64(time.Hour)), nil
		}
	}
	if err != nil {
		return errors.New("want a duration such as 500ms, 5s, 1m, 1h30m or 30d")
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	*v.p = d
	return nil
}

type intVal struct{ p *int }

func (v intVal) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}
func (v intVal) Set(s string) error {
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	if err != nil {
		return errors.New("want a whole number, e.g. 100000")
	}
	*v.p = n
	return nil
}

type boolVal struct{ p *bool }

func (v boolVal) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.FormatBool(*v.p)
}
func (v boolVal) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	*v.p = b
	return nil
}
func (v boolVal) IsBoolFlag() bool { return true }

// specs lists every flag with its default. The defaults follow
// flask-jwt-extended's examples, so the common case needs only the store.
func specs(c *config) []flagSpec {
	var out []flagSpec
	add := func(section, name, usage string, v flag.Value, isString bool) {
		out = append(out, flagSpec{name: name, section: section, usage: usage, value: v, def: v.String(), isString: isString})
	}
	str := func(section, name, def, usage string, p *string) {
		*p = def
		add(section, name, usage, strVal{p}, true)
	}
	col := func(name, def, usage string, p *sqlstore.Column) {
		*p = sqlstore.Column{Name: def} // not Set: used when the table has it
		add("SQL", name, usage, colVal{p}, true)
	}
	enum := func(section, name, def, usage string, p *string, allowed ...string) {
		*p = def
		add(section, name, usage, enumVal{p, allowed}, false)
	}
	dur := func(section, name string, def time.Duration, usage string, p *time.Duration) {
		*p = def
		add(section, name, usage, durVal{p}, false)
	}
	num := func(section, name string, def int, usage string, p *int) {
		*p = def
		add(section, name, usage, intVal{p}, false)
	}
	boolean := func(section, name string, def bool, usage string, p *bool) {
		*p = def
		add(section, name, usage, boolVal{p}, false)
	}

	str("General", "listen", "127.0.0.1:8081", "HTTP address (host:port) of the feed, the admin API, /healthz, /readyz and /metrics; \":8081\" for every interface", &c.listen)
	enum("General", "store", "sqlite", "where the blocklist is: sqlite, postgres, redis or file", &c.store, "sqlite", "postgres", "redis", "file")
	dur("General", "expiry-grace", rs.DefaultExpiryGrace, "entries stay in the feed this long past their exp; at least the filter's jwt.leeway", &c.expiryGrace)
	dur("General", "reconcile-interval", time.Minute, "full re-read of the store, which repairs missed changes; 0 = only at start", &c.reconcile)
	num("General", "max-log-changes", rs.DefaultMaxLog, "changes remembered for deltas", &c.maxLog)
	num("General", "max-entries", 2_000_000, "most unexpired items read from the store (the filter's default sync.max_entries)", &c.maxEntries)
	str("General", "admin-token-file", "", "file with the admin API's bearer token (or env REVOCATION_SOURCE_ADMIN_TOKEN); without one the admin API is off", &c.adminTokenFile)
	str("General", "feed-token-file", "", "file with the bearer token the feed requires (or env REVOCATION_SOURCE_FEED_TOKEN); the filter sends it with sync.headers", &c.feedTokenFile)
	str("General", "metrics-token-file", "", "file with the bearer token /metrics requires (or env REVOCATION_SOURCE_METRICS_TOKEN)", &c.metricsTokenFile)
	enum("General", "log-level", "info", "debug, info, warn or error", &c.logLevel, "debug", "info", "warn", "error")
	enum("General", "log-format", "json", "json or text", &c.logFormat, "json", "text")
	dur("General", "shutdown-timeout", 15*time.Second, "grace period for in-flight requests on SIGINT/SIGTERM (held long polls are answered 304 at once)", &c.shutdownTimeout)
	dur("General", "max-wait", rs.DefaultMaxWait, "longest a long poll (?wait=) is held; answered up to 1/16 sooner, at random; 0 = long polls are answered at once", &c.maxWait)
	num("General", "max-watchers", rs.DefaultMaxWatchers, "most long polls held at once; past it they are answered at once; 0 = none", &c.maxWatchers)

	str("SQL", "sqlite-path", "./revocations.db", "SQLite file for --store=sqlite (the app's; it is not created unless --sql-create-tables)", &c.sqlitePath)
	str("SQL", "postgres-dsn", "", "PostgreSQL URL for --store=postgres, e.g. postgres://user:pass@host:5432/db", &c.postgresDSN)
	str("SQL", "sql-table", "token_blocklist", "blocklist table (schema.table allowed)", &c.sqlTable)
	str("SQL", "sql-id-column", "id", "increasing integer id: new rows are found by it", &c.sqlID)
	str("SQL", "sql-jti-column", "jti", "jti column", &c.sqlJTI)
	col("sql-type-column", "type", "token type column (\"access\"/\"refresh\"), used when the table has it; \"\" for none", &c.sqlType)
	col("sql-created-column", "created_at", "creation time column, used when the table has it; \"\" for none", &c.sqlCreated)
	col("sql-expires-column", "expires", "expiry column (timestamp or Unix seconds), used when the table has it; \"\" for none", &c.sqlExpires)
	str("SQL", "sql-iss-column", "", "issuer column, if the table has one", &c.sqlIss)
	col("sql-cutoffs-table", "jtiguard_subject_cutoffs", "this server's subject cutoffs table, used when it exists; \"\" for none", &c.sqlCutoffs)
	col("sql-claims-table", "jtiguard_claim_revocations", "this server's table of claim entries (revocations by sid and other claims), used when it exists; \"\" for none", &c.sqlClaims)
	dur("SQL", "jwt-access-token-expires", 0, "the app's JWT_ACCESS_TOKEN_EXPIRES: without an expiry column, an access token's row expires at created + this; 0 = unknown", &c.accessExpires)
	dur("SQL", "jwt-refresh-token-expires", 0, "the app's JWT_REFRESH_TOKEN_EXPIRES, for refresh tokens' rows; without a type column the longer of the two applies; 0 = unknown", &c.refreshExpires)
	boolean("SQL", "sql-create-tables", false, "create the SQLite file and missing tables (off: the database is the app's)", &c.sqlCreate)
	dur("SQL", "sql-poll-interval", time.Second, "how often to look for new rows", &c.sqlPoll)
	dur("SQL", "sql-prune-interval", 0, "delete rows past exp + grace this often; 0 = never (the table is the app's)", &c.sqlPrune)

	str("Redis", "redis-addr", "127.0.0.1:6379", "Redis host:port", &c.redisAddr)
	num("Redis", "redis-db", 0, "Redis database number", &c.redisDB)
	str("Redis", "redis-username", "", "Redis ACL user", &c.redisUser)
	str("Redis", "redis-password-file", "", "file with the Redis password (or env REDIS_PASSWORD)", &c.redisPassFile)
	str("Redis", "redis-key-prefix", "", "prefix of jti keys (\"\": every string key in the database is a jti)", &c.redisPrefix)
	str("Redis", "redis-cutoffs-key", "jtiguard:cutoffs", "hash of subject cutoffs", &c.redisCutoffsKey)
	str("Redis", "redis-claims-prefix", "", "prefix of the keys of claim entries (revocations by sid and other claims), e.g. jtiguard:claim:; \"\" = none", &c.redisClaims)
	boolean("Redis", "redis-configure-notifications", true, "turn keyspace notifications on with CONFIG SET (at start and after a Redis restart)", &c.redisNotify)

	str("File", "file-path", "", "file for --store=file (JSON snapshot, or one jti per line with an optional Unix expiry)", &c.filePath)
	dur("File", "file-poll-interval", time.Second, "how often to check the file for changes", &c.filePoll)

	str("Back-channel logout", "backchannel-issuer", "", "the OpenID provider's issuer: turns on POST /v1/backchannel-logout, which takes its logout tokens", &c.bcIssuer)
	str("Back-channel logout", "backchannel-audience", "", "this relying party's client_id (comma-separated for several): a logout token's aud must hold one", &c.bcAudience)
	str("Back-channel logout", "backchannel-jwks-file", "", "the provider's JWK Set in a file", &c.bcJWKSFile)
	str("Back-channel logout", "backchannel-jwks-url", "", "the provider's jwks_uri (https, or http on loopback); read again hourly, and when a token names an unknown key", &c.bcJWKSURL)
	str("Back-channel logout", "backchannel-algorithms", "RS256", "algorithms the provider signs logout tokens with, comma-separated: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA", &c.bcAlgorithms)
	dur("Back-channel logout", "backchannel-max-session-lifetime", 0, "the longest a session (and a token carrying its sid) can live: what a logout revokes is kept this long; required with --backchannel-issuer", &c.bcLifetime)
	dur("Back-channel logout", "backchannel-max-age", rs.DefaultBackchannelMaxAge, "logout tokens issued (iat) longer ago are refused; their jtis are remembered this long against replay", &c.bcMaxAge)
	dur("Back-channel logout", "backchannel-leeway", rs.DefaultBackchannelLeeway, "clock skew allowed on a logout token's iat and exp", &c.bcLeeway)
	boolean("Back-channel logout", "backchannel-require-typ", false, "accept only logout tokens whose typ header is logout+jwt (by default also none or JWT)", &c.bcRequireType)
	boolean("Back-channel logout", "backchannel-any-issuer", false, "write entries that match tokens of any issuer (by default only tokens whose iss is the provider's)", &c.bcAnyIssuer)
	return out
}

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig reads the environment, then the command line. It is pure:
// every error names the flag or variable, the value and the expected form.
func parseConfig(args []string, lookupEnv func(string) (string, bool)) (config, error) {
	c := config{src: map[string]string{}}
	all := specs(&c)
	byName := map[string]flagSpec{}
	for _, s := range all {
		byName[s.name] = s
	}

	// Environment first, so the command line overrides it.
	for _, s := range all {
		env := envName(s.name)
		v, ok := lookupEnv(env)
		if !ok {
			continue
		}
		if v == "" && !s.isString {
			return c, fmt.Errorf("%w: %s is set but empty; unset it or give a value (default %s)", ErrConfig, env, s.def)
		}
		if err := s.value.Set(v); err != nil {
			return c, fmt.Errorf("%w: %s=%q: %v", ErrConfig, env, v, err)
		}
		c.src[s.name] = env
	}

	fs := flag.NewFlagSet("revocation-source", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var setErr error
	for _, s := range all {
		s := s
		fs.Var(recorder{s, &c, &setErr}, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			return c, errHelp
		case setErr != nil:
			return c, setErr
		}
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
			return c, fmt.Errorf("%w: unknown flag %s%s; see --help", ErrConfig, "-"+strings.TrimLeft(name, "-"), suggest(strings.TrimLeft(name, "-"), all))
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
			return c, fmt.Errorf("%w: flag -%s needs a value, e.g. -%s=%s", ErrConfig, strings.TrimLeft(name, "-"),
				strings.TrimLeft(name, "-"), byName[strings.TrimLeft(name, "-")].def)
		}
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q (flags are --name=value; the subcommands, first on the line: revoke, unrevoke, list, status; see --help)", ErrConfig, fs.Arg(0))
	}
	return c, c.validate()
}

// recorder wraps a flag's value to name it in errors and note the source.
type recorder struct {
	s   flagSpec
	c   *config
	err *error
}

func (r recorder) String() string {
	if r.s.value == nil {
		return ""
	}
	return r.s.value.String()
}

func (r recorder) Set(v string) error {
	if err := r.s.value.Set(v); err != nil {
		*r.err = fmt.Errorf("%w: --%s=%q: %v", ErrConfig, r.s.name, v, err)
		return err
	}
	r.c.src[r.s.name] = "--" + r.s.name
	return nil
}

func (r recorder) IsBoolFlag() bool {
	b, ok := r.s.value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// suggest names a flag close to a mistyped one.
func suggest(name string, all []flagSpec) string {
	best, bestD := "", 3
	for _, s := range all {
		if d := editDistance(name, s.name); d < bestD {
			best, bestD = s.name, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean --" + best + "?)"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func (c *config) validate() error {
	bad := func(name, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, c.where(name), fmt.Sprintf(format, args...))
	}
	switch {
	case c.store == "postgres" && c.postgresDSN == "":
		return fmt.Errorf("%w: --store=postgres needs --postgres-dsn (or %s), e.g. postgres://user:pass@host:5432/db", ErrConfig, envName("postgres-dsn"))
	case c.store == "file" && c.filePath == "":
		return fmt.Errorf("%w: --store=file needs --file-path (or %s)", ErrConfig, envName("file-path"))
	case c.store == "sqlite" && c.sqlitePath == "":
		return bad("sqlite-path", "must name a file")
	}
	for _, p := range []struct {
		name string
		v    time.Duration
	}{{"sql-poll-interval", c.sqlPoll}, {"file-poll-interval", c.filePoll}, {"shutdown-timeout", c.shutdownTimeout}} {
		if p.v <= 0 {
			return bad(p.name, "%q must be above 0, e.g. 1s", p.v.String())
		}
	}
	if c.expiryGrace > 24*time.Hour {
		return bad("expiry-grace", "%s is over 24h; it only needs to cover the filter's jwt.leeway", c.expiryGrace)
	}
	if c.maxLog < 1 {
		return bad("max-log-changes", "%d must be at least 1", c.maxLog)
	}
	if c.maxWait > maxMaxWait {
		return bad("max-wait", "%s is over %s; proxies between the filter and the source close idle requests long before", shortDuration(c.maxWait), shortDuration(maxMaxWait))
	}
	if c.maxWatchers < 0 {
		return bad("max-watchers", "%d must be 0 or more", c.maxWatchers)
	}
	if c.maxEntries < 1 {
		return bad("max-entries", "%d must be at least 1", c.maxEntries)
	}
	if c.redisDB < 0 {
		return bad("redis-db", "%d must be 0 or more", c.redisDB)
	}
	if c.store == "redis" {
		if err := redisstore.CheckPrefixes(c.redisPrefix, c.redisClaims); err != nil {
			return bad("redis-claims-prefix", "%v", err)
		}
	}
	if err := c.validateBackchannel(bad); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(c.listen)
	if err != nil {
		return bad("listen", "%q: want host:port, e.g. 127.0.0.1:8081 or :8081", c.listen)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return bad("listen", "%q: the port must be a number from 0 to 65535", c.listen)
	}
	_ = host
	if c.store == "sqlite" || c.store == "postgres" {
		for _, id := range []struct {
			name, v   string
			qualified bool
		}{
			{"sql-table", c.sqlTable, true}, {"sql-id-column", c.sqlID, false}, {"sql-jti-column", c.sqlJTI, false},
			{"sql-type-column", c.sqlType.Name, false}, {"sql-created-column", c.sqlCreated.Name, false},
			{"sql-expires-column", c.sqlExpires.Name, false}, {"sql-iss-column", c.sqlIss, false},
			{"sql-cutoffs-table", c.sqlCutoffs.Name, true}, {"sql-claims-table", c.sqlClaims.Name, true},
		} {
			empty := id.v == ""
			required := id.name == "sql-table" || id.name == "sql-id-column" || id.name == "sql-jti-column"
			if empty && required {
				return bad(id.name, "must not be empty")
			}
			if !empty {
				if err := sqlstore.CheckIdentifier(id.v, id.qualified); err != nil {
					return bad(id.name, "%q: %v", id.v, err)
				}
			}
		}
	}
	return nil
}

// validateBackchannel checks the back-channel logout flags: all or none.
func (c *config) validateBackchannel(bad func(name, format string, args ...any) error) error {
	if c.bcIssuer == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"backchannel-audience", c.bcAudience != ""}, {"backchannel-jwks-file", c.bcJWKSFile != ""},
			{"backchannel-jwks-url", c.bcJWKSURL != ""}, {"backchannel-max-session-lifetime", c.bcLifetime != 0},
		} {
			if f.set {
				return bad(f.name, "back-channel logout is on only with --backchannel-issuer (the provider's issuer); set it too, or leave this unset")
			}
		}
		return nil
	}
	switch {
	case c.store == "file":
		return bad("backchannel-issuer", "--store=file is read-only: back-channel logout writes its revocations to sqlite, postgres or redis")
	case c.bcAudience == "" || slices.Contains(c.audiences(), ""):
		return bad("backchannel-audience", "%q: give this relying party's client_id (comma-separated for several)", c.bcAudience)
	case (c.bcJWKSFile == "") == (c.bcJWKSURL == ""):
		return bad("backchannel-jwks-url", "give exactly one of --backchannel-jwks-url (the provider's jwks_uri) and --backchannel-jwks-file")
	case c.bcLifetime <= 0:
		return bad("backchannel-max-session-lifetime", "required with --backchannel-issuer: the longest a session can live, e.g. 30d (what a logout revokes is kept this long)")
	case c.bcMaxAge <= 0:
		return bad("backchannel-max-age", "%q must be above 0, e.g. 5m", shortDuration(c.bcMaxAge))
	case c.store == "redis" && c.redisClaims == "":
		return bad("backchannel-issuer", "with --store=redis it needs --redis-claims-prefix (e.g. jtiguard:claim:), where the logged-out sessions are kept")
	case c.store != "redis" && c.sqlClaims.Set && c.sqlClaims.Name == "":
		return bad("sql-claims-table", "back-channel logout keeps logged-out sessions in the claims table; do not set it to \"\"")
	case c.store != "redis" && c.sqlCutoffs.Set && c.sqlCutoffs.Name == "":
		return bad("sql-cutoffs-table", "back-channel logout of a subject writes a cutoff; do not set it to \"\"")
	}
	if err := rs.CheckJWKSAlgorithms(c.algorithms()); err != nil {
		return bad("backchannel-algorithms", "%v", err)
	}
	if c.bcJWKSURL != "" {
		u, err := url.Parse(c.bcJWKSURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return bad("backchannel-jwks-url", "%q: want an https URL (http only on loopback), e.g. https://idp.example.com/.well-known/jwks.json", c.bcJWKSURL)
		}
	}
	return nil
}

func (c *config) audiences() []string { return splitList(c.bcAudience) }

func (c *config) algorithms() []string { return splitList(c.bcAlgorithms) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// printHelp writes the flag reference.
func printHelp(w io.Writer) {
	var c config
	all := specs(&c)
	fmt.Fprint(w, `Usage: revocation-source [--flag=value ...]
       revocation-source revoke|unrevoke|list|status [--flag=value ...]

Serves the jtiguard revocation feed (/v1/revocations) from the blocklist that a
flask-jwt-extended app keeps in SQLite, PostgreSQL or Redis, or from a file.
See docs/revocation-source.md.

With a subcommand it talks to a running source's admin API instead (its
--help lists its flags):
  revoke     revoke a jti, or a subject's tokens issued before a time
  unrevoke   remove a jti's revocation or a subject's cutoff
  list       list revocations, a page at a time, with filters
  status     show the list version, counts and readiness

Every flag can also be set with the environment variable shown in brackets; a
flag on the command line wins. An empty variable sets a text flag to "".
Secrets come only from the environment or files: REVOCATION_SOURCE_ADMIN_TOKEN,
REVOCATION_SOURCE_FEED_TOKEN, REVOCATION_SOURCE_METRICS_TOKEN, REDIS_PASSWORD.
`)
	sections := []string{"General", "SQL", "Redis", "File", "Back-channel logout"}
	order := map[string]int{}
	for i, s := range sections {
		order[s] = i
	}
	sort.SliceStable(all, func(i, j int) bool { return order[all[i].section] < order[all[j].section] })
	last := ""
	for _, s := range all {
		if s.section != last {
			fmt.Fprintf(w, "\n%s:\n", s.section)
			last = s.section
		}
		def := s.def
		if s.isString {
			def = strconv.Quote(def)
		}
		fmt.Fprintf(w, "  --%s=%s  [%s]\n        %s\n", s.name, def, envName(s.name), s.usage)
	}
}
