// Package localproxy is a local stand-in for Envoy: it reads the repository's envoy.yaml,
// hosts the jtiguard module in the wazero harness (one VM per worker, Envoy's import surface,
// real tick timers and callouts), runs every request's headers through the filter on a
// round-robin VM, answers the filter's local replies itself and reverse-proxies the rest to
// the route's cluster.
//
// It exists because no Envoy binary can run where jtiguard is developed and tested, yet a
// person must be able to curl the filter (make run) and tests must drive it over real HTTP.
// It reproduces what the filter can observe of Envoy (see harness), not Envoy's HTTP
// features: one listener, one route, no retries, no response-path filter callbacks.
//
// Request bodies go through proxy_on_request_body as Envoy's wasm filter feeds them: in
// chunks, end_of_stream on the last, the whole buffered body visible while the filter
// pauses (StopIterationAndBuffer), nothing sent upstream until it continues, and 413 past
// the buffer limit (see Proxy.BufferLimit).
package localproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jtiguard/jtiguard/envoyconfig"
	"github.com/jtiguard/jtiguard/harness"
)

// Sentinel errors; every error of Load wraps one of them.
var (
	// ErrConfig: the Envoy bootstrap could not be loaded or names no usable route cluster.
	ErrConfig = errors.New("localproxy: bad envoy configuration")
	// ErrModule: the wasm file named by the bootstrap could not be read.
	ErrModule = errors.New("localproxy: cannot read the wasm module")
	// ErrStart: the harness refused the module (import surface, start failure).
	ErrStart = errors.New("localproxy: the wasm module did not start")
)

// Defaults of the body options (Options and Proxy fields).
const (
	// DefaultBufferLimit is Envoy's default per_connection_buffer_limit_bytes (1 MiB), the
	// bound of a request body that a filter holds while it pauses.
	DefaultBufferLimit = 1 << 20
	// DefaultBodyChunk is the size of the body chunks handed to proxy_on_request_body;
	// Envoy's are whatever the connection delivered, typically up to 16 KiB.
	DefaultBodyChunk = 16 << 10
)

// Options configure Load. Zero values mean the defaults noted.
type Options struct {
	// ConfigPath is the Envoy bootstrap (default "envoy.yaml").
	ConfigPath string
	// Workers is the number of worker VMs, as Envoy's --concurrency (default 2).
	Workers int
	// WASI selects which Envoy WASI surface the harness offers (default WASICurrent).
	WASI harness.WASIGeneration
	// WasmLogLevel is the module's log level; 0 (trace) means info, the default. The harness keeps every
	// captured line in memory, so a long-running proxy should not log at debug.
	WasmLogLevel harness.LogLevel
	// Logger receives the proxy's and the module's log lines (default: discard).
	Logger *slog.Logger
	// Getenv resolves the bootstrap's host environment keys (default os.Getenv).
	Getenv func(string) string
	// ConfigureHarness, when set, adjusts the harness config last (tests turn timers off, ...).
	ConfigureHarness func(harness.Config) harness.Config
	// BufferLimit and BodyChunk set the Proxy fields of the same names (0: the defaults).
	BufferLimit int64
	BodyChunk   int
}

// Proxy is an http.Handler that filters requests through the module and forwards them.
type Proxy struct {
	// Config is the parsed bootstrap.
	Config *envoyconfig.Config
	// WasmPath is the module file that was loaded.
	WasmPath string
	// BufferLimit bounds the request body buffered while the filter pauses, as Envoy's
	// per_connection_buffer_limit_bytes does: past it the request gets Envoy's local reply
	// 413 "Payload Too Large" and never reaches the upstream. New sets DefaultBufferLimit.
	BufferLimit int64
	// BodyChunk is the largest body chunk handed to one proxy_on_request_body call. New
	// sets DefaultBodyChunk; tests make it small to exercise buffering across calls.
	BodyChunk int

	h        *harness.Harness
	upstream *url.URL
	rp       *httputil.ReverseProxy
	log      *slog.Logger
}

