// Package envoyconfig loads an Envoy static bootstrap (such as the repository's envoy.yaml), checks it with
// Envoy's own generated API types and validation rules, and extracts the few facts a local stand-in proxy
// needs to host jtiguard the way Envoy would: where to listen, which wasm module to load with which plugin
// configuration, where the route sends traffic and where each cluster lives.
//
// Parsing with go-control-plane instead of a hand-written struct means a misspelt field, a wrong enum or an
// unknown typed_config is rejected here exactly as Envoy would reject it, without needing an Envoy binary.
// The package deliberately understands only the shape jtiguard's demo uses (one listener, one inline route,
// static clusters with inline endpoints); anything richer is reported as ErrUnsupported rather than
// silently approximated.
package envoyconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// The named imports above register the Any payloads this package understands (HttpConnectionManager,
// the wasm filter, the router, the per-route FilterConfig; StringValue comes with wrapperspb). protojson resolves "@type" through the
// global registry, so a typed_config of any other extension fails to parse with ErrSyntax: the stand-in
// proxy could not honour it anyway.

// Sentinel errors. Every error returned by Parse and Load wraps exactly one of them (test with errors.Is);
// the message names the offending field and quotes the offending value.
var (
	// ErrSyntax: the file is not YAML, or not a Bootstrap (unknown field, wrong type, unresolvable @type).
	ErrSyntax = errors.New("envoyconfig: not a valid Envoy v3 bootstrap")
	// ErrInvalid: the bootstrap parses but breaks Envoy's validation rules (protoc-gen-validate) or a
	// rule Envoy enforces at start-up, such as unique cluster names.
	ErrInvalid = errors.New("envoyconfig: invalid Envoy configuration")
	// ErrUnsupported: valid for Envoy, but beyond what the stand-in proxy models.
	ErrUnsupported = errors.New("envoyconfig: unsupported configuration")
	// ErrNoWasmFilter: the HTTP filter chain has no enabled envoy.filters.http.wasm filter.
	ErrNoWasmFilter = errors.New("envoyconfig: no wasm HTTP filter")
	// ErrRouterNotLast: Envoy requires the router to terminate the HTTP filter chain.
	ErrRouterNotLast = errors.New("envoyconfig: router is not the last HTTP filter")
	// ErrConfigurationType: the plugin configuration is not a google.protobuf.StringValue.
	ErrConfigurationType = errors.New("envoyconfig: plugin configuration is not a StringValue")
	// ErrUnknownCluster: a route or the plugin's sync.cluster names a cluster that is not defined.
	ErrUnknownCluster = errors.New("envoyconfig: unknown cluster")
	// ErrNoEndpoint: a cluster has no inline endpoint with a socket address and port.
	ErrNoEndpoint = errors.New("envoyconfig: cluster has no usable endpoint")
	// ErrPluginConfig: the plugin configuration is not JSON or lacks sync.cluster.
	ErrPluginConfig = errors.New("envoyconfig: bad plugin configuration")
	// ErrPerFilterConfig: a typed_per_filter_config entry names no HTTP filter of the chain, or is not
	// an envoy.config.route.v3.FilterConfig (the wasm filter has no per-route configuration of its own).
	ErrPerFilterConfig = errors.New("envoyconfig: bad typed_per_filter_config")
)

// DefaultConnectTimeout is what Envoy uses when a cluster leaves connect_timeout unset.
const DefaultConnectTimeout = 5 * time.Second

// Config is what a local stand-in proxy needs from the bootstrap, in plain Go types.
type Config struct {
	// ListenAddress is the listener's host:port, e.g. "0.0.0.0:10000".
	ListenAddress string
	// Plugin is the first enabled wasm HTTP filter of the listener's HTTP filter chain.
	Plugin Plugin
	// RouteCluster is the cluster every route forwards to (the stand-in proxy has one upstream).
	RouteCluster string
	// Routes is the inline route table in Envoy's match order (first match wins).
	Routes []Route
	// Clusters holds every static cluster by name.
	Clusters map[string]Cluster
}

// Route is one forwarding route. Exactly one of Prefix and Path is set.
type Route struct {
	Name   string
	Prefix string // match.prefix: the path starts with it
	Path   string // match.path: the path (query string removed) equals it
	// PluginDisabled: the route's (or its virtual host's) typed_per_filter_config disables the wasm
	// filter with envoy.config.route.v3.FilterConfig{disabled: true}; Envoy then leaves the filter out
	// of the chain for requests that match this route.
	PluginDisabled bool
}

