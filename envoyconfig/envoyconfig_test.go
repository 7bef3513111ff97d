package envoyconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	repoEnvoyYAML     = "../envoy.yaml"
	examplePluginJSON = "../docs/plugin-config.example.json"
)

// TestLoadRepoConfig pins what the repository's envoy.yaml means, and that its embedded plugin JSON has not
// drifted from docs/plugin-config.example.json.
func TestLoadRepoConfig(t *testing.T) {
	got, err := Load(repoEnvoyYAML)
	if err != nil {
		t.Fatalf("Load(%q): %v", repoEnvoyYAML, err)
	}

	example, err := os.ReadFile(examplePluginJSON)
	if err != nil {
		t.Fatal(err)
	}
	if c, e := compactJSON(t, got.Plugin.Configuration), compactJSON(t, example); c != e {
		t.Errorf("plugin configuration differs from %s:\n got %s\nwant %s", examplePluginJSON, c, e)
	}

	want := &Config{
		ListenAddress: "0.0.0.0:10000",
		Plugin: Plugin{
			FilterName:    "envoy.filters.http.wasm",
			Name:          "jtiguard",
			RootID:        "jtiguard",
			VMID:          "jtiguard",
			Runtime:       "envoy.wasm.runtime.v8",
			WasmFile:      "build/jtiguard.wasm",
			Configuration: got.Plugin.Configuration, // compared above
			FailOpen:      false,
			Env:           map[string]string{"GOGC": "50"},
		},
		RouteCluster: "upstream",
		Routes: []Route{
			{Name: "healthz", Path: "/healthz", PluginDisabled: true},
			{Name: "all", Prefix: "/"},
		},
		Clusters: map[string]Cluster{
			"upstream":          {Name: "upstream", Address: "127.0.0.1:8080", ConnectTimeout: time.Second},
			"revocation_source": {Name: "revocation_source", Address: "127.0.0.1:8081", ConnectTimeout: time.Second},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%q):\n got %+v\nwant %+v", repoEnvoyYAML, got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load of a missing file: err = %v, want os.ErrNotExist", err)
	}
}

// Paths into the repo's envoy.yaml, decoded as generic JSON, used by the variants below.
const (
	hcmPath     = "static_resources.listeners.0.filter_chains.0.filters.0.typed_config"
	filtersPath = hcmPath + ".http_filters"
	pluginPath  = filtersPath + ".0.typed_config.config"
	vhostPath   = hcmPath + ".route_config.virtual_hosts.0"
	routePath   = vhostPath + ".routes.1" // the catch-all; routes.0 is /healthz with the filter disabled
	healthzPath = vhostPath + ".routes.0"
	clusterPath = "static_resources.clusters"
)

