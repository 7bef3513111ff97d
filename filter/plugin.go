// Package filter is the HTTP filter: it finds every token a request carries, denies the
// request if any of them is revoked (by jti, or by its subject's cutoff) on the blocklist that
// blocklistsync keeps in shared data, and validates the token the application would read. It is
// written to the proxy-wasm-go-sdk's context interfaces and reaches the host only through
// internal/abi.
package filter

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/jwkssync"
	"github.com/jtiguard/jtiguard/jwtverify"
	"github.com/jtiguard/jtiguard/statuslist"
)

// NewVMContext returns the plugin's VM context, reading the host's wall clock.
func NewVMContext() types.VMContext { return newVMContext(abi.Now) }

func newVMContext(now func() time.Time) *vmContext { return &vmContext{now: now} }

// vmContext implements types.VMContext.
type vmContext struct {
	types.DefaultVMContext
	now func() time.Time
}

// NewPluginContext implements types.VMContext.
func (v *vmContext) NewPluginContext(contextID uint32) types.PluginContext {
	return &pluginContext{id: contextID, now: v.now}
}

// hostStore is the host's shared data, as blocklistsync wants it.
type hostStore struct{}

func (hostStore) GetSharedData(key string) ([]byte, uint32, error) { return abi.GetSharedData(key) }
func (hostStore) GetSharedDataView(key string) ([]byte, uint32, error) {
	return abi.GetSharedDataView(key)
}
func (hostStore) GetSharedDataInto(key string, dst []byte) ([]byte, uint32, error) {
	return abi.GetSharedDataInto(key, dst)
}
func (hostStore) SetSharedData(key string, v []byte, cas uint32) error {
	return abi.SetSharedData(key, v, cas)
}

// pluginContext implements types.PluginContext: one per worker VM and plugin configuration.
type pluginContext struct {
	types.DefaultPluginContext
	id  uint32
	now func() time.Time

	// reqNow is the host's clock as the request being decided read it (zero outside one):
	// the list's recheck and the token's validation use that one reading, so a request makes
	// one clock call, not one per reader of the time.
	reqNow time.Time
	// pathBuf holds a request's percent-decoded path while rules match it (rules.go).
	pathBuf []byte

	cfg      *Config
	scanner  *credentials.Scanner
	verifier *verifier
	cache    *tokenCache
	reader   *blocklistsync.Reader
	syncer   *blocklistsync.Syncer
	jwks     *jwkssync.Syncer    // jwt.remote_jwks; nil without it
	status   *statuslist.Checker // nil without status_list lists
	metrics  *metrics
	replies  replies
	gc       *gcPacer
	// fastTicks is true until the first list (and remote key set) is seen: ticks then come
	// every startupTick, so the first poll does not wait a whole tick period.
	fastTicks bool
	// tick is the tick period last set.
	tick time.Duration
	// lastReadErr throttles logging of a broken shared list to once a minute per VM.
	lastReadErr time.Time
	// propertyOff: the host has no proxy_set_property; propertyLogged: its failure was logged.
	propertyOff, propertyLogged bool
	// out is the decision decide made for the request being decided, when it is not one made
	// once (replies, allow...); val is its validation. Kept here, not moved by value: see decide.
	out decision
	val validation
	// free holds contexts of finished streams for reuse.
	free []*httpContext
}