// Matches reports whether a request path (with or without a query string) selects r.
func (r Route) Matches(path string) bool {
	if r.Path != "" {
		p, _, _ := strings.Cut(path, "?")
		return p == r.Path
	}
	return strings.HasPrefix(path, r.Prefix)
}

// PluginRunsFor reports whether Envoy would run the wasm filter for a request with this :path: the
// first route that matches decides; a path no route matches still passes through the filter chain
// (the router then answers 404).
func (c *Config) PluginRunsFor(path string) bool {
	for _, r := range c.Routes {
		if r.Matches(path) {
			return !r.PluginDisabled
		}
	}
	return true
}

// Plugin describes the wasm filter: which module to load and what to hand it.
type Plugin struct {
	// FilterName is the HTTP filter's name in the chain: the key typed_per_filter_config uses.
	FilterName string
	Name       string // plugin name (logging, and identification among plugins of one VM)
	RootID     string // root_id: selects the root context the module registered
	VMID       string // vm_id: also the namespace of shared data
	// Runtime is the wasm engine Envoy would use, e.g. "envoy.wasm.runtime.v8".
	Runtime string
	// WasmFile is vm_config.code.local.filename verbatim. Envoy resolves a relative path against its
	// working directory, not against the bootstrap file, so this package does not rewrite it either.
	WasmFile string
	// Configuration is the StringValue's content: the exact bytes proxy_on_configure receives.
	Configuration []byte
	// FailOpen reports whether a failed VM bypasses the filter (fail_open, or failure_policy FAIL_OPEN)
	// instead of answering 503.
	FailOpen bool
	// Env is vm_config.environment_variables.key_values: the module's environment (GOGC, GOMEMLIMIT...).
	Env map[string]string
	// HostEnvKeys lists variables Envoy copies from its own environment into the VM's when they are set.
	HostEnvKeys []string
}

// Cluster is a static upstream.
type Cluster struct {
	Name string
	// Address is host:port of the first endpoint of the first locality.
	Address string
	// ConnectTimeout is connect_timeout, or DefaultConnectTimeout when unset.
	ConnectTimeout time.Duration
}

// Load reads the bootstrap at path and returns Parse's result.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envoyconfig: reading %q: %w", path, err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("loading %q: %w", path, err)
	}
	return cfg, nil
}

// Parse parses a YAML (or JSON) Envoy v3 bootstrap, validates it and extracts a Config.
func Parse(yamlBytes []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(yamlBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: yaml: %v", ErrSyntax, err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	// ValidateAll checks the typed fields but does not look inside Any payloads; each unpacked
	// typed_config is validated separately below.
	if err := bs.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}

	clusters, err := extractClusters(bs.GetStaticResources().GetClusters())
	if err != nil {
		return nil, err
	}
	listeners := bs.GetStaticResources().GetListeners()
	if len(listeners) != 1 {
		return nil, fmt.Errorf("%w: static_resources.listeners: want exactly 1 listener, have %d", ErrUnsupported, len(listeners))
	}
	l := listeners[0]
	listenAddr, err := socketAddress(l.GetAddress(), fmt.Sprintf("listener %q address", l.GetName()))
	if err != nil {
		return nil, err
	}
	hcm, err := httpConnectionManager(l)
	if err != nil {
		return nil, err
	}
	plugin, err := extractPlugin(hcm.GetHttpFilters())
	if err != nil {
		return nil, err
	}
	routes, routeCluster, err := routeTable(hcm, clusters, plugin.FilterName)
	if err != nil {
		return nil, err
	}
	if err := checkSyncCluster(plugin, clusters); err != nil {
		return nil, err
	}
	return &Config{
		ListenAddress: listenAddr,
		Plugin:        plugin,
		RouteCluster:  routeCluster,
		Routes:        routes,
		Clusters:      clusters,
	}, nil
}

// validator is implemented by every go-control-plane message (protoc-gen-validate's ValidateAll).
type validator interface{ ValidateAll() error }

// unpack decodes an Any into dst (whose type must match) and validates it, since the enclosing message's
// ValidateAll never descends into Any payloads.
func unpack(a *anypb.Any, dst proto.Message, field string) error {
	if err := a.UnmarshalTo(dst); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSyntax, field, err)
	}
	if v, ok := dst.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, field, err)
		}
	}
	return nil
}

