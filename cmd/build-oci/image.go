package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/jtiguard/jtiguard/deploy"
)

// Sentinel errors.
var (
	// ErrNotWasm: the plugin file does not start with the wasm magic number.
	ErrNotWasm = errors.New("not a wasm module")
	// ErrNotStatic: the source binary is not a static ELF executable for the image's architecture.
	ErrNotStatic = errors.New("not a static linux executable")
)

// Names and annotations the images carry.
const (
	// PluginFile is the one file of the plugin layer: the name Istio's fetcher looks for in a
	// "compat" image (a single tar+gzip layer), per the Wasm image specification's compat variant.
	PluginFile = "plugin.wasm"
	// VariantAnnotation marks an OCI-media-type compat image, as that specification requires.
	VariantAnnotation = "module.wasm.image/variant"
	// SourceBinary is the source image's executable.
	SourceBinary = "/revocation-source"

	refNameAnnotation = "org.opencontainers.image.ref.name"
	titleAnnotation   = "org.opencontainers.image.title"
	sourceAnnotation  = "org.opencontainers.image.source"
	createdAnnotation = "org.opencontainers.image.created"
	projectURL        = "https://github.com/jtiguard/jtiguard"
)

// file is one entry of a layer.
type file struct {
	name     string
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// tarLayer makes a tar+gzip layer with the OCI layer media type. Every entry gets the same
// modification time, so the same inputs give the same digest.
func tarLayer(files []file, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: mtime, Format: tar.FormatPAX,
			Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// ociImage assembles a single-manifest OCI image (not an index: Istio's fetcher takes the manifest
// as it comes) from one layer and a config.
func ociImage(l v1.Layer, cfg v1.ConfigFile, created time.Time, annotations map[string]string) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "jtiguard build-oci"}})
	if err != nil {
		return nil, err
	}
	base, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg.RootFS, cfg.History = base.RootFS, base.History
	cfg.Created = v1.Time{Time: created}
	if img, err = mutate.ConfigFile(img, &cfg); err != nil {
		return nil, err
	}
	anns := map[string]string{createdAnnotation: created.UTC().Format(time.RFC3339), sourceAnnotation: projectURL}
	for k, v := range annotations {
		anns[k] = v
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// PluginImage packs a proxy-wasm module as an Istio "compat" Wasm image: one tar+gzip layer holding
// plugin.wasm, OCI media types, and the variant annotation.
func PluginImage(wasm []byte, created time.Time) (v1.Image, error) {
	if !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		return nil, fmt.Errorf("%w: the file does not start with \\0asm", ErrNotWasm)
	}
	l, err := tarLayer([]file{{name: PluginFile, mode: 0o444, data: wasm}}, created)
	if err != nil {
		return nil, err
	}
	// The Go toolchain's names for the target: the module is GOOS=wasip1 GOARCH=wasm.
	cfg := v1.ConfigFile{OS: "wasip1", Architecture: "wasm"}
	return ociImage(l, cfg, created, map[string]string{VariantAnnotation: "compat", titleAnnotation: "jtiguard"})
}

// elfMachine maps GOARCH to the ELF machine a binary for it has.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// checkStatic refuses anything but a static ELF executable for arch: an image without a base has no
// dynamic loader and no libc, so a dynamically linked binary would not start.
func checkStatic(bin []byte, arch string) error {
	want, ok := elfMachine[arch]
	if !ok {
		return fmt.Errorf("%w: architecture %q (want amd64 or arm64)", ErrNotStatic, arch)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotStatic, err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%w: built for %s, the image is for %s (%s)", ErrNotStatic, f.Machine, arch, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: it asks for a dynamic loader; build it with CGO_ENABLED=0", ErrNotStatic)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%w: it needs %v; build it with CGO_ENABLED=0", ErrNotStatic, libs)
	}
	return nil
}

// SourceImage packs the revocation source's static binary with no base image: the binary, an
// /etc/passwd and /etc/group naming the non-root user it runs as, a home directory that user owns
// (the working directory, where the SQLite default file goes) and /tmp. It listens on all
// interfaces of the container, on deploy.SourcePort.
func SourceImage(bin []byte, arch string, created time.Time) (v1.Image, error) {
	if err := checkStatic(bin, arch); err != nil {
		return nil, err
	}
	uid := deploy.SourceUser
	id := strconv.Itoa(uid)
	home := "home/nonroot"
	files := []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + id + ":" + id + ":nonroot:/" + home + ":/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:" + id + ":\n")},
		{name: "home/", mode: 0o755, dir: true},
		{name: home + "/", mode: 0o700, uid: uid, gid: uid, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: SourceBinary[1:], mode: 0o755, data: bin},
	}
	l, err := tarLayer(files, created)
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(deploy.SourcePort)
	cfg := v1.ConfigFile{OS: "linux", Architecture: arch, Config: v1.Config{
		User:         id + ":" + id,
		Entrypoint:   []string{SourceBinary},
		WorkingDir:   "/" + home,
		Env:          []string{"REVOCATION_SOURCE_LISTEN=:" + port},
		ExposedPorts: map[string]struct{}{port + "/tcp": {}},
		Labels:       map[string]string{titleAnnotation: deploy.SourceService, sourceAnnotation: projectURL},
	}}
	return ociImage(l, cfg, created, map[string]string{titleAnnotation: deploy.SourceService})
}

// WriteLayout writes img as a fresh OCI image layout at dir (anything there before is removed),
// its index naming the image with tag; `crane push DIR REF` publishes it.
func WriteLayout(dir string, img v1.Image, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: tag}))
}