// OnPluginStart implements types.PluginContext. A configuration error is logged at critical
// level and fails the start, so Envoy refuses the configuration instead of running without
// revocation checks.
func (p *pluginContext) OnPluginStart(configSize int) types.OnPluginStartStatus {
	var data []byte
	if configSize > 0 {
		var err error
		if data, err = abi.GetPluginConfiguration(); err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
			abi.Log(abi.LogLevelCritical, "jtiguard: read plugin configuration: "+err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	cfg, err := ParseConfig(data, os.Getenv)
	if err != nil {
		abi.Log(abi.LogLevelCritical, "jtiguard: "+err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.cfg = cfg
	// Discovery selects the token of every kind some route accepts; each request's policy
	// then says which kinds its route takes.
	kinds := kindsOf(cfg.topPolicy, cfg.rules)
	payloadHeader := ""
	if tu := cfg.JWT.TrustUpstream; tu != nil {
		payloadHeader = tu.headerKey
	}
	p.scanner = credentials.NewScanner(&cfg.Token, kinds, payloadHeader)
	p.verifier = newVerifier(cfg, p.clock)
	p.cache = newTokenCache(cfg.Cache.MaxEntries)
	keys := blocklistsync.KeysFor(cfg.Prefix)
	// The generation record is read at most every listRecheck by requests (always on ticks): a
	// revocation reaches every worker within one sync interval plus listRecheck.
	p.gc = newGCPacer()
	p.reader = blocklistsync.NewReader(hostStore{}, keys, blocklistsync.ReaderOptions{
		KeyedByIssuer: cfg.KeyedByIssuer(), RecheckEvery: listRecheck, Now: p.clock, OnGrow: p.gc.grew,
	})
	p.metrics = newMetrics(cfg.Prefix)
	p.replies = newReplies(&cfg.Responses)
	tick := metricsFlushTick
	if cfg.Sync.Cluster != "" {
		p.syncer = blocklistsync.NewSyncer(cfg.Sync, blocklistsync.SyncOptions{
			Keys:          keys,
			Store:         hostStore{},
			Host:          hostCalls{},
			Now:           p.now,
			KeyedByIssuer: cfg.KeyedByIssuer(),
			Grace:         cfg.JWT.Leeway.D(),
			MaxStaleness:  cfg.MaxStaleness.D(),
			MetricsPrefix: cfg.Prefix,
			OnGrow:        p.gc.grew,
		})
		// No poll and no lease here: Envoy also runs this callback on a "configuration canary",
		// a VM it kills right after, which would hold the lease for a whole lease_ttl. Worker VMs
		// tick, so the first poll happens on the first tick, soon after.
		p.fastTicks = true
		tick = min(startupTick, p.syncer.TickPeriod())
	}
	if rj := cfg.JWT.RemoteJWKS; rj != nil {
		p.jwks = jwkssync.NewSyncer(*rj, jwkssync.Options{
			Keys: jwkssync.KeysForEndpoint(cfg.Prefix, *rj), Store: hostStore{}, Host: hostCalls{}, Now: p.now,
			Builder: cfg.JWT.jwks, FailOpen: cfg.FailMode == FailOpen, OnChange: p.keysChanged,
			MetricsPrefix: cfg.Prefix,
		})
		p.verifier.remote = p.jwks
		p.jwks.Load() // keys another VM already fetched; no lease and no fetch here (see above)
		p.fastTicks = true
		tick = min(tick, startupTick)
	}
	if cfg.status.Enabled() {
		// As the syncer: no shared data and no callout here; the first tick starts the fetches.
		p.status = statuslist.NewChecker(cfg.status, statuslist.Options{
			Prefix: cfg.Prefix, Store: hostStore{}, Host: hostCalls{}, Now: p.now, Leeway: cfg.JWT.Leeway.D(),
		})
		tick = min(tick, p.status.TickPeriod())
	}
	p.tick = tick
	if err := abi.SetTickPeriodMilliSeconds(uint32(tick.Milliseconds())); err != nil {
		abi.Log(abi.LogLevelCritical, "jtiguard: set tick period: "+err.Error())
		return types.OnPluginStartStatusFailed
	}
	abi.RefreshLogLevel()
	abi.Log(abi.LogLevelInfo, fmt.Sprintf("jtiguard: started (prefix %q, locations %v, fail_mode %s, sync cluster %q)",
		cfg.Prefix, cfg.Token.Locations, cfg.FailMode, cfg.Sync.Cluster))
	return types.OnPluginStartStatusOK
}

// clock is the time as the request being decided read it, or the host's clock outside a
// request (ticks, the syncer).
func (p *pluginContext) clock() time.Time {
	if !p.reqNow.IsZero() {
		return p.reqNow
	}
	return p.now()
}

// kindOf maps a jwt.token_types entry to the route kind that accepts it.
func kindOf(tokenType string) credentials.Kind {
	if tokenType == "refresh" {
		return credentials.Refresh
	}
	return credentials.Access
}

// OnTick implements types.PluginContext: every worker VM ticks; the syncer decides which
// one polls. Refreshing the local view here too means the first request after a change
// does not pay for indexing the new snapshot. Counters counted on the request path are
// handed to the host here, so a metric lags by at most one tick.
func (p *pluginContext) OnTick() {
	if p.syncer != nil {
		p.syncer.Tick()
	}
	if p.jwks != nil {
		p.jwks.Tick()
	}
	if p.status != nil {
		p.status.Tick()
	}
	snap, _, err := p.reader.Reload()
	if err != nil && !errors.Is(err, blocklistsync.ErrNoList) {
		p.logReadError(err)
	}
	if p.fastTicks && (p.syncer == nil || snap != nil) && (p.jwks == nil || p.jwks.HasRemote()) {
		p.fastTicks = false
	}
	p.setTickPeriod()
	p.metrics.flush()
	abi.RefreshLogLevel()
	p.gc.tick()
}

// keysChanged installs a key set jwt.remote_jwks brought and forgets the tokens verified
// with the one before: a token whose key was removed stops verifying at once.
func (p *pluginContext) keysChanged(ks *jwtverify.KeySet) {
	p.verifier.setKeys(ks)
	p.cache = newTokenCache(p.cfg.Cache.MaxEntries)
}

// setTickPeriod sets the period the syncer and the status lists want now: fast until the first
// list, and while a status list a token named is on its way; at most metricsFlushTick.
func (p *pluginContext) setTickPeriod() {
	tick := metricsFlushTick
	if p.syncer != nil {
		tick = min(tick, p.syncer.TickPeriod())
		if p.fastTicks {
			tick = min(tick, startupTick)
		}
	}
	if p.jwks != nil {
		tick = min(tick, p.jwks.TickPeriod())
		if p.fastTicks {
			tick = min(tick, startupTick)
		}
	}
	if p.status != nil {
		tick = min(tick, p.status.TickPeriod())
	}
	if tick == p.tick {
		return
	}
	if err := abi.SetTickPeriodMilliSeconds(uint32(tick.Milliseconds())); err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: set tick period: "+err.Error())
		return
	}
	p.tick = tick
}

const (
	// listRecheck bounds how stale a request's view of the list may be.
	listRecheck = 100 * time.Millisecond
	// startupTick is the tick period until the first list is held.
	startupTick = 100 * time.Millisecond
	// metricsFlushTick bounds how long a counted request waits to show in the host's metrics.
	metricsFlushTick = time.Second
)

// NewHttpContext implements types.PluginContext. Contexts of finished streams are reused: a
// request allocates nothing.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		return h
	}
	return &httpContext{plugin: p}
}

// httpContext implements types.HttpContext: one per request.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
	// waitBody is set while the request is held for its body (the json location).
	waitBody bool
}

