package harness

import (
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
)

// WASIGeneration selects which of Envoy's WASI surfaces the harness offers.
type WASIGeneration int

const (
	// WASIEnvoy133 is the surface of Envoy 1.33 up to proxy-wasm-cpp-host
	// 94091cd (April 2026): 18 functions, with sched_yield, poll_oneoff and
	// fd_fdstat_set_flags present but poll_oneoff answering ENOSYS (52),
	// which Go's runtime treats as fatal once its netpoller is in use.
	WASIEnvoy133 WASIGeneration = iota
	// WASICurrent is the surface after proxy-wasm-cpp-host 94091cd: the full
	// wasip1 function list (most as stubs), poll_oneoff returning 0 events.
	WASICurrent
)

func (g WASIGeneration) String() string {
	switch g {
	case WASIEnvoy133:
		return "envoy-1.33"
	case WASICurrent:
		return "current"
	}
	return fmt.Sprintf("WASIGeneration(%d)", int(g))
}

// ParseWASIGeneration maps "envoy-1.33" and "current" to a generation, so a
// test can take the choice from an environment variable.
func ParseWASIGeneration(s string) (WASIGeneration, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "envoy-1.33", "1.33":
		return WASIEnvoy133, nil
	case "current", "":
		return WASICurrent, nil
	}
	return 0, fmt.Errorf("%w: unknown wasi generation %q", ErrBadConfig, s)
}

// CalloutFailure selects how a callout that got no HTTP response (connection
// refused, reset, timeout) is delivered to proxy_on_http_call_response.
type CalloutFailure int

const (
	// CalloutFailureReset delivers 0 headers and an empty body, which is
	// what Envoy's AsyncClient onFailure path produces.
	CalloutFailureReset CalloutFailure = iota
	// CalloutFailureRouterReply delivers what Envoy's router sends when it
	// answers itself: 503 for a connection failure, 504 for a timeout, with
	// Envoy's body text. A filter must cope with both shapes.
	CalloutFailureRouterReply
)

// Config holds the harness options. It is immutable: every With* method
// returns a modified copy, so a base config can be shared between tests.
type Config struct {
	workers          int
	wasi             WASIGeneration
	env              map[string]string
	vmConfig         []byte
	pluginConfig     []byte
	pluginName       string
	rootID           string
	vmID             string
	clusters         map[string]string
	logLevel         LogLevel
	logOut           io.Writer
	failOpen         bool
	timers           bool
	sharedData       *SharedData
	properties       map[string][]byte
	cache            wazero.CompilationCache
	calloutFailure   CalloutFailure
	maxCalloutBody   int64
	memoryLimitPages uint32
	deadlines        bool
}

// NewConfig returns the defaults: 2 workers, the envoy-1.33 WASI surface
// (the strictest one a deployed Envoy may still have), log level info, real
// tick timers, fail-closed, a 256 MiB cap on callout bodies and Envoy's 1 GiB
// memory limit.
func NewConfig() Config {
	return Config{
		workers:          2,
		wasi:             WASIEnvoy133,
		pluginName:       "jtiguard",
		logLevel:         LogInfo,
		timers:           true,
		maxCalloutBody:   256 << 20,
		memoryLimitPages: 16384, // PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES = 1 GiB
	}
}

// WithWorkers sets the number of worker VMs (Envoy runs one per worker thread).
func (c Config) WithWorkers(n int) Config { c.workers = n; return c }

// WithWASI selects the WASI surface generation.
func (c Config) WithWASI(g WASIGeneration) Config { c.wasi = g; return c }

// WithEnv sets the VM's environment variables (Envoy's
// vm_config.environment_variables, Istio's vmConfig.env), e.g. GOGC.
func (c Config) WithEnv(env map[string]string) Config { c.env = maps.Clone(env); return c }

// WithVMConfig sets the VM configuration, readable as buffer type 6 during
// proxy_on_vm_start only.
func (c Config) WithVMConfig(b []byte) Config { c.vmConfig = clone(b); return c }

