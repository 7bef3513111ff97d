package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/jtiguard/jtiguard/deploy"
	"github.com/jtiguard/jtiguard/internal/moduletest"
)

// readLayout opens an OCI layout the way `crane push DIR` does: exactly one image in its index.
func readLayout(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsImage() {
		t.Fatalf("%s: index holds %+v, want one image manifest (crane push needs exactly one)", dir, m.Manifests)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// istioWasm extracts the module as Istio's image fetcher does for an OCI-media-type image in the
// compat variant: the last layer must be application/vnd.oci.image.layer.v1.tar+gzip and hold a file
// whose base name is plugin.wasm.
func istioWasm(t *testing.T, img v1.Image) []byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers: %v (%d)", err, len(layers))
	}
	l := layers[len(layers)-1]
	if mt, _ := l.MediaType(); mt != types.OCILayer {
		t.Fatalf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := untar(t, rc)
	b, ok := files[PluginFile]
	if !ok {
		t.Fatalf("layer holds %v, no %s", keys(files), PluginFile)
	}
	return b
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func untarEntries(t *testing.T, gz io.Reader) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	out := map[string]entry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = entry{h, b}
	}
}

func untar(t *testing.T, gz io.Reader) map[string][]byte {
	out := map[string][]byte{}
	for k, e := range untarEntries(t, gz) {
		out[k] = e.data
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// checkPluginImage asserts what Istio's fetcher and the compat specification need, and that the
// layer holds wasm byte for byte.
func checkPluginImage(t *testing.T, img v1.Image, wasm []byte) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s with config %s, want %s and %s", m.MediaType, m.Config.MediaType, types.OCIManifestSchema1, types.OCIConfigJSON)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("%d layers, want exactly 1 (compat variant)", len(m.Layers))
	}
	if m.Annotations[VariantAnnotation] != "compat" {
		t.Errorf("annotations %v: want %s=compat", m.Annotations, VariantAnnotation)
	}
	rc, _ := img.Layers()
	r, _ := rc[0].Compressed()
	files := untarEntries(t, r)
	r.Close()
	if len(files) != 1 {
		t.Errorf("layer holds %v, want only %s", keys(files), PluginFile)
	}
	if got := istioWasm(t, img); !bytes.Equal(got, wasm) {
		t.Errorf("plugin.wasm differs from the module: %d bytes, want %d", len(got), len(wasm))
	}
	cfg, err := img.ConfigFile()
	if err != nil || cfg.OS != "wasip1" || cfg.Architecture != "wasm" {
		t.Errorf("config %+v (%v): want os wasip1, architecture wasm", cfg, err)
	}
}

// TestPluginImage packs the real module, writes the layout, reads it back as crane push does, pushes
// it to a registry and pulls it as Istio does, then checks the result at each step.
func TestPluginImage(t *testing.T) {
	wasm := moduletest.Module(t)
	dir := filepath.Join(t.TempDir(), "jtiguard")
	var out bytes.Buffer
	in := filepath.Join(t.TempDir(), "jtiguard.wasm")
	if err := os.WriteFile(in, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-plugin", in, "-plugin-out", dir}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	img := readLayout(t, dir)
	checkPluginImage(t, img, wasm)

	// What crane push does (remote.Write), then what Istio does (remote.Get, Image).
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(reg.URL, "http://")+"/jtiguard/jtiguard:0.1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("registry serves %s, want a single image manifest (an index would make Istio pick a platform)", desc.MediaType)
	}
	pulled, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	checkPluginImage(t, pulled, wasm)
	want, _ := img.Digest()
	if got, _ := pulled.Digest(); got != want || !strings.Contains(out.String(), want.String()) {
		t.Errorf("pulled digest %s, built %s (printed: %q)", got, want, out.String())
	}
}

// TestReproducible: same module and SOURCE_DATE_EPOCH, same digest; another epoch, another one.
func TestReproducible(t *testing.T) {
	wasm := append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{7}, 1000)...)
	digest := func(epoch int64) v1.Hash {
		img, err := PluginImage(wasm, time.Unix(epoch, 0))
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if a, b := digest(1700000000), digest(1700000000); a != b {
		t.Errorf("two builds: %s and %s", a, b)
	}
	if a, b := digest(0), digest(1700000000); a == b {
		t.Error("the epoch does not reach the image")
	}
}

// TestSourceImage packs a static binary compiled here and checks the image runs it as the non-root
// user the Kubernetes manifest expects, on the port it expects.
func TestSourceImage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	want, _ := os.ReadFile(bin)
	out := filepath.Join(dir, "oci")
	if err := run([]string{"-source", bin, "-source-arch", "amd64", "-source-out", out}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	checkSourceImage(t, readLayout(t, out), want, "amd64")
}

