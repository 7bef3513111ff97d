// Package istio_test checks the Istio manifests in this directory against istio.io/api's generated types.
// istio.io/api ships no Validate methods (Istio validates in istiod and in the CRDs' CEL rules), so the rules
// that matter here are restated from the CRD annotations in wasm.proto and service_entry.proto.
package istio_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	networkingv1 "istio.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/jtiguard/jtiguard/deploy"
)

const (
	wasmPluginFile   = "wasmplugin.yaml"
	serviceEntryFile = "serviceentry.yaml"
	examplePlugin    = "../../docs/plugin-config.example.json"
)

// outboundCluster is the name Istio gives the outbound cluster of a service port; a proxy-wasm callout
// must use it verbatim.
func outboundCluster(port uint32, host string) string { return deploy.IstioCluster(int(port), host) }

// manifest is a Kubernetes object whose spec is left raw for protojson.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

// load reads a single-object manifest, checks its type, and decodes spec strictly into dst (an unknown or
// misspelt field fails, as it would against the CRD's structural schema).
func load(t *testing.T, path, apiVersion, kind string, dst proto.Message) manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.UnmarshalStrict(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if m.APIVersion != apiVersion || m.Kind != kind {
		t.Fatalf("%s: apiVersion/kind = %q/%q, want %q/%q", path, m.APIVersion, m.Kind, apiVersion, kind)
	}
	if m.Metadata.Name == "" || m.Metadata.Namespace == "" {
		t.Errorf("%s: metadata.name and metadata.namespace must be set, have %q/%q", path, m.Metadata.Name, m.Metadata.Namespace)
	}
	if err := protojson.Unmarshal(m.Spec, dst); err != nil {
		t.Fatalf("%s: spec: %v", path, err)
	}
	return m
}

func TestWasmPlugin(t *testing.T) {
	var wp extensionsv1alpha1.WasmPlugin
	load(t, wasmPluginFile, "extensions.istio.io/v1alpha1", "WasmPlugin", &wp)

	for _, err := range validateWasmPlugin(&wp) {
		t.Error(err)
	}

	// Project choices, not Istio rules.
	checks := []struct {
		field     string
		got, want any
	}{
		{"phase", wp.GetPhase(), extensionsv1alpha1.PluginPhase_AUTHN},
		{"failStrategy", wp.GetFailStrategy(), extensionsv1alpha1.FailStrategy_FAIL_CLOSE},
		{"type", wp.GetType(), extensionsv1alpha1.PluginType_HTTP},
		{"url scheme", urlScheme(wp.GetUrl()), "oci"},
		{"vmConfig.env GOGC", envValue(&wp, "GOGC"), "50"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
	if len(wp.GetSelector().GetMatchLabels()) == 0 {
		t.Error("selector.matchLabels is empty: the plugin would apply to every workload of the namespace")
	}
}

// validateWasmPlugin restates the CRD's rules for the fields this repository sets.
func validateWasmPlugin(wp *extensionsv1alpha1.WasmPlugin) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	targets := 0
	if wp.GetSelector() != nil {
		targets++
	}
	if wp.GetTargetRef() != nil {
		targets++
	}
	if len(wp.GetTargetRefs()) > 0 {
		targets++
	}
	if targets > 1 {
		bad("only one of targetRefs or selector can be set")
	}
	switch s := urlScheme(wp.GetUrl()); {
	case wp.GetUrl() == "":
		bad("url is required")
	case s != "oci" && s != "file" && s != "http" && s != "https":
		bad("url %q: scheme must be one of oci, file, http, https", wp.GetUrl())
	}
	if h := wp.GetSha256(); h != "" && !regexp.MustCompile(`^[a-f0-9]{64}$`).MatchString(h) {
		bad("sha256 %q: want 64 lowercase hex digits", h)
	}
	if n := len(wp.GetPluginName()); n > 256 {
		bad("pluginName: %d characters, at most 256", n)
	}
	seen := map[string]bool{}
	for i, e := range wp.GetVmConfig().GetEnv() {
		switch {
		case e.GetName() == "" || len(e.GetName()) > 256:
			bad("vmConfig.env[%d].name %q: want 1..256 characters", i, e.GetName())
		case seen[e.GetName()]:
			bad("vmConfig.env[%d].name %q: duplicate", i, e.GetName())
		case e.GetValueFrom() == extensionsv1alpha1.EnvValueSource_HOST && e.GetValue() != "":
			bad("vmConfig.env[%d] %q: value may only be set when valueFrom is INLINE", i, e.GetName())
		}
		seen[e.GetName()] = true
	}
	if wp.GetPluginConfig() == nil {
		bad("pluginConfig is required by jtiguard")
	}
	return errs
}

// TestWasmPluginConfig checks the pluginConfig Istio will hand the module (the Struct rendered as JSON, as
// istiod does) against docs/plugin-config.example.json: same keys with the same JSON kinds, so a key
// renamed in one place or a YAML 1.1 surprise (an unquoted on/off/yes/no becomes a bool) is caught; and a
// sync target that is the Istio outbound cluster of the revocation source.
func TestWasmPluginConfig(t *testing.T) {
	var wp extensionsv1alpha1.WasmPlugin
	load(t, wasmPluginFile, "extensions.istio.io/v1alpha1", "WasmPlugin", &wp)
	js, err := protojson.Marshal(wp.GetPluginConfig())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(examplePlugin)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}

	if g, w := shape(got), shape(want); !reflect.DeepEqual(g, w) {
		for _, k := range keysOf(w) {
			if g[k] != w[k] {
				t.Errorf("pluginConfig %q: JSON kind %q, want %q as in %s", k, g[k], w[k], examplePlugin)
			}
		}
		for _, k := range keysOf(g) {
			if _, ok := w[k]; !ok {
				t.Errorf("pluginConfig %q: not in %s", k, examplePlugin)
			}
		}
	}

	sync, _ := got["sync"].(map[string]any)
	tests := []struct{ key, want string }{
		{"cluster", deploy.IstioSourceCluster()},
		{"authority", deploy.SourceFQDN},
	}
	for _, tt := range tests {
		if sync[tt.key] != tt.want {
			t.Errorf("pluginConfig.sync.%s = %v, want %q", tt.key, sync[tt.key], tt.want)
		}
	}
}

