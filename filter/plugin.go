// Package filter is the HTTP filter: it finds the JWT in a request, validates it, and rejects
// it when its jti (or its subject's cutoff) is on the blocklist that blocklistsync keeps in
// shared data. It is written to the proxy-wasm-go-sdk's context interfaces and reaches the
// host only through internal/abi.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/internal/abi"
)

// NewVMContext returns the plugin's VM context, reading the wall clock.
func NewVMContext() types.VMContext { return newVMContext(time.Now) }

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
func (hostStore) SetSharedData(key string, v []byte, cas uint32) error {
	return abi.SetSharedData(key, v, cas)
}

// pluginContext implements types.PluginContext: one per worker VM and plugin configuration.
type pluginContext struct {
	types.DefaultPluginContext
	id  uint32
	now func() time.Time

	cfg      *Config
	verifier *verifier
	cache    *tokenCache
	reader   *blocklistsync.Reader
	syncer   *blocklistsync.Syncer
	metrics  *metrics
	bodies   fixedBodies
	// fastTicks is true until the first list is seen: ticks then come every startupTick, so
	// the first poll does not wait a whole tick period.
	fastTicks bool
	// lastReadErr throttles logging of a broken shared list to once a minute per VM.
	lastReadErr time.Time
}

// fixedBodies are the replies whose message does not depend on the request.
type fixedBodies struct{ revoked, expired, unavailable []byte }

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
	p.verifier = newVerifier(cfg, p.now)
	p.cache = newTokenCache(cfg.Cache.MaxEntries)
	keys := blocklistsync.KeysFor(cfg.Prefix)
	p.reader = blocklistsync.NewReader(hostStore{}, keys, blocklistsync.ReaderOptions{KeyedByIssuer: cfg.KeyedByIssuer()})
	p.metrics = newMetrics(cfg.Prefix)
	r := &cfg.Responses
	p.bodies = fixedBodies{
		revoked:     jsonMessage(r.MessageKey, r.Revoked.Message),
		expired:     jsonMessage(r.MessageKey, r.Expired.Message),
		unavailable: jsonMessage(r.MessageKey, r.Unavailable.Message),
	}
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
		})
		// No poll and no lease here: Envoy also runs this callback on a "configuration canary",
		// a VM it kills right after, which would hold the lease for a whole lease_ttl. Worker VMs
		// tick, so the first poll happens on the first tick, soon after.
		p.fastTicks = true
		if err := abi.SetTickPeriodMilliSeconds(uint32(min(startupTick, p.syncer.TickPeriod()).Milliseconds())); err != nil {
			abi.Log(abi.LogLevelCritical, "jtiguard: set tick period: "+err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	abi.Log(abi.LogLevelInfo, fmt.Sprintf("jtiguard: started (prefix %q, locations %v, fail_mode %s, sync cluster %q)",
		cfg.Prefix, cfg.Token.Locations, cfg.FailMode, cfg.Sync.Cluster))
	return types.OnPluginStartStatusOK
}

// OnTick implements types.PluginContext: every worker VM ticks; the syncer decides which
// one polls. Refreshing the local view here too means the first request after a change
// does not pay for indexing the new snapshot.
func (p *pluginContext) OnTick() {
	if p.syncer != nil {
		p.syncer.Tick()
	}
	snap, _, err := p.reader.Refresh()
	if err != nil && !errors.Is(err, blocklistsync.ErrNoList) {
		p.logReadError(err)
	}
	if p.fastTicks && snap != nil {
		p.fastTicks = false
		if err := abi.SetTickPeriodMilliSeconds(uint32(p.syncer.TickPeriod().Milliseconds())); err != nil {
			abi.Log(abi.LogLevelError, "jtiguard: set tick period: "+err.Error())
		}
	}
}

// startupTick is the tick period until the first list is held.
const startupTick = 100 * time.Millisecond

// NewHttpContext implements types.PluginContext.
func (p *pluginContext) NewHttpContext(contextID uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

// httpContext implements types.HttpContext: one per request.
type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

// OnHttpRequestHeaders implements types.HttpContext.
func (h *httpContext) OnHttpRequestHeaders(numHeaders int, endOfStream bool) types.Action {
	headers, err := abi.GetHTTPRequestHeaders()
	if err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: read request headers: "+err.Error())
		headers = nil
	}
	d := h.plugin.decide(headers)
	if d.allow {
		return types.ActionContinue
	}
	if err := abi.SendHTTPResponse(d.status, jsonHeaders, d.body); err != nil {
		abi.Log(abi.LogLevelError, "jtiguard: send local response: "+err.Error())
	}
	return types.ActionPause
}

var jsonHeaders = [][2]string{{"content-type", "application/json"}}

// decision is the filter's answer for one request.
type decision struct {
	allow  bool
	status uint32
	body   []byte
}

var allow = decision{allow: true}

// decide runs the whole check on a request's headers. It is the request path: no host call
// but the shared-data read of the generation record, and no allocation on a cache hit beyond
// that read.
func (p *pluginContext) decide(headers [][2]string) decision {
	injectFault(headers)
	cfg := p.cfg
	m := p.metrics
	var token string
	if tu := cfg.JWT.TrustUpstream; tu != nil {
		if token = headerValue(headers, tu.headerKey); token == "" {
			m.missing.Increment(1)
			if cfg.MissingToken == PolicyAllow {
				return allow
			}
			return p.reply(cfg.Responses.Missing, fmt.Sprintf("Missing %s Header", tu.PayloadHeader))
		}
	} else {
		ex := extractToken(&cfg.Token, headers)
		switch {
		case ex.bad != "":
			m.invalid.Increment(1)
			return p.invalid(ex.bad)
		case ex.token == "":
			m.missing.Increment(1)
			if cfg.MissingToken == PolicyAllow {
				return allow
			}
			return p.reply(cfg.Responses.Missing, ex.missingMessage(&cfg.Token))
		}
		token = ex.token
	}
	m.checked.Increment(1)
	if len(token) > cfg.Token.MaxBytes {
		m.invalid.Increment(1)
		return p.invalid("Token is too large")
	}

	now := p.now()
	nowUnix := now.Unix()
	snap, freshAt, err := p.reader.Refresh()
	if err != nil && !errors.Is(err, blocklistsync.ErrNoList) {
		p.logReadError(err)
	}
	info, hit := p.cache.get(token, nowUnix)
	if hit {
		m.cacheHits.Increment(1)
	} else {
		var rej *rejection
		if cfg.JWT.TrustUpstream != nil {
			info, rej = p.verifier.verifyPayload(token)
		} else {
			info, rej = p.verifier.verify(token)
		}
		if rej != nil {
			m.invalid.Increment(1)
			if rej.kind == rejectExpired {
				if cfg.InvalidToken == PolicyAllow {
					return allow
				}
				return decision{status: cfg.Responses.Expired.Status, body: p.bodies.expired}
			}
			return p.invalid(rej.message)
		}
		if snap != nil {
			info.setKeys(snap.Hasher(), p.verifier.byIssuer)
		}
		p.cache.put(token, info, nowUnix)
	}

	if snap == nil || (cfg.MaxStaleness > 0 && now.Sub(freshAt) > cfg.MaxStaleness.D()) {
		if cfg.FailMode == FailOpen {
			m.failedOpen.Increment(1)
			return allow
		}
		m.failedClosed.Increment(1)
		return decision{status: cfg.Responses.Unavailable.Status, body: p.bodies.unavailable}
	}
	if h := snap.Hasher(); info.hasher != h {
		info.setKeys(h, p.verifier.byIssuer) // a list with a new hash key: this request's copy only
	}
	if revoked(snap, &info, clampUnix(nowUnix-p.verifier.leeway)) {
		m.revoked.Increment(1)
		abi.Log(abi.LogLevelDebug, fmt.Sprintf("jtiguard: revoked token jti=%q", info.jti))
		return decision{status: cfg.Responses.Revoked.Status, body: p.bodies.revoked}
	}
	m.allowed.Increment(1)
	return allow
}

// revoked checks the token's own entry and its subject's cutoff. notBefore is now minus the
// leeway: an entry counts for as long as its token could still be accepted.
func revoked(snap *blocklistsync.Snapshot, info *tokenInfo, notBefore uint32) bool {
	if snap.Revoked(info.tokenKey, notBefore) || info.anyKey != 0 && snap.Revoked(info.anyKey, notBefore) {
		return true
	}
	for _, key := range [2]uint64{info.subKey, info.anySubKey} {
		if key == 0 {
			continue
		}
		if before, ok := snap.CutoffFor(key, notBefore); ok && (!info.hasIat || info.iat < before) {
			return true
		}
	}
	return false
}

// invalid answers a token that failed validation, unless another filter owns authentication.
func (p *pluginContext) invalid(message string) decision {
	if p.cfg.InvalidToken == PolicyAllow {
		return allow
	}
	return p.reply(p.cfg.Responses.Invalid, message)
}

// reply is a local JSON reply; a configured message replaces the explanation.
func (p *pluginContext) reply(r Response, message string) decision {
	if r.Message != "" {
		message = r.Message
	}
	return decision{status: r.Status, body: jsonMessage(p.cfg.Responses.MessageKey, message)}
}

func (p *pluginContext) logReadError(err error) {
	if now := p.now(); now.Sub(p.lastReadErr) >= time.Minute {
		p.lastReadErr = now
		abi.Log(abi.LogLevelError, "jtiguard: cannot use the shared revocation list, keeping the last good one: "+err.Error())
	}
}

func headerValue(headers [][2]string, name string) string {
	for _, h := range headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// jsonMessage builds {key: message} as flask's jsonify does: no HTML escaping of <, > or &.
func jsonMessage(key, message string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]string{key: message})
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