func checkSourceImage(t *testing.T, img v1.Image, bin []byte, arch string) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	port := "8081/tcp"
	if cfg.OS != "linux" || cfg.Architecture != arch || c.User != "65532:65532" || len(c.Entrypoint) != 1 || c.Entrypoint[0] != SourceBinary {
		t.Errorf("config %+v: want linux/%s, user 65532:65532, entrypoint %s", cfg, arch, SourceBinary)
	}
	if _, ok := c.ExposedPorts[port]; !ok || deploy.SourcePort != 8081 {
		t.Errorf("exposed ports %v, want %s", c.ExposedPorts, port)
	}
	if !strings.Contains(strings.Join(c.Env, " "), "REVOCATION_SOURCE_LISTEN=:8081") {
		t.Errorf("env %v: the source must listen on all interfaces of the container", c.Env)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 (no base image)", len(layers))
	}
	r, _ := layers[0].Compressed()
	defer r.Close()
	files := untarEntries(t, r)
	e, ok := files[SourceBinary[1:]]
	if !ok || !bytes.Equal(e.data, bin) || e.hdr.Mode&0o111 == 0 {
		t.Errorf("layer %v: want %s, executable, byte for byte the binary", keys(files), SourceBinary)
	}
	if home := files["home/nonroot/"]; home.hdr == nil || home.hdr.Uid != deploy.SourceUser {
		t.Errorf("home/nonroot/ missing or not owned by %d", deploy.SourceUser)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd %q lacks the nonroot user", files["etc/passwd"].data)
	}
}

// TestRefusals: what would not run is refused with a sentinel, not packed.
func TestRefusals(t *testing.T) {
	if _, err := PluginImage([]byte("#!/bin/sh\n"), time.Unix(0, 0)); !errors.Is(err, ErrNotWasm) {
		t.Errorf("PluginImage(script) = %v, want ErrNotWasm", err)
	}
	sh, err := os.ReadFile("/bin/sh") // dynamically linked on Debian
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SourceImage(sh, "amd64", time.Unix(0, 0)); !errors.Is(err, ErrNotStatic) {
		t.Errorf("SourceImage(/bin/sh) = %v, want ErrNotStatic", err)
	}
	if _, err := SourceImage(sh, "riscv64", time.Unix(0, 0)); !errors.Is(err, ErrNotStatic) {
		t.Errorf("SourceImage(arch riscv64) = %v, want ErrNotStatic", err)
	}
	if _, err := SourceImage([]byte("not elf"), "amd64", time.Unix(0, 0)); !errors.Is(err, ErrNotStatic) {
		t.Errorf("SourceImage(garbage) = %v, want ErrNotStatic", err)
	}
	for _, args := range [][]string{nil, {"-plugin", "x", "extra"}, {"-nope"}} {
		if err := run(args, func(string) string { return "" }, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want errUsage", args, err)
		}
	}
	if err := run([]string{"-plugin", "x"}, func(string) string { return "yesterday" }, io.Discard, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("bad SOURCE_DATE_EPOCH: %v, want errUsage", err)
	}
}

// TestMakeOCIOutput checks what `make oci` left in build/oci (CI runs it before the tests): the
// plugin layer is build/jtiguard.wasm byte for byte, the source layer the static binary make built.
// Outside CI it runs only when build/oci exists; under CI=true a missing build/oci fails.
func TestMakeOCIOutput(t *testing.T) {
	root, err := moduletest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := filepath.Join(root, "build/oci/jtiguard")
	if _, err := os.Stat(pluginDir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s is missing: .ci/run must run `make oci` before the tests", pluginDir)
		}
		t.Skipf("%s not built (run make oci)", pluginDir)
	}
	wasm, err := os.ReadFile(filepath.Join(root, "build/jtiguard.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	checkPluginImage(t, readLayout(t, pluginDir), wasm)
	bins, _ := filepath.Glob(filepath.Join(root, "build/revocation-source.linux-*"))
	if len(bins) != 1 {
		t.Fatalf("build/revocation-source.linux-*: %v, want the one binary make oci built", bins)
	}
	bin, _ := os.ReadFile(bins[0])
	checkSourceImage(t, readLayout(t, filepath.Join(root, "build/oci/revocation-source")), bin, strings.TrimPrefix(filepath.Base(bins[0]), "revocation-source.linux-"))
}
