package localproxytest

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/internal/moduletest"
)

// FreeAddr returns a loopback address that was free a moment ago. Another process may take
// it before the caller listens; tests accept that small race to exercise fixed-port configs.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Port returns the port of a host:port address.
func Port(tb testing.TB, addr string) string {
	tb.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// WriteEnvoyYAML writes the repository's envoy.yaml into dir with each old string replaced
// by the new one that follows it (for example the ports of the clusters, the wasm path or
// the sync interval), and returns its path. It fails tb when an old string is absent, so a
// test does not silently run the unedited file after envoy.yaml changes.
func WriteEnvoyYAML(tb testing.TB, dir string, oldnew ...string) string {
	tb.Helper()
	root, err := moduletest.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "envoy.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(s, oldnew[i]) {
			tb.Fatalf("envoy.yaml no longer contains %q", oldnew[i])
		}
		s = strings.ReplaceAll(s, oldnew[i], oldnew[i+1])
	}
	p := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}
