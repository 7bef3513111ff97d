// Command jtiguard-proxy is a local stand-in for Envoy: it reads envoy.yaml, hosts the
// jtiguard module in the wazero harness and serves the listener, so the filter can be tried
// with curl where no Envoy binary is available.
//
//	make build && go run ./cmd/jtiguard-proxy -config envoy.yaml -listen 127.0.0.1:10000
//
// See docs/local-proxy.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy"
)

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "jtiguard-proxy:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run parses flags, starts the proxy and serves until SIGINT or SIGTERM.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jtiguard-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "envoy.yaml", "Envoy bootstrap to read (listener, wasm plugin, clusters)")
	listen := fs.String("listen", "", "listen address, overriding the bootstrap's listener (e.g. 127.0.0.1:10000)")
	workers := fs.Int("workers", 2, "worker VMs, as Envoy's --concurrency")
	wasi := fs.String("wasi", "current", `WASI surface of the host: "current" or "envoy-1.33"`)
	wasmLog := fs.String("wasm-log-level", "info", "module log level: debug, info, warn, error, critical")
	verbose := fs.Bool("v", false, "log at debug level")
	validate := fs.Bool("validate", false, "load the bootstrap and start the module, then exit (as envoy --mode validate)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	gen, err := harness.ParseWASIGeneration(*wasi)
	if err != nil {
		return fmt.Errorf("%w: -wasi: %w", errUsage, err)
	}
	lvl, err := parseWasmLevel(*wasmLog)
	if err != nil {
		return fmt.Errorf("%w: -wasm-log-level: %w", errUsage, err)
	}
	if *workers < 1 {
		return fmt.Errorf("%w: -workers must be at least 1", errUsage)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := localproxy.Load(ctx, localproxy.Options{
		ConfigPath: *configPath, Workers: *workers, WASI: gen, WasmLogLevel: lvl, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer p.Close(context.Background())
	if *validate {
		// Envoy's own words for a bootstrap that passed --mode validate.
		fmt.Fprintf(stdout, "configuration '%s' OK\n", *configPath)
		return nil
	}
	addr := *listen
	if addr == "" {
		addr = p.Config.ListenAddress
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	logger.Info("jtiguard-proxy listening", "addr", ln.Addr().String(), "wasm", p.WasmPath, "workers", *workers,
		"wasi", gen.String(), "upstream_cluster", p.Config.RouteCluster)
	err = localproxy.Serve(ctx, ln, p, 10*time.Second)
	logger.Info("jtiguard-proxy stopped")
	return err
}

func parseWasmLevel(s string) (harness.LogLevel, error) {
	for l := harness.LogDebug; l <= harness.LogCritical; l++ {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown level %q", s)
}
