package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	rs "github.com/jtiguard/jtiguard/revocationsource"
	"github.com/jtiguard/jtiguard/revocationsource/filestore"
	"github.com/jtiguard/jtiguard/revocationsource/redisstore"
	"github.com/jtiguard/jtiguard/revocationsource/sqlstore"
)

type secrets struct{ admin, feed, metrics, redis string }

// loadSecrets reads each secret from its environment variable or, failing
// that, its file.
func loadSecrets(c config, lookupEnv func(string) (string, bool)) (secrets, error) {
	var s secrets
	var err error
	for _, x := range []struct {
		p        *string
		env      string
		fileFlag string
		file     string
	}{
		{&s.admin, envPrefix + "ADMIN_TOKEN", "admin-token-file", c.adminTokenFile},
		{&s.feed, envPrefix + "FEED_TOKEN", "feed-token-file", c.feedTokenFile},
		{&s.metrics, envPrefix + "METRICS_TOKEN", "metrics-token-file", c.metricsTokenFile},
		{&s.redis, "REDIS_PASSWORD", "redis-password-file", c.redisPassFile},
	} {
		if *x.p, err = secret(lookupEnv, x.env, c.where(x.fileFlag), x.file); err != nil {
			return s, err
		}
	}
	return s, nil
}

// secret reads env var name or, failing that, file (set by where).
func secret(lookupEnv func(string) (string, bool), name, where, file string) (string, error) {
	if v, _ := lookupEnv(name); strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), nil
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%w: %s=%s: %v", ErrConfig, where, file, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%w: %s=%s: the file is empty", ErrConfig, where, file)
	}
	return v, nil
}

// fatal reports whether a store error will not fix itself by waiting.
func fatal(err error) bool {
	return errors.Is(err, ErrConfig) || errors.Is(err, sqlstore.ErrBadIdentifier) ||
		errors.Is(err, sqlstore.ErrBadDriver) || errors.Is(err, sqlstore.ErrSchema)
}

// waitForStore opens the store, retrying while it is unreachable or not
// there yet (a pod may start before its database, or before the app created
// its table); a configuration or schema problem ends the program. It
// returns a nil store when ctx ends first.
func waitForStore(ctx context.Context, c config, lookupEnv func(string) (string, bool), sec secrets, log *slog.Logger, reg prometheus.Registerer) (rs.Store, error) {
	start := time.Now()
	attempts := 0
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		attempts++
		st, err := openStore(ctx, c, sec, log, reg)
		if err == nil {
			attrs := []any{"store", c.store}
			if attempts > 1 {
				attrs = append(attrs, "waited", time.Since(start).Round(time.Millisecond).String(), "attempts", attempts)
			}
			log.Info("store reachable", attrs...)
			return st, nil
		}
		if fatal(err) {
			return nil, explain(c, err)
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		msg := "store not reachable yet; retrying"
		if errors.Is(err, sqlstore.ErrMissing) {
			msg = "store not there yet; retrying (the app creates it, or pass --sql-create-tables to let this server create it)"
		}
		log.Warn(msg, "store", c.store, "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
	}
}

// explain adds the flag (or variable) behind a schema error.
func explain(c config, err error) error {
	var se *sqlstore.SchemaError
	if !errors.As(err, &se) {
		return err
	}
	flagFor := map[string]string{
		"IDColumn": "sql-id-column", "JTIColumn": "sql-jti-column", "TypeColumn": "sql-type-column",
		"CreatedColumn": "sql-created-column", "ExpiresColumn": "sql-expires-column", "IssColumn": "sql-iss-column",
		"CutoffsTable": "sql-cutoffs-table", "ClaimsTable": "sql-claims-table",
	}
	if f, ok := flagFor[se.Setting]; ok {
		return fmt.Errorf("%w (set with %s)", err, c.where(f))
	}
	return err
}

func openStore(ctx context.Context, c config, sec secrets, log *slog.Logger, reg prometheus.Registerer) (rs.Store, error) {
	switch c.store {
	case "redis":
		client := redis.NewClient(&redis.Options{Addr: c.redisAddr, DB: c.redisDB, Username: c.redisUser, Password: sec.redis})
		notify := prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "revocation_source_redis_keyspace_notifications",
			Help: "1 when Redis keyspace notifications are known to be on (changes arrive within milliseconds), 0 when only reconciliation sees changes.",
		})
		s, err := redisstore.Open(ctx, redisstore.Config{
			Client: client, KeyPrefix: c.redisPrefix, CutoffsKey: c.redisCutoffsKey, ClaimsPrefix: c.redisClaims, ExpiryGrace: c.expiryGrace,
			ConfigureNotifications: c.redisNotify, MaxEntries: c.maxEntries, Logger: log,
			OnNotifications: func(on bool) {
				if on {
					notify.Set(1)
				} else {
					notify.Set(0)
				}
			},
		})
		if err != nil {
			_ = client.Close()
			return nil, err
		}
		_ = reg.Register(notify)
		return s, nil
	case "file":
		return &filestore.Store{Path: c.filePath, PollInterval: c.filePoll, MaxEntries: c.maxEntries, Grace: c.expiryGrace}, nil
	}
	cfg := sqlstore.Config{
		Driver: sqlstore.SQLite, DSN: c.sqlitePath,
		Table: c.sqlTable, IDColumn: c.sqlID, JTIColumn: c.sqlJTI, TypeColumn: c.sqlType,
		CreatedColumn: c.sqlCreated, ExpiresColumn: c.sqlExpires, IssColumn: c.sqlIss, CutoffsTable: c.sqlCutoffs, ClaimsTable: c.sqlClaims,
		AccessTokenExpires: c.accessExpires, RefreshTokenExpires: c.refreshExpires, ExpiryGrace: c.expiryGrace,
		CreateTables: c.sqlCreate, PollInterval: c.sqlPoll, MaxEntries: c.maxEntries, Logger: log,
	}
	if c.store == "postgres" {
		cfg.Driver, cfg.DSN = sqlstore.Postgres, c.postgresDSN
	}
	s, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "revocation_source_unreadable_times_total",
		Help: "Time values in the blocklist table that could not be read; their rows are served without an expiry.",
	}, func() float64 { return float64(s.Unreadable()) }))
	return s, nil
}
