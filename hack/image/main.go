// Command image builds the manager's OCI image from Go alone, without a Docker engine: a static
// binary on an empty base holding only CA certificates and a nonroot user, the layout the
// Dockerfile builds with Docker. The output is one tarball that is both an OCI image layout
// (`ctr images import`, `kind load image-archive`, `skopeo copy oci-archive:...`) and a
// docker-archive (`docker load`, through its manifest.json). Every byte is fixed by the inputs:
// no timestamps but SOURCE_DATE_EPOCH (default 0), fixed owners and modes, sorted entries, so two
// builds of one commit have one digest. It only reads its inputs and writes its outputs.
package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The nonroot user of distroless images.
const nonroot = 65532

const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/manager-linux", "The static manager binary to put at /manager.")
	flag.StringVar(&o.caFile, "ca-file", "/etc/ssl/certs/ca-certificates.crt", "The CA bundle to put at /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates).")
	flag.StringVar(&o.name, "name", "ghcr.io/sfops/salesforce-operator:dev", "The image's name and tag.")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "The image's architecture (the binary's GOARCH).")
	flag.StringVar(&o.revision, "revision", "", "The source revision, as the org.opencontainers.image.revision label.")
	out := flag.String("out", "bin/image/salesforce-operator.tar", "The tarball to write.")
	rootfs := flag.String("rootfs", "", "Instead of a tarball, write the base's files (CA certificates, /etc/passwd, ...) into this directory; the Dockerfile builds on them.")
	flag.Parse()
	if err := run(o, *out, *rootfs); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o options, out, rootfs string) error {
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	o.created = epoch
	ca, err := os.ReadFile(o.caFile)
	if err != nil {
		return fmt.Errorf("reading the CA certificates (install Debian's ca-certificates): %w", err)
	}
	if rootfs != "" {
		return writeRootfs(rootfs, baseFiles(ca))
	}
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return err
	}
	if err := checkStatic(bin); err != nil {
		return fmt.Errorf("%s: %w", o.binary, err)
	}
	img, err := build(o, ca, bin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, img.tarball, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Printf("%s %s\n", img.digest, out)
	return nil
}

type options struct {
	binary, caFile, name, arch, revision string
	created                              time.Time
}

// sourceDateEpoch is the reproducible-builds timestamp: SOURCE_DATE_EPOCH, else the Unix epoch.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

// file is one entry of a layer or of the root filesystem.
type file struct {
	path     string // absolute, without the leading slash
	mode     fs.FileMode
	uid, gid int
	data     []byte
}

