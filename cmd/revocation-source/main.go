// Command revocation-source serves the jtiguard revocation feed
// (docs/feed.md) from Redis, PostgreSQL, SQLite or a file. With a
// subcommand (revoke, unrevoke, list, status) it is the client of a running
// source's admin API instead. See docs/revocation-source.md, or run it with
// --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	_ "time/tzdata" // PostgreSQL zone names resolve in a static image without zoneinfo

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	rs "github.com/jtiguard/jtiguard/revocationsource"
)

func main() {
	if len(os.Args) > 1 && isSubcommand(os.Args[1]) {
		os.Exit(runCLI(context.Background(), os.Args[1], os.Args[2:], os.LookupEnv, os.Stdout, os.Stderr))
	}
	err := run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errHelp):
	case errors.Is(err, ErrConfig):
		fmt.Fprintln(os.Stderr, "revocation-source:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "revocation-source:", err)
		os.Exit(1)
	}
}

// run is the whole program. --help prints the reference to stdout and
// returns errHelp; logs go to logw.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, logw io.Writer) error {
	return runWith(ctx, args, lookupEnv, stdout, logw, nil)
}

// runWith is run; bound, when not nil, receives the address listened on.
func runWith(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, logw io.Writer, bound chan<- string) error {
	c, err := parseConfig(args, lookupEnv)
	if errors.Is(err, errHelp) {
		printHelp(stdout)
		return err
	}
	if err != nil {
		return err
	}
	sec, err := loadSecrets(c, lookupEnv)
	if err != nil {
		return err
	}
	log := newLogger(c, logw)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	idx := rs.NewIndex(time.Now, c.maxLog)
	idx.SetExpiryGrace(c.expiryGrace)
	metrics := rs.NewMetrics(reg, idx)
	store := &pendingStore{}
	var syncer atomic.Pointer[rs.Syncer]
	srv := &rs.Server{Index: idx, Store: store, Metrics: metrics, Logger: log, Gatherer: reg,
		AdminToken: sec.admin, FeedToken: sec.feed, MetricsToken: sec.metrics,
		MaxWait: c.maxWait, MaxWatchers: c.maxWatchers,
		Ready: func() bool { s := syncer.Load(); return s != nil && s.Ready() }}
	if c.maxWait == 0 {
		srv.MaxWait = -1 // 0 turns long polls off; the Server's 0 is its default
	}
	if c.maxWatchers == 0 {
		srv.MaxWatchers = -1
	}
	if sec.admin == "" {
		log.Warn("no admin token configured (REVOCATION_SOURCE_ADMIN_TOKEN or --admin-token-file): admin API disabled, its paths answer 404")
	}

	// Serve /healthz at once: the store may take a while to appear.
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", c.where("listen"), c.listen, err)
	}
	if bound != nil {
		bound <- ln.Addr().String()
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); sec.feed == "" && !net.ParseIP(host).IsLoopback() {
		log.Warn("the feed is served without authentication on a non-loopback address; set REVOCATION_SOURCE_FEED_TOKEN (or --feed-token-file) and the filter's sync.headers",
			"addr", ln.Addr().String())
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A large snapshot to a slow client takes a while. A held long
		// poll moves its own deadlines past the hold (rs.Server).
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	// Shutdown waits for requests in flight: answer the held long polls at
	// once (304) rather than after their wait.
	hs.RegisterOnShutdown(srv.Drain)
	log.Info("revocation source listening", "addr", ln.Addr().String(), "store", c.store,
		"admin_api", sec.admin != "", "feed_auth", sec.feed != "", "metrics_auth", sec.metrics != "",
		"expiry_grace", c.expiryGrace.String(), "reconcile_interval", c.reconcile.String(), "max_log_changes", strconv.Itoa(c.maxLog),
		"max_wait", c.maxWait.String(), "max_watchers", c.maxWatchers)
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutdown: %w", err)
		}
		return nil
	}

	opened := make(chan openResult, 1)
	go func() { s, err := waitForStore(ctx, c, lookupEnv, sec, log, reg); opened <- openResult{s, err} }()
	var st rs.Store
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case r := <-opened:
		if r.err != nil {
			_ = shutdown()
			return r.err
		}
		st = r.store
	}
	if st == nil { // ctx ended while waiting
		log.Info("shutting down")
		return shutdown()
	}
	defer st.Close()
	store.set(st)

	sy := &rs.Syncer{Store: st, Index: idx, Logger: log, Metrics: metrics, ReconcileEvery: c.reconcile}
	if c.store == "sqlite" || c.store == "postgres" {
		sy.PruneEvery = c.sqlPrune
	}
	syncer.Store(sy)
	syncDone := make(chan struct{})
	go func() { defer close(syncDone); _ = sy.Run(ctx) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	err = shutdown()
	<-syncDone
	return err
}

type openResult struct {
	store rs.Store
	err   error
}

// pendingStore is the Server's store before the real one is open: writes
// answer 503 until then.
type pendingStore struct{ p atomic.Pointer[rs.Store] }

func (p *pendingStore) set(s rs.Store) { p.p.Store(&s) }

func (p *pendingStore) get() (rs.Store, error) {
	s := p.p.Load()
	if s == nil {
		return nil, fmt.Errorf("%w: the store is not open yet", rs.ErrNotReady)
	}
	return *s, nil
}

func (p *pendingStore) Load(ctx context.Context) (rs.State, error) {
	s, err := p.get()
	if err != nil {
		return rs.State{}, err
	}
	return s.Load(ctx)
}

func (p *pendingStore) RevokeToken(ctx context.Context, e rs.Entry) error {
	s, err := p.get()
	if err != nil {
		return err
	}
	return s.RevokeToken(ctx, e)
}

func (p *pendingStore) UnrevokeToken(ctx context.Context, k rs.EntryKey) error {
	s, err := p.get()
	if err != nil {
		return err
	}
	return s.UnrevokeToken(ctx, k)
}

func (p *pendingStore) RevokeSubject(ctx context.Context, c rs.Cutoff) error {
	s, err := p.get()
	if err != nil {
		return err
	}
	return s.RevokeSubject(ctx, c)
}

func (p *pendingStore) UnrevokeSubject(ctx context.Context, k rs.CutoffKey) error {
	s, err := p.get()
	if err != nil {
		return err
	}
	return s.UnrevokeSubject(ctx, k)
}

func (p *pendingStore) Close() error { return nil }

// EffectiveEntry forwards to the real store when it has one.
func (p *pendingStore) EffectiveEntry(e rs.Entry) rs.Entry {
	if s, err := p.get(); err == nil {
		if eff, ok := s.(rs.EffectiveEntrier); ok {
			return eff.EffectiveEntry(e)
		}
	}
	return e
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