// WithPluginConfig sets the plugin configuration, readable as buffer type 7
// during proxy_on_configure only.
func (c Config) WithPluginConfig(b []byte) Config { c.pluginConfig = clone(b); return c }

// WithPluginName sets the plugin name (property plugin_name).
func (c Config) WithPluginName(s string) Config { c.pluginName = s; return c }

// WithRootID sets the root id (property plugin_root_id).
func (c Config) WithRootID(s string) Config { c.rootID = s; return c }

// WithVMID sets the vm_id (property plugin_vm_id); it is also the shared
// data namespace.
func (c Config) WithVMID(s string) Config { c.vmID = s; return c }

// WithClusters maps cluster names, as passed to proxy_http_call, to
// "host:port" addresses. An unknown cluster gets StatusBadArgument.
func (c Config) WithClusters(m map[string]string) Config { c.clusters = maps.Clone(m); return c }

// WithCluster adds one cluster.
func (c Config) WithCluster(name, hostport string) Config {
	c.clusters = maps.Clone(c.clusters)
	if c.clusters == nil {
		c.clusters = map[string]string{}
	}
	c.clusters[name] = hostport
	return c
}

// WithLogLevel sets the level returned by proxy_get_log_level and below which
// log lines are dropped, as Envoy's wasm logger level does.
func (c Config) WithLogLevel(l LogLevel) Config { c.logLevel = l; return c }

// WithLogOutput echoes captured log lines to w (e.g. os.Stderr, or a
// testing.T writer); nil, the default, only captures them.
func (c Config) WithLogOutput(w io.Writer) Config { c.logOut = w; return c }

// WithFailOpen makes streams on a failed VM bypass the filter (Envoy's
// fail_open / Istio's failStrategy FAIL_OPEN) instead of getting 503.
func (c Config) WithFailOpen(b bool) Config { c.failOpen = b; return c }

// WithTimers enables (default) or disables the real per-VM tick timers.
// With timers off, ticks happen only through Harness.Tick, for deterministic
// tests.
func (c Config) WithTimers(b bool) Config { c.timers = b; return c }

// WithSharedData makes the harness use s instead of a fresh store, to model
// several plugins sharing one vm_id on a proxy.
func (c Config) WithSharedData(s *SharedData) Config { c.sharedData = s; return c }

// WithProperty sets the value of a property path as the module passes it
// (segments joined with NUL, e.g. "node\x00id"). plugin_name, plugin_root_id
// and plugin_vm_id are set from the config unless overridden here.
func (c Config) WithProperty(path string, value []byte) Config {
	c.properties = maps.Clone(c.properties)
	if c.properties == nil {
		c.properties = map[string][]byte{}
	}
	c.properties[path] = clone(value)
	return c
}

// WithCompilationCache reuses compiled code across harnesses (tests compile
// the same module many times otherwise).
func (c Config) WithCompilationCache(cc wazero.CompilationCache) Config { c.cache = cc; return c }

// WithCalloutFailure selects how failed callouts are delivered.
func (c Config) WithCalloutFailure(m CalloutFailure) Config { c.calloutFailure = m; return c }

// WithMaxCalloutBody caps how much of a callout response body the harness
// reads (the module bounds it itself; this only keeps the harness safe).
func (c Config) WithMaxCalloutBody(n int64) Config { c.maxCalloutBody = n; return c }

// WithMemoryLimitPages caps each VM's linear memory in 64 KiB pages.
func (c Config) WithMemoryLimitPages(n uint32) Config { c.memoryLimitPages = n; return c }

// WithDeadlines makes a call into a VM honour its context: when the context
// ends, wazero aborts the guest and the VM fails (as a watchdog would). Off by
// default, because wazero then checks the context in every loop of the guest
// and starts a goroutine per call (nested proxy_on_memory_allocate included),
// which made the harness's timings mostly measure the harness. Envoy has no
// such deadline; turn it on only in tests that must bound a runaway guest.
func (c Config) WithDeadlines(b bool) Config { c.deadlines = b; return c }

