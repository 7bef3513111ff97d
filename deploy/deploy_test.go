package deploy_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/jtiguard/jtiguard/deploy"
	"github.com/jtiguard/jtiguard/envoyconfig"
	"github.com/jtiguard/jtiguard/filter"
)

const (
	k8sManifest      = "revocation-source.yaml"
	wasmPluginFile   = "istio/wasmplugin.yaml"
	serviceEntryFile = "istio/serviceentry.yaml"
	envoyYAML        = "../envoy.yaml"
)

// sourceObjects are the objects of deploy/revocation-source.yaml, decoded strictly with Kubernetes'
// own API types: a misspelt field fails, as kubectl's server-side validation would.
type sourceObjects struct {
	ns  corev1.Namespace
	dep appsv1.Deployment
	svc corev1.Service
}

func loadSourceObjects(t *testing.T) sourceObjects {
	t.Helper()
	b, err := os.ReadFile(k8sManifest)
	if err != nil {
		t.Fatal(err)
	}
	var o sourceObjects
	seen := map[string]int{}
	for i, doc := range strings.Split(string(b), "\n---\n") {
		var head struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s document %d: %v", k8sManifest, i, err)
		}
		var dst any
		switch head.Kind {
		case "Namespace":
			dst = &o.ns
		case "Deployment":
			dst = &o.dep
		case "Service":
			dst = &o.svc
		default:
			t.Fatalf("%s document %d: unexpected kind %q", k8sManifest, i, head.Kind)
		}
		seen[head.Kind]++
		if err := yaml.UnmarshalStrict([]byte(doc), dst); err != nil {
			t.Fatalf("%s document %d (%s): %v", k8sManifest, i, head.Kind, err)
		}
	}
	for _, k := range []string{"Namespace", "Deployment", "Service"} {
		if seen[k] != 1 {
			t.Fatalf("%s: %d %s objects, want 1", k8sManifest, seen[k], k)
		}
	}
	return o
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("deployment %s: %d containers, want 1", d.Name, len(cs))
	}
	return cs[0]
}

// pluginSync reads sync.cluster and sync.authority of the WasmPlugin's pluginConfig.
func pluginSync(t *testing.T) (cluster, authority string, ns string) {
	t.Helper()
	b, err := os.ReadFile(wasmPluginFile)
	if err != nil {
		t.Fatal(err)
	}
	var wp struct {
		Metadata struct{ Namespace string }
		Spec     struct {
			PluginConfig struct {
				Sync struct{ Cluster, Authority string }
			} `json:"pluginConfig"`
		}
	}
	if err := yaml.Unmarshal(b, &wp); err != nil {
		t.Fatal(err)
	}
	return wp.Spec.PluginConfig.Sync.Cluster, wp.Spec.PluginConfig.Sync.Authority, wp.Metadata.Namespace
}

// TestWasmPluginReachesTheService derives the outbound cluster from the Service as Kubernetes and
// Istio would (name, namespace, port) and requires the WasmPlugin to call exactly that: the failure
// this catches is every callout failing, and fail-closed answering 503 to every request with a token.
func TestWasmPluginReachesTheService(t *testing.T) {
	o := loadSourceObjects(t)
	if o.svc.Namespace == "" || o.dep.Namespace == "" {
		t.Fatalf("%s: Service and Deployment need an explicit namespace (have %q, %q): the FQDN in the callout names it",
			k8sManifest, o.svc.Namespace, o.dep.Namespace)
	}
	if o.svc.Namespace != o.ns.Name || o.dep.Namespace != o.ns.Name {
		t.Errorf("namespaces: Namespace %q, Deployment %q, Service %q: want one", o.ns.Name, o.dep.Namespace, o.svc.Namespace)
	}
	if len(o.svc.Spec.Ports) != 1 {
		t.Fatalf("Service %s: %d ports, want 1", o.svc.Name, len(o.svc.Spec.Ports))
	}
	fqdn := o.svc.Name + "." + o.svc.Namespace + ".svc.cluster.local"
	want := deploy.IstioCluster(int(o.svc.Spec.Ports[0].Port), fqdn)
	cluster, authority, _ := pluginSync(t)
	if cluster != want {
		t.Errorf("%s sync.cluster = %q; the Service in %s gives %q", wasmPluginFile, cluster, k8sManifest, want)
	}
	if authority != fqdn {
		t.Errorf("%s sync.authority = %q, want the Service's host %q", wasmPluginFile, authority, fqdn)
	}
	if cluster != deploy.IstioSourceCluster() {
		t.Errorf("%s sync.cluster = %q, want deploy.IstioSourceCluster() %q", wasmPluginFile, cluster, deploy.IstioSourceCluster())
	}
	if o.svc.Name != deploy.SourceService || o.svc.Namespace != deploy.Namespace || o.svc.Spec.Ports[0].Port != deploy.SourcePort {
		t.Errorf("Service %s/%s port %d, want %s/%s port %d (deploy.go)", o.svc.Namespace, o.svc.Name, o.svc.Spec.Ports[0].Port,
			deploy.Namespace, deploy.SourceService, deploy.SourcePort)
	}
	if o.svc.Spec.Ports[0].Name != "http" && o.svc.Spec.Ports[0].AppProtocol == nil {
		t.Errorf("Service port %q: name it http (or set appProtocol) so Istio treats it as HTTP", o.svc.Spec.Ports[0].Name)
	}
}

