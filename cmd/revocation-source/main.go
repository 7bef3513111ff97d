// Command revocation-source serves the jtiguard revocation feed
// (docs/feed.md) from Redis, PostgreSQL, SQLite or a file. See
// docs/revocation-source.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/filestore"
	"github.com/jtiguard/jtiguard/revocationsource/redisstore"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "revocation-source:", err)
		os.Exit(1)
	}
}

// ErrConfig marks a bad flag or environment value.
var ErrConfig = errors.New("bad configuration")

// config is every setting. Each flag --name can also be set with the env var
// REVOCATION_SOURCE_NAME (upper case, '-' → '_'); a flag on the command line
// wins over the environment. Secrets (admin token, Redis password) are only
// read from the environment or files, never from flags, which show in ps.
type config struct {
	listen          string        // --listen: HTTP address (feed, admin, health, metrics)
	store           string        // --store: sqlite | postgres | redis | file
	sqlitePath      string        // --sqlite-path: SQLite file for --store=sqlite
	postgresDSN     string        // --postgres-dsn: pgx DSN for --store=postgres
	redisAddr       string        // --redis-addr: host:port for --store=redis
	redisDB         int           // --redis-db: database number
	redisUser       string        // --redis-username: ACL user (password: REDIS_PASSWORD env or --redis-password-file)
	redisPassFile   string        // --redis-password-file: file holding the Redis password
	redisPrefix     string        // --redis-key-prefix: prefix of jti keys ("" = whole database)
	redisCutoffsKey string        // --redis-cutoffs-key: hash holding subject cutoffs
	redisNotify     bool          // --redis-configure-notifications: CONFIG SET notify-keyspace-events
	sqlTable        string        // --sql-table
	sqlID           string        // --sql-id-column
	sqlJTI          string        // --sql-jti-column
	sqlType         string        // --sql-type-column ("" if none)
	sqlCreated      string        // --sql-created-column ("" if none)
	sqlExpires      string        // --sql-expires-column ("" if none)
	sqlIss          string        // --sql-iss-column ("" if none)
	sqlCutoffs      string        // --sql-cutoffs-table
	sqlCreate       bool          // --sql-create-tables
	sqlPoll         time.Duration // --sql-poll-interval
	filePath        string        // --file-path for --store=file
	filePoll        time.Duration // --file-poll-interval
	reconcile       time.Duration // --reconcile-interval: full re-read of the store
	maxLog          int           // --max-log-changes: change log length for deltas
	maxEntries      int           // --max-entries: bound on items read from the store
	adminTokenFile  string        // --admin-token-file (or env REVOCATION_SOURCE_ADMIN_TOKEN)
	logLevel        string        // --log-level: debug | info | warn | error
	logFormat       string        // --log-format: json | text
	shutdownTimeout time.Duration // --shutdown-timeout
}

const envPrefix = "REVOCATION_SOURCE_"

func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("revocation-source", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.listen, "listen", ":8080", "HTTP listen address")
	fs.StringVar(&c.store, "store", "sqlite", "store: sqlite | postgres | redis | file")
	fs.StringVar(&c.sqlitePath, "sqlite-path", "./revocations.db", "SQLite database file")
	fs.StringVar(&c.postgresDSN, "postgres-dsn", "", "PostgreSQL DSN (postgres://user:pass@host/db)")
	fs.StringVar(&c.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address")
	fs.IntVar(&c.redisDB, "redis-db", 0, "Redis database number")
	fs.StringVar(&c.redisUser, "redis-username", "", "Redis ACL username")
	fs.StringVar(&c.redisPassFile, "redis-password-file", "", "file holding the Redis password")
	fs.StringVar(&c.redisPrefix, "redis-key-prefix", "", "prefix of jti keys")
	fs.StringVar(&c.redisCutoffsKey, "redis-cutoffs-key", "jtiguard:cutoffs", "Redis hash of subject cutoffs")
	fs.BoolVar(&c.redisNotify, "redis-configure-notifications", true, "enable keyspace notifications with CONFIG SET")
	fs.StringVar(&c.sqlTable, "sql-table", "token_blocklist", "blocklist table")
	fs.StringVar(&c.sqlID, "sql-id-column", "id", "id column (increasing integer)")
	fs.StringVar(&c.sqlJTI, "sql-jti-column", "jti", "jti column")
	fs.StringVar(&c.sqlType, "sql-type-column", "type", "token type column, empty if none")
	fs.StringVar(&c.sqlCreated, "sql-created-column", "created_at", "creation time column, empty if none")
	fs.StringVar(&c.sqlExpires, "sql-expires-column", "expires", "expiry column (timestamp or Unix seconds), empty if none")
	fs.StringVar(&c.sqlIss, "sql-iss-column", "", "issuer column, empty if none")
	fs.StringVar(&c.sqlCutoffs, "sql-cutoffs-table", "jtiguard_subject_cutoffs", "subject cutoffs table")
	fs.BoolVar(&c.sqlCreate, "sql-create-tables", true, "create missing tables")
	fs.DurationVar(&c.sqlPoll, "sql-poll-interval", time.Second, "how often to look for new rows")
	fs.StringVar(&c.filePath, "file-path", "", "file for --store=file")
	fs.DurationVar(&c.filePoll, "file-poll-interval", time.Second, "how often to check the file for changes")
	fs.DurationVar(&c.reconcile, "reconcile-interval", time.Minute, "full re-read of the store (0: only at start)")
	fs.IntVar(&c.maxLog, "max-log-changes", rs.DefaultMaxLog, "changes remembered for deltas")
	fs.IntVar(&c.maxEntries, "max-entries", 2_000_000, "most items read from the store")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", "", "file holding the admin bearer token")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug | info | warn | error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json | text")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "grace period for in-flight requests")

	// Environment first, so the command line overrides it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", ErrConfig, name, v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected arguments %q", ErrConfig, fs.Args())
	}
	switch {
	case c.store != "sqlite" && c.store != "postgres" && c.store != "redis" && c.store != "file":
		return c, fmt.Errorf("%w: --store=%q (want sqlite, postgres, redis or file)", ErrConfig, c.store)
	case c.store == "postgres" && c.postgresDSN == "":
		return c, fmt.Errorf("%w: --store=postgres needs --postgres-dsn", ErrConfig)
	case c.store == "file" && c.filePath == "":
		return c, fmt.Errorf("%w: --store=file needs --file-path", ErrConfig)
	case c.maxLog < 1 || c.maxEntries < 1:
		return c, fmt.Errorf("%w: --max-log-changes and --max-entries must be positive", ErrConfig)
	case c.reconcile < 0 || c.sqlPoll <= 0 || c.filePoll <= 0 || c.shutdownTimeout <= 0:
		return c, fmt.Errorf("%w: durations must be positive (--reconcile-interval may be 0)", ErrConfig)
	case c.logFormat != "json" && c.logFormat != "text":
		return c, fmt.Errorf("%w: --log-format=%q", ErrConfig, c.logFormat)
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return c, fmt.Errorf("%w: --listen=%q: %v", ErrConfig, c.listen, err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return c, fmt.Errorf("%w: --log-level=%q", ErrConfig, c.logLevel)
	}
	return c, nil
}