// Settings is a Config's content as plain data, for a host that runs in
// another process (the V8 host): it reads every option from here, so the two
// hosts are configured by one value.
type Settings struct {
	Workers          int               `json:"workers"`
	WASI             string            `json:"wasi"`
	Env              map[string]string `json:"env"`
	EnvKeys          []string          `json:"env_keys"` // sorted, the order environ_get uses
	VMConfig         []byte            `json:"vm_config"`
	PluginConfig     []byte            `json:"plugin_config"`
	VMID             string            `json:"vm_id"`
	Properties       map[string][]byte `json:"properties"` // plugin_name, plugin_root_id, plugin_vm_id included
	Clusters         map[string]string `json:"clusters"`
	LogLevel         LogLevel          `json:"log_level"`
	FailOpen         bool              `json:"fail_open"`
	Timers           bool              `json:"timers"`
	CalloutFailure   string            `json:"callout_failure"` // "reset" or "router"
	MaxCalloutBody   int64             `json:"max_callout_body"`
	MemoryLimitPages uint32            `json:"memory_limit_pages"`
	Deadlines        bool              `json:"deadlines"`
	// OwnSharedData is true when WithSharedData gave a store, which a host in
	// another process cannot use.
	OwnSharedData bool `json:"-"`
	// LogOutput is WithLogOutput's writer (nil for none).
	LogOutput io.Writer `json:"-"`
}

// Settings returns the configuration as data. It validates first, so a
// host in another process refuses what New refuses.
func (c Config) Settings() (Settings, error) {
	if err := c.validate(); err != nil {
		return Settings{}, err
	}
	keys := make([]string, 0, len(c.env))
	for k := range c.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mode := "reset"
	if c.calloutFailure == CalloutFailureRouterReply {
		mode = "router"
	}
	return Settings{
		Workers: c.workers, WASI: c.wasi.String(), Env: maps.Clone(c.env), EnvKeys: keys,
		VMConfig: clone(c.vmConfig), PluginConfig: clone(c.pluginConfig), VMID: c.vmID,
		Properties: c.propertyValues(), Clusters: maps.Clone(c.clusters), LogLevel: c.logLevel,
		FailOpen: c.failOpen, Timers: c.timers, CalloutFailure: mode, MaxCalloutBody: c.maxCalloutBody,
		MemoryLimitPages: c.memoryLimitPages, Deadlines: c.deadlines,
		OwnSharedData: c.sharedData != nil, LogOutput: c.logOut,
	}, nil
}

// propertyValues is what proxy_get_property answers: the plugin's name, root
// id and vm id, then whatever WithProperty set (which wins).
func (c Config) propertyValues() map[string][]byte {
	props := map[string][]byte{
		"plugin_name":    []byte(c.pluginName),
		"plugin_root_id": []byte(c.rootID),
		"plugin_vm_id":   []byte(c.vmID),
	}
	for k, v := range c.properties {
		props[k] = clone(v)
	}
	return props
}

func (c Config) validate() error {
	if c.workers < 1 {
		return fmt.Errorf("%w: workers = %d; want >= 1", ErrBadConfig, c.workers)
	}
	if c.wasi != WASIEnvoy133 && c.wasi != WASICurrent {
		return fmt.Errorf("%w: %v", ErrBadConfig, c.wasi)
	}
	if c.logLevel > LogCritical {
		return fmt.Errorf("%w: log level %d", ErrBadConfig, c.logLevel)
	}
	if c.maxCalloutBody < 0 {
		return fmt.Errorf("%w: max callout body %d", ErrBadConfig, c.maxCalloutBody)
	}
	if c.memoryLimitPages == 0 || c.memoryLimitPages > 65536 {
		return fmt.Errorf("%w: memory limit pages %d", ErrBadConfig, c.memoryLimitPages)
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