// TestParseVariants edits the repository's envoy.yaml one way at a time and checks each edit is accepted
// or rejected with the right sentinel, and that the message quotes the culprit.
func TestParseVariants(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(t *testing.T, doc map[string]any)
		wantErr error  // nil: must parse
		wantMsg string // substring of the error message
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "fail_open true is reported",
			edit: func(t *testing.T, d map[string]any) { set(t, d, pluginPath+".fail_open", true) },
			check: func(t *testing.T, c *Config) {
				if !c.Plugin.FailOpen {
					t.Error("FailOpen = false, want true")
				}
			},
		},
		{
			name: "failure_policy FAIL_OPEN is reported",
			edit: func(t *testing.T, d map[string]any) { set(t, d, pluginPath+".failure_policy", "FAIL_OPEN") },
			check: func(t *testing.T, c *Config) {
				if !c.Plugin.FailOpen {
					t.Error("FailOpen = false, want true")
				}
			},
		},
		{
			name: "connect_timeout defaults to Envoy's 5s",
			edit: func(t *testing.T, d map[string]any) { del(t, d, clusterPath+".0.connect_timeout") },
			check: func(t *testing.T, c *Config) {
				if got := c.Clusters["upstream"].ConnectTimeout; got != 5*time.Second {
					t.Errorf("ConnectTimeout = %v, want 5s", got)
				}
			},
		},
		{
			name: "filters are found by type, not by name",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, filtersPath+".0.name", "my-wasm")
				set(t, d, filtersPath+".1.name", "my-router")
				del(t, d, healthzPath+".typed_per_filter_config")
			},
			check: func(t *testing.T, c *Config) {
				if c.Plugin.Name != "jtiguard" {
					t.Errorf("Plugin.Name = %q, want jtiguard", c.Plugin.Name)
				}
			},
		},
		{
			name: "IPv6 endpoint is bracketed",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, clusterPath+".0.load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address.address", "::1")
			},
			check: func(t *testing.T, c *Config) {
				if got := c.Clusters["upstream"].Address; got != "[::1]:8080" {
					t.Errorf("Address = %q, want [::1]:8080", got)
				}
			},
		},
		{
			name:    "route to an unknown cluster",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, routePath+".route.cluster", "nowhere") },
			wantErr: ErrUnknownCluster,
			wantMsg: `"nowhere"`,
		},
		{
			name: "sync.cluster names an unknown cluster",
			edit: func(t *testing.T, d map[string]any) {
				editPluginJSON(t, d, func(p map[string]any) { set(t, p, "sync.cluster", "revocation-source") })
			},
			wantErr: ErrUnknownCluster,
			wantMsg: `sync.cluster "revocation-source"`,
		},
		{
			name: "sync.cluster missing",
			edit: func(t *testing.T, d map[string]any) {
				editPluginJSON(t, d, func(p map[string]any) { del(t, p, "sync.cluster") })
			},
			wantErr: ErrPluginConfig,
			wantMsg: "sync.cluster",
		},
		{
			name:    "plugin configuration is not JSON",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, pluginPath+".configuration.value", "prefix: yaml") },
			wantErr: ErrPluginConfig,
		},
		{
			name: "wasm filter missing",
			edit: func(t *testing.T, d map[string]any) {
				fs := get(t, d, filtersPath).([]any)
				set(t, d, filtersPath, fs[1:])
			},
			wantErr: ErrNoWasmFilter,
		},
		{
			name:    "wasm filter disabled",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, filtersPath+".0.disabled", true) },
			wantErr: ErrNoWasmFilter,
		},
		{
			name: "router before the wasm filter",
			edit: func(t *testing.T, d map[string]any) {
				fs := get(t, d, filtersPath).([]any)
				set(t, d, filtersPath, []any{fs[1], fs[0]})
			},
			wantErr: ErrRouterNotLast,
			wantMsg: `"envoy.filters.http.wasm"`,
		},
		{
			name: "router missing",
			edit: func(t *testing.T, d map[string]any) {
				fs := get(t, d, filtersPath).([]any)
				set(t, d, filtersPath, fs[:1])
			},
			wantErr: ErrRouterNotLast,
		},
		{
			name: "router twice",
			edit: func(t *testing.T, d map[string]any) {
				fs := get(t, d, filtersPath).([]any)
				set(t, d, filtersPath, []any{fs[0], fs[1], fs[1]})
			},
			wantErr: ErrRouterNotLast,
			wantMsg: "http_filters[1]",
		},
		{
			name: "configuration is a BytesValue",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, pluginPath+".configuration", map[string]any{
					"@type": "type.googleapis.com/google.protobuf.BytesValue",
					"value": "e30=", // {}
				})
			},
			wantErr: ErrConfigurationType,
			wantMsg: `"type.googleapis.com/google.protobuf.BytesValue"`,
		},
		{
			name:    "configuration missing",
			edit:    func(t *testing.T, d map[string]any) { del(t, d, pluginPath+".configuration") },
			wantErr: ErrConfigurationType,
		},
		{
			name: "wasm code is remote",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, pluginPath+".vm_config.code", map[string]any{"remote": map[string]any{
					"http_uri": map[string]any{"uri": "https://example.com/x.wasm", "cluster": "upstream", "timeout": "1s"},
					"sha256":   strings.Repeat("a", 64),
				}})
			},
			wantErr: ErrUnsupported,
		},
		{
			name:    "misspelt field",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, hcmPath+".stat_prefx", "x") },
			wantErr: ErrSyntax,
			wantMsg: "stat_prefx",
		},
		{
			name: "typed_config of an extension not linked in",
			edit: func(t *testing.T, d map[string]any) {
				fs := get(t, d, filtersPath).([]any)
				cors := map[string]any{"name": "cors", "typed_config": map[string]any{
					"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}
				set(t, d, filtersPath, []any{cors, fs[0], fs[1]})
			},
			wantErr: ErrSyntax,
		},
		{
			name:    "empty stat_prefix breaks the HCM's validation rules",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, hcmPath+".stat_prefix", "") },
			wantErr: ErrInvalid,
			wantMsg: "StatPrefix",
		},
		{
			name:    "zero connect_timeout breaks the cluster's validation rules",
			edit:    func(t *testing.T, d map[string]any) { set(t, d, clusterPath+".1.connect_timeout", "0s") },
			wantErr: ErrInvalid,
			wantMsg: "ConnectTimeout",
		},
		{
			name: "duplicate cluster name",
			edit: func(t *testing.T, d map[string]any) {
				cs := get(t, d, clusterPath).([]any)
				set(t, d, clusterPath, append(cs, cs[0]))
			},
			wantErr: ErrInvalid,
			wantMsg: `"upstream"`,
		},
		{
			name:    "cluster without endpoints",
			edit:    func(t *testing.T, d map[string]any) { del(t, d, clusterPath+".1.load_assignment") },
			wantErr: ErrNoEndpoint,
			wantMsg: `"revocation_source"`,
		},
		{
			name: "two listeners",
			edit: func(t *testing.T, d map[string]any) {
				ls := get(t, d, "static_resources.listeners").([]any)
				b, _ := json.Marshal(ls[0])
				var l2 map[string]any
				_ = json.Unmarshal(b, &l2)
				l2["name"] = "second"
				set(t, d, "static_resources.listeners", append(ls, l2))
			},
			wantErr: ErrUnsupported,
		},
		{
			name: "routes to two clusters",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, healthzPath+".route.cluster", "revocation_source")
			},
			wantErr: ErrUnsupported,
			wantMsg: `"upstream" differs from "revocation_source"`,
		},
		{
			name: "per-route key names no filter of the chain",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, filtersPath+".0.name", "jtiguard")
			},
			wantErr: ErrPerFilterConfig,
			wantMsg: `"envoy.filters.http.wasm": no HTTP filter of that name`,
		},
		{
			name: "per-route config that is not a FilterConfig",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, healthzPath+".typed_per_filter_config", map[string]any{"envoy.filters.http.wasm": map[string]any{
					"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"}})
			},
			wantErr: ErrPerFilterConfig,
		},
		{
			name: "per-route FilterConfig with a misspelt field",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, healthzPath+".typed_per_filter_config", map[string]any{"envoy.filters.http.wasm": map[string]any{
					"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disable": true}})
			},
			wantErr: ErrSyntax,
			wantMsg: "disable",
		},
		{
			name: "disabled on the virtual host, re-enabled on the route",
			edit: func(t *testing.T, d map[string]any) {
				fc := func(disabled bool) map[string]any {
					return map[string]any{"envoy.filters.http.wasm": map[string]any{
						"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": disabled}}
				}
				set(t, d, vhostPath+".typed_per_filter_config", fc(true))
				set(t, d, healthzPath+".typed_per_filter_config", fc(false))
			},
			check: func(t *testing.T, c *Config) {
				if !c.PluginRunsFor("/healthz") || c.PluginRunsFor("/api") {
					t.Errorf("routes %+v: want the filter on /healthz only", c.Routes)
				}
			},
		},
		{
			name: "regex match is beyond the stand-in",
			edit: func(t *testing.T, d map[string]any) {
				set(t, d, routePath+".match", map[string]any{"safe_regex": map[string]any{"regex": "/.*"}})
			},
			wantErr: ErrUnsupported,
		},
		{
			name: "route config from RDS",
			edit: func(t *testing.T, d map[string]any) {
				del(t, d, hcmPath+".route_config")
				set(t, d, hcmPath+".rds", map[string]any{"route_config_name": "r", "config_source": map[string]any{"ads": map[string]any{}}})
			},
			wantErr: ErrUnsupported,
		},
	}

	base, err := os.ReadFile(repoEnvoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal(base, &doc); err != nil {
				t.Fatal(err)
			}
			tt.edit(t, doc)
			in, err := json.Marshal(doc) // JSON is YAML: Parse takes it as is
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				tt.check(t, cfg)
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse: err = %v, want %v", err, tt.wantErr)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with an error: %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

// TestPluginRunsFor pins how the repository's route table decides, per path, whether jtiguard runs:
// only the exact path /healthz (query string aside) skips it.
func TestPluginRunsFor(t *testing.T) {
	cfg, err := Load(repoEnvoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/healthz":          false,
		"/healthz?probe=1":  false,
		"/healthz/":         true,
		"/healthzx":         true,
		"/healthz/../admin": true,
		"/HEALTHZ":          true,
		"/":                 true,
		"/api/orders":       true,
		"":                  true, // no route matches: the filter still runs, the router answers 404
	} {
		if got := cfg.PluginRunsFor(path); got != want {
			t.Errorf("PluginRunsFor(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestParseNotYAML covers input that never becomes a document.
func TestParseNotYAML(t *testing.T) {
	for _, in := range []string{"admin: [unclosed", "- just\n- a list\n", "static_resources: 3"} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): err = %v, want ErrSyntax", in, err)
		}
	}
}

// editPluginJSON rewrites the plugin JSON held in the wasm filter's StringValue.
func editPluginJSON(t *testing.T, doc map[string]any, edit func(map[string]any)) {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal([]byte(get(t, doc, pluginPath+".configuration.value").(string)), &p); err != nil {
		t.Fatal(err)
	}
	edit(p)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	set(t, doc, pluginPath+".configuration.value", string(b))
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return buf.String()
}

// walk follows a dotted path of map keys and list indexes and returns the container holding the last
// element, plus that element's key. It fails the test on a path that does not exist, so a variant cannot
// silently edit nothing after envoy.yaml changes shape.
func walk(t *testing.T, doc any, path string) (parent any, last string) {
	t.Helper()
	parts := strings.Split(path, ".")
	cur := doc
	for _, p := range parts[:len(parts)-1] {
		cur = child(t, cur, p, path)
	}
	return cur, parts[len(parts)-1]
}

func child(t *testing.T, cur any, key, path string) any {
	t.Helper()
	switch c := cur.(type) {
	case map[string]any:
		v, ok := c[key]
		if !ok {
			t.Fatalf("path %q: no key %q", path, key)
		}
		return v
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(c) {
			t.Fatalf("path %q: bad index %q", path, key)
		}
		return c[i]
	}
	t.Fatalf("path %q: cannot descend into %T at %q", path, cur, key)
	return nil
}

func get(t *testing.T, doc any, path string) any {
	t.Helper()
	parent, last := walk(t, doc, path)
	return child(t, parent, last, path)
}

func set(t *testing.T, doc any, path string, v any) {
	t.Helper()
	parent, last := walk(t, doc, path)
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			t.Fatalf("path %q: bad index %q", path, last)
		}
		p[i] = v
	default:
		t.Fatalf("path %q: cannot set in %T", path, parent)
	}
}