// Load reads the bootstrap, loads the module it names and starts the harness. The wasm path
// is tried as Envoy resolves it (against the working directory) and then against the
// bootstrap's directory, so the proxy also works when started from elsewhere.
func Load(ctx context.Context, o Options) (*Proxy, error) {
	if o.ConfigPath == "" {
		o.ConfigPath = "envoy.yaml"
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.WasmLogLevel == 0 {
		o.WasmLogLevel = harness.LogInfo
	}
	cfg, err := envoyconfig.Load(o.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	route, ok := cfg.Clusters[cfg.RouteCluster]
	if !ok {
		return nil, fmt.Errorf("%w: route cluster %q is not defined", ErrConfig, cfg.RouteCluster)
	}
	wasmPath := resolveWasm(cfg.Plugin.WasmFile, o.ConfigPath)
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (build it with `make build`): %w", ErrModule, cfg.Plugin.WasmFile, err)
	}
	env := map[string]string{}
	for _, k := range cfg.Plugin.HostEnvKeys {
		if v := o.Getenv(k); v != "" {
			env[k] = v
		}
	}
	for k, v := range cfg.Plugin.Env {
		env[k] = v
	}
	clusters := make(map[string]string, len(cfg.Clusters))
	for name, c := range cfg.Clusters {
		clusters[name] = c.Address
	}
	hc := harness.NewConfig().
		WithWorkers(o.Workers).
		WithWASI(o.WASI).
		WithPluginConfig(cfg.Plugin.Configuration).
		WithPluginName(cfg.Plugin.Name).
		WithRootID(cfg.Plugin.RootID).
		WithVMID(cfg.Plugin.VMID).
		WithEnv(env).
		WithFailOpen(cfg.Plugin.FailOpen).
		WithClusters(clusters).
		WithLogLevel(o.WasmLogLevel).
		WithLogOutput(&slogWriter{log: o.Logger})
	if o.ConfigureHarness != nil {
		hc = o.ConfigureHarness(hc)
	}
	h, err := harness.New(ctx, wasm, hc)
	if err != nil {
		return nil, fmt.Errorf("%w: %s on the %s WASI surface: %w", ErrStart, wasmPath, o.WASI, err)
	}
	p := New(h, route.Address, o.Logger)
	p.Config, p.WasmPath = cfg, wasmPath
	if o.BufferLimit > 0 {
		p.BufferLimit = o.BufferLimit
	}
	if o.BodyChunk > 0 {
		p.BodyChunk = o.BodyChunk
	}
	return p, nil
}

func resolveWasm(file, configPath string) string {
	if filepath.IsAbs(file) {
		return file
	}
	if _, err := os.Stat(file); err == nil {
		return file
	}
	if alt := filepath.Join(filepath.Dir(configPath), file); alt != file {
		if _, err := os.Stat(alt); err == nil {
			return alt
		}
	}
	return file
}

// New wraps a running harness: requests that the filter lets through go to upstream
// (host:port, plain HTTP).
func New(h *harness.Harness, upstream string, logger *slog.Logger) *Proxy {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{h: h, upstream: &url.URL{Scheme: "http", Host: upstream}, log: logger,
		BufferLimit: DefaultBufferLimit, BodyChunk: DefaultBodyChunk}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.upstream)
			pr.Out.Host = pr.In.Host // Envoy forwards :authority unchanged (no host_rewrite)
			// ReverseProxy drops X-Forwarded-* before Rewrite; Envoy forwards the ones its
			// connection manager set (x-forwarded-proto), so put them back as the filter saw them.
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					pr.Out.Header[k] = v
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The filter stopped the body on its way upstream (a local reply, or the buffer
			// limit): Envoy resets the upstream request and sends the local reply instead.
			if f, ok := r.Context().Value(feederKey{}).(*bodyFeeder); ok && f.stopped() {
				f.answer(w)
				return
			}
			// Envoy's router answers 503 when the upstream cannot be reached.
			p.log.Warn("upstream unreachable", "cluster_address", upstream, "err", err)
			w.Header().Set("content-type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "upstream connect error or disconnect/reset before headers")
		},
	}
	return p
}

// Harness returns the harness hosting the module (tests read metrics and VMs through it).
func (p *Proxy) Harness() *harness.Harness { return p.h }

// Close stops the module's VMs, timers and callouts.
func (p *Proxy) Close(ctx context.Context) error { return p.h.Close(ctx) }