// typeURL is the "@type" a typed_config of message m carries.
func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

var (
	hcmTypeURL          = typeURL(&hcmv3.HttpConnectionManager{})
	wasmTypeURL         = typeURL(&wasmfilterv3.Wasm{})
	routerTypeURL       = typeURL(&routerv3.Router{})
	filterConfigTypeURL = typeURL(&routev3.FilterConfig{})
	stringValueTypeURL  = typeURL(&wrapperspb.StringValue{})
)

func extractClusters(cs []*clusterv3.Cluster) (map[string]Cluster, error) {
	out := make(map[string]Cluster, len(cs))
	for i, c := range cs {
		if _, dup := out[c.GetName()]; dup {
			// Envoy refuses to start with two clusters of one name; the validation rules cannot express it.
			return nil, fmt.Errorf("%w: static_resources.clusters[%d]: duplicate cluster name %q", ErrInvalid, i, c.GetName())
		}
		addr, err := firstEndpoint(c)
		if err != nil {
			return nil, err
		}
		timeout := DefaultConnectTimeout
		if ct := c.GetConnectTimeout(); ct != nil {
			timeout = ct.AsDuration()
		}
		out[c.GetName()] = Cluster{Name: c.GetName(), Address: addr, ConnectTimeout: timeout}
	}
	return out, nil
}

func firstEndpoint(c *clusterv3.Cluster) (string, error) {
	for _, loc := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range loc.GetLbEndpoints() {
			if ep := lb.GetEndpoint(); ep != nil {
				return socketAddress(ep.GetAddress(), fmt.Sprintf("cluster %q load_assignment endpoint", c.GetName()))
			}
		}
	}
	return "", fmt.Errorf("%w: cluster %q: load_assignment has no endpoint", ErrNoEndpoint, c.GetName())
}

// socketAddress renders a socket address with a numeric port as host:port. Named ports, pipes and
// internal addresses have no host:port form, so the stand-in proxy cannot use them.
func socketAddress(a *corev3.Address, field string) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("%w: %s: not a socket_address", ErrUnsupported, field)
	}
	if _, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); !ok {
		return "", fmt.Errorf("%w: %s: %q has no port_value", ErrUnsupported, field, sa.GetAddress())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)), nil
}

// httpConnectionManager returns the listener's HTTP connection manager, which must be the network
// filter of its single filter chain.
func httpConnectionManager(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	chains := l.GetFilterChains()
	if len(chains) != 1 {
		return nil, fmt.Errorf("%w: listener %q: want exactly 1 filter_chain, have %d", ErrUnsupported, l.GetName(), len(chains))
	}
	for i, f := range chains[0].GetFilters() {
		if f.GetTypedConfig().GetTypeUrl() != hcmTypeURL {
			continue
		}
		var hcm hcmv3.HttpConnectionManager
		if err := unpack(f.GetTypedConfig(), &hcm, fmt.Sprintf("listener %q filters[%d] %q", l.GetName(), i, f.GetName())); err != nil {
			return nil, err
		}
		return &hcm, nil
	}
	return nil, fmt.Errorf("%w: listener %q: no http_connection_manager filter", ErrUnsupported, l.GetName())
}