// shape flattens a decoded JSON object to path → JSON kind. Array elements share the path "[]", so lists
// of different lengths have the same shape.
func shape(v any) map[string]string {
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			out[path] = "object"
			for k, c := range x {
				walk(strings.TrimPrefix(path+"."+k, "."), c)
			}
		case []any:
			out[path] = "array"
			for _, c := range x {
				walk(path+"[]", c)
			}
		case string:
			out[path] = "string"
		case float64:
			out[path] = "number"
		case bool:
			out[path] = "bool"
		case nil:
			out[path] = "null"
		}
	}
	walk("", v)
	return out
}

func keysOf(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestServiceEntry checks the optional entry for an out-of-mesh revocation source, including that the
// cluster name its header comment tells users to put in sync.cluster is the one Istio will generate.
func TestServiceEntry(t *testing.T) {
	var se networkingv1.ServiceEntry
	load(t, serviceEntryFile, "networking.istio.io/v1", "ServiceEntry", &se)

	for _, err := range validateServiceEntry(&se) {
		t.Error(err)
	}
	if se.GetLocation() != networkingv1.ServiceEntry_MESH_EXTERNAL {
		t.Errorf("location = %v, want MESH_EXTERNAL: this entry exists for a source outside the mesh", se.GetLocation())
	}
	if len(se.GetHosts()) != 1 || len(se.GetPorts()) != 1 {
		t.Fatalf("want one host and one port, have hosts %v, %d ports", se.GetHosts(), len(se.GetPorts()))
	}
	port := se.GetPorts()[0]
	if p := strings.ToUpper(port.GetProtocol()); p != "HTTP" {
		t.Errorf("ports[0].protocol = %q, want HTTP: callouts are plain HTTP requests", port.GetProtocol())
	}
	raw, err := os.ReadFile(serviceEntryFile)
	if err != nil {
		t.Fatal(err)
	}
	cluster := outboundCluster(port.GetNumber(), se.GetHosts()[0])
	if !strings.Contains(string(raw), strconv.Quote(cluster)) {
		t.Errorf("%s: the comment should tell users to set sync.cluster to %q", serviceEntryFile, cluster)
	}
}

// validateServiceEntry restates the CRD's rules for ServiceEntry.
func validateServiceEntry(se *networkingv1.ServiceEntry) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(se.GetHosts()) == 0 {
		bad("hosts: at least one is required")
	}
	for i, h := range se.GetHosts() {
		if h == "" || strings.ContainsAny(h, "/:| ") {
			bad("hosts[%d] %q: want a DNS name", i, h)
		}
	}
	if len(se.GetPorts()) == 0 {
		bad("ports: at least one is required for a callout target")
	}
	numbers := map[uint32]bool{}
	for i, p := range se.GetPorts() {
		if p.GetNumber() == 0 || p.GetNumber() > 65535 {
			bad("ports[%d].number %d: must be between 1-65535", i, p.GetNumber())
		}
		if numbers[p.GetNumber()] {
			bad("ports[%d].number %d: port number cannot be duplicated", i, p.GetNumber())
		}
		numbers[p.GetNumber()] = true
		if p.GetName() == "" {
			bad("ports[%d].name is required", i)
		}
	}
	if se.GetWorkloadSelector() != nil && len(se.GetEndpoints()) > 0 {
		bad("only one of workloadSelector or endpoints can be set")
	}
	switch se.GetResolution() {
	case networkingv1.ServiceEntry_NONE:
		if len(se.GetEndpoints()) > 0 {
			bad("resolution NONE cannot set endpoints")
		}
	case networkingv1.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.GetEndpoints()) > 1 {
			bad("resolution DNS_ROUND_ROBIN cannot have multiple endpoints")
		}
	}
	return errs
}

func urlScheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

func envValue(wp *extensionsv1alpha1.WasmPlugin, name string) string {
	for _, e := range wp.GetVmConfig().GetEnv() {
		if e.GetName() == name {
			return e.GetValue()
		}
	}
	return ""
}
