package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	rs "github.com/jtiguard/jtiguard/revocationsource"
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
	redisNotify     bool

	filePath string
	filePoll time.Duration

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
	boolean("Redis", "redis-configure-notifications", true, "turn keyspace notifications on with CONFIG SET (at start and after a Redis restart)", &c.redisNotify)

	str("File", "file-path", "", "file for --store=file (JSON snapshot, or one jti per line with an optional Unix expiry)", &c.filePath)
	dur("File", "file-poll-interval", time.Second, "how often to check the file for changes", &c.filePoll)
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
			{"sql-cutoffs-table", c.sqlCutoffs.Name, true},
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
	sections := []string{"General", "SQL", "Redis", "File"}
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