// TestServiceReachesTheContainer: selector ↔ pod labels, targetPort ↔ the container's named port,
// which is the port --listen opens; probes and the Prometheus annotation use that port too.
func TestServiceReachesTheContainer(t *testing.T) {
	o := loadSourceObjects(t)
	pod := o.dep.Spec.Template
	for k, v := range o.svc.Spec.Selector {
		if pod.Labels[k] != v {
			t.Errorf("Service selector %s=%s does not select the pods (labels %v)", k, v, pod.Labels)
		}
	}
	for k, v := range o.dep.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match its own pod template (labels %v)", k, v, pod.Labels)
		}
	}
	c := container(t, &o.dep)
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	tp := o.svc.Spec.Ports[0].TargetPort
	target := tp.IntVal
	if tp.StrVal != "" {
		var ok bool
		if target, ok = ports[tp.StrVal]; !ok {
			t.Fatalf("Service targetPort %q names no container port (have %v)", tp.StrVal, ports)
		}
	}
	if target != deploy.SourcePort {
		t.Errorf("Service targetPort resolves to %d, want %d", target, deploy.SourcePort)
	}
	if got := listenPort(t, c.Args); got != int(target) {
		t.Errorf("container args %q listen on port %d, but the Service sends to %d", c.Args, got, target)
	}
	// Readiness waits for the store's first full read; liveness only asks whether the process
	// serves HTTP, which it does while it waits for its database or the app's table. A startup
	// probe on /readyz would restart a pod that is only waiting, so one may only use /healthz.
	probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe}
	if c.StartupProbe != nil {
		probes["startupProbe"] = c.StartupProbe
	}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", name)
			continue
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = ports[p.HTTPGet.Port.StrVal]
		}
		if port != target {
			t.Errorf("%s port %s resolves to %d, want the listen port %d", name, p.HTTPGet.Port.String(), port, target)
		}
		want := deploy.HealthPath
		if name == "readinessProbe" {
			want = deploy.ReadyPath
		}
		if p.HTTPGet.Path != want {
			t.Errorf("%s path %q, want %q", name, p.HTTPGet.Path, want)
		}
	}
	ann := pod.Annotations
	if ann["prometheus.io/port"] != strconv.Itoa(int(target)) || ann["prometheus.io/path"] != deploy.MetricsPath {
		t.Errorf("prometheus annotations %v: want port %d, path %s", ann, target, deploy.MetricsPath)
	}
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != deploy.SourceUser {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and runAsUser %d (the image's user)", sc, deploy.SourceUser)
	}
	var secretRef *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == deploy.AdminTokenEnv && e.ValueFrom != nil {
			secretRef = e.ValueFrom.SecretKeyRef
		}
	}
	if secretRef == nil || secretRef.Name != deploy.AdminTokenSecret || secretRef.Key != deploy.AdminTokenKey {
		t.Errorf("env %s: want secretKeyRef %s/%s, have %+v", deploy.AdminTokenEnv, deploy.AdminTokenSecret, deploy.AdminTokenKey, secretRef)
	}
	raw, _ := os.ReadFile(k8sManifest)
	if !strings.Contains(string(raw), "create secret generic "+deploy.AdminTokenSecret) || !strings.Contains(string(raw), "--from-literal="+deploy.AdminTokenKey+"=") ||
		!strings.Contains(string(raw), "kubectl -n "+deploy.Namespace+" create secret") {
		t.Errorf("%s: the comment's kubectl command must create secret %s with key %s in namespace %s",
			k8sManifest, deploy.AdminTokenSecret, deploy.AdminTokenKey, deploy.Namespace)
	}
}

// listenPort returns the port of the --listen argument.
func listenPort(t *testing.T, args []string) int {
	t.Helper()
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			_, port, err := net.SplitHostPort(v)
			if err != nil {
				t.Fatalf("arg %q: %v", a, err)
			}
			n, _ := strconv.Atoi(port)
			return n
		}
	}
	t.Fatalf("args %q: no --listen=…: the source's default listens on loopback only, which no probe or Service reaches", args)
	return 0
}

