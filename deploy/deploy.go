// Package deploy is the one place that names what envoy.yaml, the Kubernetes and Istio manifests
// under deploy/, the OCI image tool and the docs must agree on: the revocation source's namespace,
// service name and port, Envoy's cluster names, the source's Secret and its keys, the probe paths.
//
// Nothing reads these at run time from here; the files carry their own copies, because Envoy, Istio
// and kubectl read the files, not Go. The tests in this directory read every one of those files and
// fail on any drift, so a port changed in one place cannot silently break a callout elsewhere (a
// WasmPlugin calling port 8081 of a Service that listens on 80 fails every sync, and fail-closed
// then answers 503 to every request with a token).
package deploy

import "strconv"

const (
	// Namespace of the revocation source in Kubernetes.
	Namespace = "jtiguard"
	// SourceService is the revocation source's Service, Deployment and container name.
	SourceService = "revocation-source"
	// SourcePort is the revocation source's port everywhere: its --listen, the container port, the
	// Service port, the ServiceEntry port, envoy.yaml's revocation_source endpoint and the source's
	// default listen address (127.0.0.1:8081).
	SourcePort = 8081
	// SourceFQDN is the in-mesh host of the revocation source.
	SourceFQDN = SourceService + "." + Namespace + ".svc.cluster.local"

	// EnvoySourceCluster is envoy.yaml's cluster for the source: sync.cluster of the plugin there.
	EnvoySourceCluster = "revocation_source"
	// EnvoyUpstreamCluster is envoy.yaml's cluster behind the listener (the demo echo server).
	EnvoyUpstreamCluster = "upstream"
	// ListenerPort, UpstreamPort and AdminPort are envoy.yaml's listener, upstream and admin ports.
	ListenerPort = 10000
	UpstreamPort = 8080
	AdminPort    = 9901

	// SourceSecret is the Secret the source's pods read, created by the kubectl command in
	// docs/envoy-istio.md (step 2): the app's database URL and the tokens. AdminTokenSecret is its
	// older name.
	SourceSecret     = "revocation-source"
	AdminTokenSecret = SourceSecret
	// AdminTokenKey holds the admin API's bearer token, read as REVOCATION_SOURCE_ADMIN_TOKEN.
	AdminTokenKey = "admin-token"
	AdminTokenEnv = "REVOCATION_SOURCE_ADMIN_TOKEN"
	// FeedTokenKey holds the feed's bearer token, read as REVOCATION_SOURCE_FEED_TOKEN; the
	// WasmPlugin sends the same token in sync.headers.
	FeedTokenKey = "feed-token"
	FeedTokenEnv = "REVOCATION_SOURCE_FEED_TOKEN"
	// PostgresDSNKey holds the URL of the app's PostgreSQL, read as REVOCATION_SOURCE_POSTGRES_DSN.
	PostgresDSNKey = "postgres-dsn"
	PostgresDSNEnv = "REVOCATION_SOURCE_POSTGRES_DSN"

	// ReadyPath and HealthPath are the source's readiness and liveness endpoints; MetricsPath its
	// Prometheus endpoint.
	ReadyPath   = "/readyz"
	HealthPath  = "/healthz"
	MetricsPath = "/metrics"

	// SourceUser is the non-root uid:gid the source's image runs as (distroless's "nonroot").
	SourceUser = 65532
)

// IstioSourceCluster is the outbound cluster Istio generates for the in-mesh revocation source: the
// WasmPlugin's sync.cluster.
func IstioSourceCluster() string { return IstioCluster(SourcePort, SourceFQDN) }

// IstioCluster names Istio's outbound cluster of a service port; a proxy-wasm callout must use it
// verbatim.
func IstioCluster(port int, host string) string {
	return "outbound|" + strconv.Itoa(port) + "||" + host
}
