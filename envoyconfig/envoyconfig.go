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
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
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
// the wasm filter, the router; StringValue comes with wrapperspb). protojson resolves "@type" through the
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
)

// DefaultConnectTimeout is what Envoy uses when a cluster leaves connect_timeout unset.
const DefaultConnectTimeout = 5 * time.Second

// Config is what a local stand-in proxy needs from the bootstrap, in plain Go types.
type Config struct {
	// ListenAddress is the listener's host:port, e.g. "0.0.0.0:10000".
	ListenAddress string
	// Plugin is the first enabled wasm HTTP filter of the listener's HTTP filter chain.
	Plugin Plugin
	// RouteCluster is the cluster the single route forwards to.
	RouteCluster string
	// Clusters holds every static cluster by name.
	Clusters map[string]Cluster
}

// Plugin describes the wasm filter: which module to load and what to hand it.
type Plugin struct {
	Name   string // plugin name (logging, and identification among plugins of one VM)
	RootID string // root_id: selects the root context the module registered
	VMID   string // vm_id: also the namespace of shared data
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
	routeCluster, err := singleRouteCluster(hcm, clusters)
	if err != nil {
		return nil, err
	}
	plugin, err := extractPlugin(hcm.GetHttpFilters())
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
	hcmTypeURL         = typeURL(&hcmv3.HttpConnectionManager{})
	wasmTypeURL        = typeURL(&wasmfilterv3.Wasm{})
	routerTypeURL      = typeURL(&routerv3.Router{})
	stringValueTypeURL = typeURL(&wrapperspb.StringValue{})
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

// singleRouteCluster returns the cluster of the one route of the inline route_config. Envoy itself
// refuses a static route to an undefined cluster (validate_clusters), so that is checked here too.
func singleRouteCluster(hcm *hcmv3.HttpConnectionManager, clusters map[string]Cluster) (string, error) {
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return "", fmt.Errorf("%w: http_connection_manager %q: route_config must be inline (no RDS)", ErrUnsupported, hcm.GetStatPrefix())
	}
	var routes []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			action := r.GetRoute()
			if action == nil {
				return "", fmt.Errorf("%w: route_config %q virtual_host %q: only forwarding routes are supported", ErrUnsupported, rc.GetName(), vh.GetName())
			}
			if action.GetCluster() == "" {
				return "", fmt.Errorf("%w: route_config %q virtual_host %q: route must name a single cluster", ErrUnsupported, rc.GetName(), vh.GetName())
			}
			routes = append(routes, action.GetCluster())
		}
	}
	if len(routes) != 1 {
		return "", fmt.Errorf("%w: route_config %q: want exactly 1 route, have %d", ErrUnsupported, rc.GetName(), len(routes))
	}
	if _, ok := clusters[routes[0]]; !ok {
		return "", fmt.Errorf("%w: route_config %q: route.cluster %q is not defined", ErrUnknownCluster, rc.GetName(), routes[0])
	}
	return routes[0], nil
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
		return pluginFrom(w.GetConfig(), field)
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