func del(t *testing.T, doc any, path string) {
	t.Helper()
	parent, last := walk(t, doc, path)
	m, ok := parent.(map[string]any)
	if !ok {
		t.Fatalf("path %q: cannot delete from %T", path, parent)
	}
	if _, ok := m[last]; !ok {
		t.Fatalf("path %q: no key %q to delete", path, last)
	}
	delete(m, last)
}

// TestFlaskDefaultsConfig puts docs/plugin-config.flask-defaults.json in place of the shipped plugin
// configuration: Envoy's types accept the bootstrap, its sync.cluster exists there, and it is flask's
// defaults (headers only, a missing token refused, the secret from JWT_SECRET_KEY).
func TestFlaskDefaultsConfig(t *testing.T) {
	b, err := os.ReadFile("../docs/plugin-config.flask-defaults.json")
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(repoEnvoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(base, &doc); err != nil {
		t.Fatal(err)
	}
	set(t, doc, pluginPath+".configuration.value", string(b))
	in, _ := json.Marshal(doc)
	cfg, err := Parse(in)
	if err != nil {
		t.Fatalf("envoy.yaml with the flask-defaults configuration: %v", err)
	}
	var pc struct {
		MissingToken string `json:"missing_token"`
		Token        struct {
			Locations []string `json:"locations"`
		} `json:"token"`
		JWT struct {
			HMACSecrets []map[string]string `json:"hmac_secrets"`
		} `json:"jwt"`
	}
	if err := json.Unmarshal(cfg.Plugin.Configuration, &pc); err != nil {
		t.Fatal(err)
	}
	if pc.MissingToken != "deny" || !reflect.DeepEqual(pc.Token.Locations, []string{"headers"}) ||
		len(pc.JWT.HMACSecrets) != 1 || pc.JWT.HMACSecrets[0]["secret_env"] != "JWT_SECRET_KEY" {
		t.Errorf("flask defaults: %+v", pc)
	}
}