// Release implements abi.Releaser: the host deleted the stream.
func (h *httpContext) Release() {
	p := h.plugin
	*h = httpContext{plugin: p}
	if len(p.free) < maxFreeContexts {
		p.free = append(p.free, h)
	}
}

// maxFreeContexts bounds the contexts kept for reuse: as many as requests a worker has had in
// flight at once, up to this.
const maxFreeContexts = 4096

// OnHttpRequestHeaders implements types.HttpContext. A request whose body may hold a token
// (the json location) is held until the body has arrived; a revoked token in its headers is
// answered at once.
func (h *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	p := h.plugin
	probe(ptStart)
	headers, err := abi.GetHTTPRequestHeaders()
	probe(ptHeaders)
	if err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: read request headers: "+err.Error())
		return h.respond(&p.replies.internal)
	}
	if !endOfStream && p.scanner.WantsBody(headers) {
		if d := p.decide(headers, nil, false); !d.allow {
			return h.respond(d)
		}
		h.waitBody = true
		return types.ActionPause
	}
	d := p.decide(headers, nil, true)
	probe(ptDecided)
	a := h.respondTo(d, headers)
	probe(ptResponded)
	probeHot(h, headers)
	probeEnd()
	return a
}

// OnHttpRequestBody implements types.HttpContext: Pause buffers the body in the host until
// its end, where the request is decided with it.
func (h *httpContext) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	if !h.waitBody {
		return types.ActionContinue
	}
	if bodySize > h.plugin.scanner.MaxBodyBytes() {
		h.waitBody = false
		h.plugin.metrics.tooLarge++
		return h.respond(&h.plugin.replies.bodyTooLarge)
	}
	if !endOfStream {
		return types.ActionPause
	}
	return h.decideWithBody(bodySize)
}

// OnHttpRequestTrailers implements types.HttpContext: trailers end a request whose body was
// being held.
func (h *httpContext) OnHttpRequestTrailers(int) types.Action {
	if !h.waitBody {
		return types.ActionContinue
	}
	return h.decideWithBody(h.plugin.scanner.MaxBodyBytes())
}

func (h *httpContext) decideWithBody(size int) types.Action {
	h.waitBody = false
	p := h.plugin
	body, err := abi.GetHTTPRequestBody(0, size)
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		abi.Log(abi.LogLevelError, "jtiguard: read request body: "+err.Error())
		return h.respond(&p.replies.internal)
	}
	if body == nil {
		body = []byte{}
	}
	headers, err := abi.GetHTTPRequestHeaders()
	if err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: read request headers: "+err.Error())
		return h.respond(&p.replies.internal)
	}
	return h.respondTo(p.decide(headers, body, true), headers)
}

// respondTo carries out a final decision on a request whose headers are headers: one let
// through goes upstream with jwt.claims_to_headers applied.
func (h *httpContext) respondTo(d *decision, headers [][2]string) types.Action {
	p := h.plugin
	if d.allow && len(p.cfg.JWT.ClaimsToHeaders) > 0 {
		kept := *d // forwardClaims makes host calls: see respond
		if err := p.forwardClaims(kept.forward, headers); err != nil {
			abi.Log(abi.LogLevelError, "jtiguard: set claims_to_headers: "+err.Error())
			return h.respond(&p.replies.internal)
		}
		return h.respond(&kept)
	}
	return h.respond(d)
}

// respond carries out a decision. What it says is read before any host call: d may be p.out,
// which a callback run inside a host call would make again (Envoy runs none there).
func (h *httpContext) respond(d *decision) types.Action {
	allow, status, details, body := d.allow, d.status, d.details, d.body
	if h.plugin.cfg.DecisionProperty != "" {
		h.plugin.recordDecision(details)
	}
	if allow {
		return types.ActionContinue
	}
	if err := abi.SendHTTPResponse(status, details, jsonHeaders, body); err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: send local response: "+err.Error())
	}
	return types.ActionPause
}

var jsonHeaders = abi.EncodeHeaders([][2]string{{"content-type", "application/json"}})

func (p *pluginContext) logReadError(err error) {
	if now := p.now(); now.Sub(p.lastReadErr) >= time.Minute {
		p.lastReadErr = now
		abi.Log(abi.LogLevelError, "jtiguard: cannot use the shared revocation list, keeping the last good one: "+err.Error())
	}
}
