package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

var fakeBinary = append([]byte("\x7fELF"), bytes.Repeat([]byte("static go"), 1000)...)

func testOptions() options {
	return options{name: "ghcr.io/sfops/salesforce-operator:dev", arch: "amd64", created: time.Unix(0, 0).UTC()}
}

// Two builds of the same inputs are the same bytes, so the same digest; another input is another digest.
func TestBuildIsReproducible(t *testing.T) {
	a, err := build(testOptions(), []byte("CA"), fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	b, err := build(testOptions(), []byte("CA"), fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	if a.digest != b.digest || !bytes.Equal(a.tarball, b.tarball) {
		t.Fatalf("two builds differ: %s, %s", a.digest, b.digest)
	}
	c, err := build(testOptions(), []byte("CA"), append(fakeBinary, '!'))
	if err != nil {
		t.Fatal(err)
	}
	if c.digest == a.digest {
		t.Fatal("another binary, the same digest")
	}
}

// The tarball is a valid OCI layout (every descriptor's blob is there with its size and digest)
// and a docker-archive, and the image holds exactly the distroless-like root filesystem.
func TestImageLayout(t *testing.T) {
	img, err := build(testOptions(), []byte("CA BUNDLE"), fakeBinary)
	if err != nil {
		t.Fatal(err)
	}
	files := untar(t, img.tarball)
	var layout struct{ ImageLayoutVersion string }
	decode(t, files["oci-layout"], &layout)
	if layout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout %q", files["oci-layout"])
	}
	var index struct{ Manifests []descriptor }
	decode(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != img.digest {
		t.Fatalf("index.json %s, want one manifest %s", files["index.json"], img.digest)
	}
	if index.Manifests[0].Annotations["io.containerd.image.name"] != "ghcr.io/sfops/salesforce-operator:dev" ||
		index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "dev" {
		t.Errorf("index.json names: %v", index.Manifests[0].Annotations)
	}
	blob := func(d descriptor) []byte {
		t.Helper()
		b, ok := files[blobPath(d.Digest)]
		if !ok || len(b) != d.Size || digestOf(b) != d.Digest {
			t.Fatalf("blob %s: present %v, size %d (want %d)", d.Digest, ok, len(b), d.Size)
		}
		return b
	}
	var manifest struct {
		MediaType string
		Config    descriptor
		Layers    []descriptor
	}
	decode(t, blob(index.Manifests[0]), &manifest)
	var config struct {
		Architecture, OS string
		Config           struct {
			User       string
			Entrypoint []string
		}
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		}
	}
	decode(t, blob(manifest.Config), &config)
	if config.Config.User != "65532:65532" || strings.Join(config.Config.Entrypoint, " ") != "/manager" || config.OS != "linux" || config.Architecture != "amd64" {
		t.Errorf("config: %+v", config)
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	decode(t, files["manifest.json"], &docker)
	if len(docker) != 1 || docker[0].Config != blobPath(manifest.Config.Digest) || docker[0].RepoTags[0] != "ghcr.io/sfops/salesforce-operator:dev" {
		t.Errorf("manifest.json %s", files["manifest.json"])
	}

	type entry struct {
		mode     int64
		uid, gid int
		data     string
	}
	rootfs := map[string]entry{}
	for i, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blob(l)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if digestOf(raw) != config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id mismatch", i)
		}
		if docker[0].Layers[i] != blobPath(l.Digest) {
			t.Errorf("manifest.json layer %d is %s", i, docker[0].Layers[i])
		}
		tr := tar.NewReader(bytes.NewReader(raw))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(time.Unix(0, 0)) {
				t.Errorf("%s: mtime %s", h.Name, h.ModTime)
			}
			data, _ := io.ReadAll(tr)
			rootfs[h.Name] = entry{h.Mode, h.Uid, h.Gid, string(data)}
		}
	}
	want := map[string]entry{
		"etc/":                              {0o755, 0, 0, ""},
		"etc/group":                         {0o644, 0, 0, "root:x:0:\nnonroot:x:65532:\n"},
		"etc/passwd":                        {0o644, 0, 0, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
		"etc/ssl/":                          {0o755, 0, 0, ""},
		"etc/ssl/certs/":                    {0o755, 0, 0, ""},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0, "CA BUNDLE"},
		"home/":                             {0o755, 0, 0, ""},
		"home/nonroot/":                     {0o700, 65532, 65532, ""},
		"tmp/":                              {0o1777, 0, 0, ""},
		"manager":                           {0o755, 0, 0, string(fakeBinary)},
	}
	for name, w := range want {
		if got, ok := rootfs[name]; !ok || got != w {
			t.Errorf("%s: got %+v (present %v), want mode %o owner %d:%d", name, got.mode, ok, w.mode, w.uid, w.gid)
		}
	}
	if len(rootfs) != len(want) {
		t.Errorf("the image holds %d entries, want exactly %d", len(rootfs), len(want))
	}
}

func TestCheckStatic(t *testing.T) {
	if err := checkStatic(fakeBinary); err != nil {
		t.Error(err)
	}
	if checkStatic([]byte("#!/bin/sh")) == nil {
		t.Error("a script passed as a binary")
	}
	if checkStatic(append(append([]byte("\x7fELF"), "/lib64/ld-linux-x86-64.so.2"...), 0)) == nil {
		t.Error("a dynamically linked binary passed")
	}
}

func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out[strings.TrimSuffix(h.Name, "/")] = data
	}
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