// routeTable reads the inline route table: forwarding routes matched by prefix or exact path, all to
// one cluster (the stand-in proxy has one upstream), with the wasm filter possibly disabled per route or
// per virtual host. Envoy itself refuses a static route to an undefined cluster (validate_clusters), so
// that is checked here too.
func routeTable(hcm *hcmv3.HttpConnectionManager, clusters map[string]Cluster, pluginFilter string) ([]Route, string, error) {
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return nil, "", fmt.Errorf("%w: http_connection_manager %q: route_config must be inline (no RDS)", ErrUnsupported, hcm.GetStatPrefix())
	}
	filterNames := map[string]bool{}
	for _, f := range hcm.GetHttpFilters() {
		filterNames[f.GetName()] = true
	}
	var routes []Route
	cluster := ""
	for _, vh := range rc.GetVirtualHosts() {
		vhField := fmt.Sprintf("route_config %q virtual_host %q", rc.GetName(), vh.GetName())
		vhDisabled, err := perFilterDisabled(vh.GetTypedPerFilterConfig(), filterNames, pluginFilter, vhField)
		if err != nil {
			return nil, "", err
		}
		for i, r := range vh.GetRoutes() {
			field := fmt.Sprintf("%s routes[%d] %q", vhField, i, r.GetName())
			action := r.GetRoute()
			if action == nil {
				return nil, "", fmt.Errorf("%w: %s: only forwarding routes are supported", ErrUnsupported, field)
			}
			if action.GetCluster() == "" {
				return nil, "", fmt.Errorf("%w: %s: route must name a single cluster", ErrUnsupported, field)
			}
			if _, ok := clusters[action.GetCluster()]; !ok {
				return nil, "", fmt.Errorf("%w: %s: route.cluster %q is not defined", ErrUnknownCluster, field, action.GetCluster())
			}
			if cluster != "" && action.GetCluster() != cluster {
				return nil, "", fmt.Errorf("%w: %s: route.cluster %q differs from %q: the stand-in proxy has one upstream", ErrUnsupported, field, action.GetCluster(), cluster)
			}
			cluster = action.GetCluster()
			m := r.GetMatch()
			if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetRuntimeFraction() != nil || m.GetGrpc() != nil ||
				m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 || (m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()) {
				return nil, "", fmt.Errorf("%w: %s: only case-sensitive prefix and path matches are modelled", ErrUnsupported, field)
			}
			rt := Route{Name: r.GetName()}
			switch m.GetPathSpecifier().(type) {
			case *routev3.RouteMatch_Prefix:
				rt.Prefix = m.GetPrefix()
			case *routev3.RouteMatch_Path:
				rt.Path = m.GetPath()
			default:
				return nil, "", fmt.Errorf("%w: %s: only prefix and path matches are modelled", ErrUnsupported, field)
			}
			disabled, err := perFilterDisabled(r.GetTypedPerFilterConfig(), filterNames, pluginFilter, field)
			if err != nil {
				return nil, "", err
			}
			// The most specific level that mentions the filter wins (route over virtual host).
			if vhDisabled != nil {
				rt.PluginDisabled = *vhDisabled
			}
			if disabled != nil {
				rt.PluginDisabled = *disabled
			}
			routes = append(routes, rt)
		}
	}
	if len(routes) == 0 {
		return nil, "", fmt.Errorf("%w: route_config %q: no route", ErrUnsupported, rc.GetName())
	}
	return routes, cluster, nil
}

// perFilterDisabled checks a typed_per_filter_config map and returns whether it disables the plugin's
// filter (nil when it does not mention it). Envoy keys the map by the HTTP filter's name; an entry
// for a name that is not in the chain is a typo that Envoy would not apply, so it is an error here.
func perFilterDisabled(m map[string]*anypb.Any, filters map[string]bool, pluginFilter, field string) (*bool, error) {
	var out *bool
	for name, a := range m {
		f := fmt.Sprintf("%s typed_per_filter_config %q", field, name)
		if !filters[name] {
			return nil, fmt.Errorf("%w: %s: no HTTP filter of that name in the chain", ErrPerFilterConfig, f)
		}
		if a.GetTypeUrl() != filterConfigTypeURL {
			return nil, fmt.Errorf("%w: %s: type %q, want %s", ErrPerFilterConfig, f, a.GetTypeUrl(), filterConfigTypeURL)
		}
		var fc routev3.FilterConfig
		if err := unpack(a, &fc, f); err != nil {
			return nil, err
		}
		if fc.GetConfig() != nil && !fc.GetDisabled() {
			return nil, fmt.Errorf("%w: %s: a per-route config of its own is not supported; only disabled: true|false", ErrPerFilterConfig, f)
		}
		if name == pluginFilter {
			d := fc.GetDisabled()
			out = &d
		}
	}
	return out, nil
}