// TestEnvoyYAMLAgrees: envoy.yaml's clusters and ports are deploy.go's, and the external ServiceEntry
// uses the same port as the in-mesh Service.
func TestEnvoyYAMLAgrees(t *testing.T) {
	cfg, err := envoyconfig.Load(envoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		deploy.EnvoySourceCluster:   net.JoinHostPort("127.0.0.1", strconv.Itoa(deploy.SourcePort)),
		deploy.EnvoyUpstreamCluster: net.JoinHostPort("127.0.0.1", strconv.Itoa(deploy.UpstreamPort)),
	}
	for name, addr := range want {
		if got := cfg.Clusters[name].Address; got != addr {
			t.Errorf("envoy.yaml cluster %q at %q, want %q", name, got, addr)
		}
	}
	if cfg.RouteCluster != deploy.EnvoyUpstreamCluster {
		t.Errorf("envoy.yaml routes to %q, want %q", cfg.RouteCluster, deploy.EnvoyUpstreamCluster)
	}
	if _, port, _ := net.SplitHostPort(cfg.ListenAddress); port != strconv.Itoa(deploy.ListenerPort) {
		t.Errorf("envoy.yaml listener %s, want port %d", cfg.ListenAddress, deploy.ListenerPort)
	}
	var pc struct{ Sync struct{ Cluster string } }
	if err := json.Unmarshal(cfg.Plugin.Configuration, &pc); err != nil || pc.Sync.Cluster != deploy.EnvoySourceCluster {
		t.Errorf("envoy.yaml plugin sync.cluster = %q (%v), want %q", pc.Sync.Cluster, err, deploy.EnvoySourceCluster)
	}
	raw, err := os.ReadFile(envoyYAML)
	if err != nil {
		t.Fatal(err)
	}
	var boot struct {
		Admin struct {
			Address struct {
				SocketAddress struct {
					PortValue int `json:"port_value"`
				} `json:"socket_address"`
			}
		}
	}
	if err := yaml.Unmarshal(raw, &boot); err != nil || boot.Admin.Address.SocketAddress.PortValue != deploy.AdminPort {
		t.Errorf("envoy.yaml admin port %d (%v), want %d", boot.Admin.Address.SocketAddress.PortValue, err, deploy.AdminPort)
	}

	b, err := os.ReadFile(serviceEntryFile)
	if err != nil {
		t.Fatal(err)
	}
	var se struct {
		Spec struct {
			Hosts []string
			Ports []struct{ Number int }
		}
	}
	if err := yaml.Unmarshal(b, &se); err != nil || len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Number != deploy.SourcePort {
		t.Errorf("%s: want one port %d, have %+v (%v)", serviceEntryFile, deploy.SourcePort, se.Spec.Ports, err)
	}
}

// outboundRE finds Istio cluster names written anywhere.
var outboundRE = regexp.MustCompile(`outbound\|(\d+)\|\|([A-Za-z0-9.<>_-]+)`)

// TestDocsNameTheSameClusters: every outbound|…|| name in the README, the docs and the manifests is
// the in-mesh source's or the external ServiceEntry's (or the generic pattern), so no page tells a
// user to call a port that nothing listens on.
func TestDocsNameTheSameClusters(t *testing.T) {
	b, err := os.ReadFile(serviceEntryFile)
	if err != nil {
		t.Fatal(err)
	}
	var se struct {
		Spec struct {
			Hosts []string
			Ports []struct{ Number int }
		}
	}
	if err := yaml.Unmarshal(b, &se); err != nil || len(se.Spec.Hosts) != 1 || len(se.Spec.Ports) != 1 {
		t.Fatalf("%s: %v", serviceEntryFile, err)
	}
	allowed := map[string]bool{
		deploy.IstioSourceCluster():                                    true,
		deploy.IstioCluster(se.Spec.Ports[0].Number, se.Spec.Hosts[0]): true,
	}
	files, _ := filepath.Glob("../docs/*.md")
	more, _ := filepath.Glob("istio/*.yaml")
	files = append(files, "../README.md", k8sManifest)
	files = append(files, more...)
	found := 0
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range outboundRE.FindAllStringSubmatch(string(text), -1) {
			if !strings.Contains(m[0], "revocation-source") {
				continue // another service's cluster (a JWKS or status-list issuer): not ours to define
			}
			found++
			if !allowed[m[0]] {
				t.Errorf("%s names %q; the manifests define only %v", f, m[0], allowed)
			}
		}
	}
	if found == 0 {
		t.Fatal("no outbound|…|| cluster found in the docs: the scan is broken")
	}
}

// TestShippedPluginConfigsParse runs both shipped plugin configurations through the filter's own
// parser; the flask-defaults one reads its secret from JWT_SECRET_KEY in the VM's environment.
func TestShippedPluginConfigsParse(t *testing.T) {
	env := map[string]string{"JWT_SECRET_KEY": "flask-app-secret-key-at-least-32-bytes-long"}
	for _, f := range []string{"../docs/plugin-config.example.json", "../docs/plugin-config.flask-defaults.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := filter.ParseConfig(b, func(k string) string { return env[k] }); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
