package filter

import (
	"encoding/json"
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestShippedConfigurationsParse runs the configurations we ship (the one envoy.yaml embeds,
// and the Istio WasmPlugin's pluginConfig) through the filter's own parser: a field the parser
// does not know, or a bad value, would make Envoy refuse the filter.
func TestShippedConfigurationsParse(t *testing.T) {
	example, err := os.ReadFile("../docs/plugin-config.example.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig(example, os.Getenv); err != nil {
		t.Errorf("docs/plugin-config.example.json: %v", err)
	}
	// flask's defaults: the secret comes from the VM's environment, as flask's JWT_SECRET_KEY.
	flask, err := os.ReadFile("../docs/plugin-config.flask-defaults.json")
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		return map[string]string{"JWT_SECRET_KEY": "a-secret-of-at-least-32-bytes-long!"}[k]
	}
	if cfg, err := ParseConfig(flask, env); err != nil {
		t.Errorf("docs/plugin-config.flask-defaults.json: %v", err)
	} else if cfg.MissingToken != PolicyDeny || len(cfg.Token.Locations) != 1 || cfg.Token.Locations[0] != LocationHeaders {
		t.Errorf("docs/plugin-config.flask-defaults.json is not flask's defaults: missing_token %s, locations %v", cfg.MissingToken, cfg.Token.Locations)
	}

	manifest, err := os.ReadFile("../deploy/istio/wasmplugin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var wp struct {
		Spec struct {
			PluginConfig json.RawMessage `json:"pluginConfig"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(manifest, &wp); err != nil {
		t.Fatal(err)
	}
	if len(wp.Spec.PluginConfig) == 0 {
		t.Fatal("wasmplugin.yaml has no pluginConfig")
	}
	cfg, err := ParseConfig(wp.Spec.PluginConfig, os.Getenv)
	if err != nil {
		t.Fatalf("deploy/istio/wasmplugin.yaml pluginConfig: %v", err)
	}
	if cfg.Sync.Cluster == "revocation_source" {
		t.Error("the Istio config must name Istio's outbound cluster, not the envoy.yaml one")
	}
}