// secret reads a secret from env var name or, failing that, a file.
func secret(getenv func(string) string, name, file string) (string, error) {
	if v := getenv(name); v != "" {
		return strings.TrimSpace(v), nil
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: read %s: %v", ErrConfig, file, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrConfig, file)
	}
	return v, nil
}

func newLogger(c config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func openStore(ctx context.Context, c config, getenv func(string) string, log *slog.Logger) (rs.Store, error) {
	switch c.store {
	case "redis":
		pass, err := secret(getenv, "REDIS_PASSWORD", c.redisPassFile)
		if err != nil {
			return nil, err
		}
		client := redis.NewClient(&redis.Options{Addr: c.redisAddr, DB: c.redisDB, Username: c.redisUser, Password: pass})
		s, err := redisstore.Open(ctx, redisstore.Config{
			Client: client, KeyPrefix: c.redisPrefix, CutoffsKey: c.redisCutoffsKey,
			ConfigureNotifications: c.redisNotify, MaxEntries: c.maxEntries, Logger: log,
		})
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		return s, nil
	case "file":
		return &filestore.Store{Path: c.filePath, PollInterval: c.filePoll, MaxEntries: c.maxEntries}, nil
	}
	cfg := sqlstore.Config{
		Driver: sqlstore.SQLite, DSN: c.sqlitePath,
		Table: c.sqlTable, IDColumn: c.sqlID, JTIColumn: c.sqlJTI, TypeColumn: c.sqlType,
		CreatedColumn: c.sqlCreated, ExpiresColumn: c.sqlExpires, IssColumn: c.sqlIss,
		CutoffsTable: c.sqlCutoffs, CreateTables: c.sqlCreate, PollInterval: c.sqlPoll, MaxEntries: c.maxEntries,
	}
	if c.store == "postgres" {
		cfg.Driver, cfg.DSN = sqlstore.Postgres, c.postgresDSN
	}
	return sqlstore.Open(ctx, cfg)
}

// run is the whole program; ready, when not nil, receives the bound address.
func run(ctx context.Context, args []string, getenv func(string) string, logw io.Writer) error {
	return runWith(ctx, args, getenv, logw, nil)
}

func runWith(ctx context.Context, args []string, getenv func(string) string, logw io.Writer, bound chan<- string) error {
	c, err := parseConfig(args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(c, logw)
	token, err := secret(getenv, envPrefix+"ADMIN_TOKEN", c.adminTokenFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// Retry opening so a pod can start before its database.
	var store rs.Store
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		store, err = openStore(ctx, c, getenv, log)
		if err == nil {
			break
		}
		if errors.Is(err, ErrConfig) || errors.Is(err, sqlstore.ErrBadIdentifier) || errors.Is(err, sqlstore.ErrBadDriver) {
			return err
		}
		log.Warn("store not reachable yet", "store", c.store, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	defer store.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	idx := rs.NewIndex(time.Now, c.maxLog)
	metrics := rs.NewMetrics(reg, idx)
	syncer := &rs.Syncer{Store: store, Index: idx, Logger: log, Metrics: metrics, ReconcileEvery: c.reconcile}
	srv := &rs.Server{Index: idx, Store: store, Metrics: metrics, Logger: log, AdminToken: token,
		Ready: syncer.Ready, Gatherer: reg}
	if token == "" {
		log.Warn("no admin token configured (REVOCATION_SOURCE_ADMIN_TOKEN or --admin-token-file): admin API disabled, its paths answer 404")
	}

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if bound != nil {
		bound <- ln.Addr().String()
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A large snapshot to a slow client takes a while.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	log.Info("revocation source listening", "addr", ln.Addr().String(), "store", c.store,
		"admin_api", token != "", "reconcile_interval", c.reconcile.String(), "max_log_changes", strconv.Itoa(c.maxLog))

	syncDone := make(chan struct{})
	go func() { defer close(syncDone); _ = syncer.Run(ctx) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	err = hs.Shutdown(sctx)
	<-syncDone
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