// extractPlugin finds the first enabled wasm filter and checks the router terminates the chain. Filters
// are recognised by their typed_config type, as Envoy does, not by their free-form name.
func extractPlugin(filters []*hcmv3.HttpFilter) (Plugin, error) {
	if n := len(filters); n == 0 || filters[n-1].GetTypedConfig().GetTypeUrl() != routerTypeURL {
		last := ""
		if n > 0 {
			last = filters[n-1].GetName()
		}
		return Plugin{}, fmt.Errorf("%w: http_filters: last filter is %q, want %s", ErrRouterNotLast, last, routerTypeURL)
	}
	for i, f := range filters {
		if f.GetTypedConfig().GetTypeUrl() != routerTypeURL {
			continue
		}
		field := fmt.Sprintf("http_filters[%d] %q", i, f.GetName())
		if i != len(filters)-1 {
			return Plugin{}, fmt.Errorf("%w: %s: a router before the end of the chain ends it early", ErrRouterNotLast, field)
		}
		if err := unpack(f.GetTypedConfig(), &routerv3.Router{}, field); err != nil {
			return Plugin{}, err
		}
	}
	for i, f := range filters {
		if f.GetTypedConfig().GetTypeUrl() != wasmTypeURL || f.GetDisabled() {
			// A disabled filter runs only where a route re-enables it; the stand-in has no such routes.
			continue
		}
		field := fmt.Sprintf("http_filters[%d] %q", i, f.GetName())
		var w wasmfilterv3.Wasm
		if err := unpack(f.GetTypedConfig(), &w, field); err != nil {
			return Plugin{}, err
		}
		p, err := pluginFrom(w.GetConfig(), field)
		p.FilterName = f.GetName()
		return p, err
	}
	return Plugin{}, fmt.Errorf("%w: http_filters: none has typed_config %s", ErrNoWasmFilter, wasmTypeURL)
}

func pluginFrom(pc *wasmv3.PluginConfig, field string) (Plugin, error) {
	vm := pc.GetVmConfig()
	if vm == nil {
		return Plugin{}, fmt.Errorf("%w: %s: config.vm_config is required", ErrUnsupported, field)
	}
	file := vm.GetCode().GetLocal().GetFilename()
	if file == "" {
		return Plugin{}, fmt.Errorf("%w: %s: vm_config.code must be local.filename (no inline or remote code)", ErrUnsupported, field)
	}
	cfg := pc.GetConfiguration()
	if cfg.GetTypeUrl() != stringValueTypeURL {
		return Plugin{}, fmt.Errorf("%w: %s: config.configuration has type %q, want %s", ErrConfigurationType, field, cfg.GetTypeUrl(), stringValueTypeURL)
	}
	var sv wrapperspb.StringValue
	if err := unpack(cfg, &sv, field+" config.configuration"); err != nil {
		return Plugin{}, err
	}
	// fail_open is deprecated in favour of failure_policy, but Envoy still honours it and older Envoys
	// know only it, so both are read.
	failOpen := pc.GetFailOpen() || pc.GetFailurePolicy() == wasmv3.FailurePolicy_FAIL_OPEN
	env := map[string]string{}
	for k, v := range vm.GetEnvironmentVariables().GetKeyValues() {
		env[k] = v
	}
	return Plugin{
		Name:          pc.GetName(),
		RootID:        pc.GetRootId(),
		VMID:          vm.GetVmId(),
		Runtime:       vm.GetRuntime(),
		WasmFile:      file,
		Configuration: []byte(sv.GetValue()),
		FailOpen:      failOpen,
		Env:           env,
		HostEnvKeys:   append([]string(nil), vm.GetEnvironmentVariables().GetHostEnvKeys()...),
	}, nil
}

// checkSyncCluster reads only sync.cluster from the plugin JSON (the plugin's full parser lives with the
// plugin) and checks that it names a defined cluster. Envoy does not check this at start-up: a callout to
// an unknown cluster fails with BAD_ARGUMENT at every sync, so the blocklist would silently go stale.
func checkSyncCluster(p Plugin, clusters map[string]Cluster) error {
	var pc struct {
		Sync struct {
			Cluster string `json:"cluster"`
		} `json:"sync"`
	}
	if err := json.Unmarshal(p.Configuration, &pc); err != nil {
		return fmt.Errorf("%w: wasm plugin %q configuration: %v", ErrPluginConfig, p.Name, err)
	}
	if pc.Sync.Cluster == "" {
		return fmt.Errorf("%w: wasm plugin %q configuration: sync.cluster is missing or empty", ErrPluginConfig, p.Name)
	}
	if _, ok := clusters[pc.Sync.Cluster]; !ok {
		return fmt.Errorf("%w: wasm plugin %q configuration: sync.cluster %q is not defined in static_resources.clusters",
			ErrUnknownCluster, p.Name, pc.Sync.Cluster)
	}
	return nil
}