// baseFiles is the base image: what a static Go binary needs from a distribution and nothing
// more (no shell, no package manager), as gcr.io/distroless/static:nonroot.
func baseFiles(ca []byte) []file {
	return []file{
		{path: "etc", mode: fs.ModeDir | 0o755},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{path: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/ssl", mode: fs.ModeDir | 0o755},
		{path: "etc/ssl/certs", mode: fs.ModeDir | 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{path: "home", mode: fs.ModeDir | 0o755},
		{path: "home/nonroot", mode: fs.ModeDir | 0o700, uid: nonroot, gid: nonroot},
		{path: "tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// writeRootfs writes files under dir, owners included when permitted (root in a Docker build).
func writeRootfs(dir string, files []file) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		var err error
		if f.mode.IsDir() {
			err = os.MkdirAll(p, f.mode.Perm())
		} else {
			err = os.WriteFile(p, f.data, f.mode.Perm())
		}
		if err == nil {
			err = os.Chmod(p, f.mode.Perm()|f.mode&fs.ModeSticky)
		}
		if err == nil && os.Geteuid() == 0 {
			err = os.Lchown(p, f.uid, f.gid)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkStatic refuses a binary that needs a dynamic loader: the base has none.
func checkStatic(bin []byte) error {
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return fmt.Errorf("not a Linux (ELF) binary")
	}
	if bytes.Contains(bin, []byte("/lib64/ld-linux")) || bytes.Contains(bin, []byte("/lib/ld-linux")) || bytes.Contains(bin, []byte("/lib/ld-musl")) {
		return fmt.Errorf("dynamically linked (build it with CGO_ENABLED=0)")
	}
	return nil
}

type image struct {
	digest  string // of the manifest: what a registry and the kubelet call the image
	tarball []byte
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// build assembles the image: the base layer, the binary's layer, the config, the manifest, and
// the tarball that holds them.
func build(o options, ca, bin []byte) (*image, error) {
	layers := [][]file{
		baseFiles(ca),
		{{path: "manager", mode: 0o755, data: bin}},
	}
	blobs := map[string][]byte{}
	put := func(b []byte) string {
		d := digestOf(b)
		blobs[d] = b
		return d
	}
	var layerDescs []descriptor
	var diffIDs []string
	for _, files := range layers {
		tarred, err := tarOf(files, o.created)
		if err != nil {
			return nil, err
		}
		gz, err := gzipOf(tarred)
		if err != nil {
			return nil, err
		}
		diffIDs = append(diffIDs, digestOf(tarred))
		layerDescs = append(layerDescs, descriptor{MediaType: mediaTypeLayer, Digest: put(gz), Size: len(gz)})
	}
	labels := map[string]string{
		"org.opencontainers.image.source": "https://github.com/sfops/salesforce-operator",
		"org.opencontainers.image.title":  "salesforce-operator",
	}
	if o.revision != "" {
		labels["org.opencontainers.image.revision"] = o.revision
	}
	created := o.created.Format(time.RFC3339)
	config, err := json.Marshal(map[string]any{
		"created":      created,
		"architecture": o.arch,
		"os":           "linux",
		"config": map[string]any{
			"User":       fmt.Sprintf("%d:%d", nonroot, nonroot),
			"Entrypoint": []string{"/manager"},
			"WorkingDir": "/",
			"Env":        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			"Labels":     labels,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history": []map[string]any{
			{"created": created, "created_by": "hack/image: CA certificates, nonroot user"},
			{"created": created, "created_by": "hack/image: /manager"},
		},
	})
	if err != nil {
		return nil, err
	}
	configDesc := descriptor{MediaType: mediaTypeConfig, Digest: put(config), Size: len(config)}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        configDesc,
		"layers":        layerDescs,
	})
	if err != nil {
		return nil, err
	}
	manifestDigest := put(manifest)
	tag := o.name[strings.LastIndex(o.name, ":")+1:]
	if strings.Contains(tag, "/") {
		return nil, fmt.Errorf("image name %q has no tag", o.name)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests": []descriptor{{
			MediaType: mediaTypeManifest, Digest: manifestDigest, Size: len(manifest),
			Platform: &platform{Architecture: o.arch, OS: "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          o.name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return nil, err
	}
	// docker load reads manifest.json; the blobs are shared with the OCI layout.
	layerPaths := make([]string, len(layerDescs))
	for i, l := range layerDescs {
		layerPaths[i] = blobPath(l.Digest)
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config": blobPath(configDesc.Digest), "RepoTags": []string{o.name}, "Layers": layerPaths,
	}})
	if err != nil {
		return nil, err
	}

	files := []file{
		{path: "blobs", mode: fs.ModeDir | 0o755},
		{path: "blobs/sha256", mode: fs.ModeDir | 0o755},
	}
	for _, d := range sortedKeys(blobs) {
		files = append(files, file{path: blobPath(d), mode: 0o644, data: blobs[d]})
	}
	files = append(files,
		file{path: "index.json", mode: 0o644, data: index},
		file{path: "manifest.json", mode: 0o644, data: dockerManifest},
		file{path: "oci-layout", mode: 0o644, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	)
	tarball, err := tarOf(files, o.created)
	if err != nil {
		return nil, err
	}
	return &image{digest: manifestDigest, tarball: tarball}, nil
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func gzipOf(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	// No name, no modification time: the header is the same for every build.
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