// ServeHTTP runs the request headers, then the body, through the filter, then answers or
// forwards.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// A client hanging up must not kill a worker: were the harness configured with
	// WithDeadlines (wazero's close-on-context-done; off by default, as here), a cancelled
	// context would close the VM's module for good. So the VM calls never see the request's
	// cancellation.
	ctx := context.WithoutCancel(r.Context())
	// A route whose typed_per_filter_config disables the wasm filter skips it, as in Envoy. The raw
	// path is matched (no decoding or normalisation), so the stand-in errs towards running the filter.
	if p.Config != nil && !p.Config.PluginRunsFor(r.URL.EscapedPath()) {
		sw := &statusWriter{ResponseWriter: w}
		p.rp.ServeHTTP(sw, r)
		p.access(r, start, -1, sw.status(), "upstream_filter_disabled", "")
		return
	}
	s, err := p.h.NewStream(ctx, harness.AnyVM)
	if err != nil {
		p.fail(w, r, start, "new stream", err)
		return
	}
	defer func() { _ = s.End(ctx) }()
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	act, err := s.RequestHeaders(ctx, headersOf(r), !hasBody)
	if err != nil {
		p.fail(w, r, start, "request headers", err)
		return
	}
	if lr := s.LocalResponse(); lr != nil {
		writeLocal(w, lr)
		p.access(r, start, s.VM(), int(lr.Status), "local_reply", lr.Details)
		return
	}
	if !hasBody {
		if act != harness.ActionContinue {
			// The filter never pauses without replying; Envoy would wait for proxy_continue_stream,
			// which this stand-in does not model.
			p.fail(w, r, start, "request headers", errPausedForever)
			return
		}
		p.forward(w, r, start, s, nil)
		return
	}
	f := &bodyFeeder{ctx: ctx, s: s, src: r.Body, remaining: r.ContentLength, limit: p.BufferLimit, chunk: p.BodyChunk}
	if act != harness.ActionContinue {
		// StopIteration on headers: Envoy sends nothing upstream (not even the headers) until
		// a body callback continues, so the filter can decide on the whole body first.
		if err := f.untilReleased(); err != nil {
			p.fail(w, r, start, "request body", err)
			return
		}
		if f.stopped() {
			f.answer(w)
			p.access(r, start, s.VM(), f.status(), "local_reply", f.details())
			return
		}
	}
	p.forward(w, r, start, s, f)
}

// forward sends the request upstream with the filter's header changes; the rest of the body,
// if any, keeps flowing through the filter on its way (f).
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, start time.Time, s *harness.Stream, f *bodyFeeder) {
	applyHeaders(r, s.RequestHeadersNow())
	if f != nil {
		r.Body = f
		r = r.WithContext(context.WithValue(r.Context(), feederKey{}, f))
	}
	sw := &statusWriter{ResponseWriter: w}
	p.rp.ServeHTTP(sw, r)
	outcome, details := "upstream", ""
	if f != nil && f.stopped() {
		outcome, details = "local_reply", f.details()
	}
	p.access(r, start, s.VM(), sw.status(), outcome, details)
}

func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, start time.Time, stage string, err error) {
	p.log.Error("filter call failed", "stage", stage, "err", err)
	http.Error(w, "local proxy: "+stage+" failed", http.StatusInternalServerError)
	p.access(r, start, -1, http.StatusInternalServerError, "error", stage)
}

// access logs one request. Only the path is logged: the query string may hold a token
// (token.locations query_string), and header values are never logged.
func (p *Proxy) access(r *http.Request, start time.Time, vm, status int, outcome, details string) {
	p.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", status, "outcome", outcome,
		"details", details, "vm", vm, "duration", time.Since(start).Round(time.Microsecond))
}

// headersOf presents the request as Envoy's HTTP connection manager presents it to filters.
func headersOf(r *http.Request) harness.Pairs {
	var hs harness.Pairs
	for name, values := range r.Header {
		for _, v := range values {
			hs = append(hs, [2]string{strings.ToLower(name), v})
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return harness.RequestHeadersFor(harness.Request{
		Method: r.Method, Path: r.URL.RequestURI(), Authority: r.Host, Scheme: scheme, Headers: hs,
	})
}

// applyHeaders carries the filter's header changes (and the headers Envoy adds, such as
// x-request-id) to the request that goes upstream.
func applyHeaders(r *http.Request, hs harness.Pairs) {
	out := http.Header{}
	for _, kv := range hs {
		switch kv[0] {
		case ":authority":
			r.Host = kv[1]
		case ":path":
			if u, err := url.ParseRequestURI(kv[1]); err == nil {
				r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
			}
		case ":method":
			r.Method = kv[1]
		default:
			if !strings.HasPrefix(kv[0], ":") {
				out.Add(kv[0], kv[1])
			}
		}
	}
	r.Header = out
}

func writeLocal(w http.ResponseWriter, lr *harness.LocalResponse) {
	h := w.Header()
	for _, kv := range lr.Headers {
		h.Add(kv[0], kv[1])
	}
	if lr.Details != "" {
		// Envoy shows response code details in access logs, not to clients; expose them in a
		// header that only this stand-in sets, for debugging.
		h.Set("x-localproxy-details", lr.Details)
	}
	h.Set("content-length", strconv.Itoa(len(lr.Body)))
	w.WriteHeader(int(lr.Status))
	_, _ = w.Write(lr.Body)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// slogWriter turns the harness's echo of module log lines into log records.
type slogWriter struct {
	log *slog.Logger
	mu  sync.Mutex
}

func (s *slogWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if line != "" {
			s.log.Info("wasm", "line", line)
		}
	}
	return len(b), nil
}

// Serve serves handler on ln until ctx ends, then shuts down gracefully: no new connections,
// requests in flight get up to grace to finish.
func Serve(ctx context.Context, ln net.Listener, handler http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
