// Command build-oci builds jtiguard's two OCI images without Docker or a registry, as OCI image
// layouts that `crane push DIR REF` publishes (`make oci`):
//
//   - the Wasm plugin for Istio's WasmPlugin, in the "compat" layout Istio's image fetcher reads:
//     one tar+gzip layer holding plugin.wasm, OCI media types, annotation module.wasm.image/variant=compat;
//   - the revocation source: its static binary on no base image, run as uid 65532.
//
// Timestamps come from SOURCE_DATE_EPOCH (default 0), so the same inputs give the same digests.
// See docs/envoy-istio.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "build-oci:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("build-oci", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plugin := fs.String("plugin", "", "the module to pack as the Wasm plugin image (build/jtiguard.wasm)")
	pluginOut := fs.String("plugin-out", "build/oci/jtiguard", "OCI layout directory for the plugin image")
	source := fs.String("source", "", "the revocation source's static linux binary (CGO_ENABLED=0 GOOS=linux go build ./cmd/revocation-source)")
	sourceArch := fs.String("source-arch", "amd64", "GOARCH of that binary: amd64 or arm64")
	sourceOut := fs.String("source-out", "build/oci/revocation-source", "OCI layout directory for the source image")
	tag := fs.String("tag", "0.1.0", "tag recorded in each layout's index (org.opencontainers.image.ref.name)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 || (*plugin == "" && *source == "") {
		return fmt.Errorf("%w: want -plugin FILE and/or -source FILE, and no other arguments", errUsage)
	}
	created := time.Unix(0, 0).UTC()
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: SOURCE_DATE_EPOCH=%q: want Unix seconds", errUsage, s)
		}
		created = time.Unix(n, 0).UTC()
	}
	build := func(in, out, what string, mk func([]byte) (v1.Image, error)) error {
		b, err := os.ReadFile(in)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		img, err := mk(b)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, in, err)
		}
		if err := WriteLayout(out, img, *tag); err != nil {
			return fmt.Errorf("%s: write %s: %w", what, out, err)
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s (%s, tag %s) → crane push %s <registry>/<repository>:%s\n", what, out, d, *tag, out, *tag)
		return nil
	}
	if *plugin != "" {
		if err := build(*plugin, *pluginOut, "plugin image", func(b []byte) (v1.Image, error) { return PluginImage(b, created) }); err != nil {
			return err
		}
	}
	if *source != "" {
		if err := build(*source, *sourceOut, "source image", func(b []byte) (v1.Image, error) { return SourceImage(b, *sourceArch, created) }); err != nil {
			return err
		}
	}
	return nil
}
