package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func members(t *testing.T, file string) map[string][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
}

func TestLayerParentsAndSymlinks(t *testing.T) {
	raw, err := Layer(Image{Entries: []entry{
		{name: "/bin/busybox", mode: 0o755, content: []byte("x")},
		{name: "/bin/sh", target: "busybox"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	got := map[string]*tar.Header{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		order = append(order, h.Name)
	}
	if got["bin/"] == nil || got["bin/"].Typeflag != tar.TypeDir || got["bin/sh"].Linkname != "busybox" ||
		got["bin/busybox"].Mode != 0o755 || got["tmp/"].Mode != 0o1777 {
		t.Fatalf("layer: %v", order)
	}
	if order[0] != "bin/" || order[1] != "bin/busybox" {
		t.Fatalf("not sorted (parents first): %v", order)
	}
	if _, err := Layer(Image{Entries: []entry{{name: "/a", content: nil}, {name: "a", content: nil}}}); err == nil {
		t.Fatal("duplicate accepted")
	}
}

func TestWriteAndRepack(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.tar")
	if err := Write(a, Image{Entries: []entry{{name: "/x", mode: 0o755, content: []byte("bin")}}, Entrypoint: []string{"/x"}}, []string{"example.com/a:v1", "example.com/b:v2"}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "b.tar")
	if err := Repack(a, b, []string{"nvcr.io/nvidia/k8s-device-plugin:v0.20.0"}); err != nil {
		t.Fatal(err)
	}
	type index struct {
		Manifests []descriptor `json:"manifests"`
	}
	var ia, ib index
	ma, mb := members(t, a), members(t, b)
	_ = json.Unmarshal(ma["index.json"], &ia)
	_ = json.Unmarshal(mb["index.json"], &ib)
	if len(ia.Manifests) != 2 || ia.Manifests[1].Annotations["io.containerd.image.name"] != "example.com/b:v2" {
		t.Fatalf("index a: %+v", ia)
	}
	if len(ib.Manifests) != 1 || ib.Manifests[0].Digest != ia.Manifests[0].Digest ||
		ib.Manifests[0].Annotations["io.containerd.image.name"] != "nvcr.io/nvidia/k8s-device-plugin:v0.20.0" {
		t.Fatalf("index b: %+v", ib)
	}
	if len(mb) != len(ma) {
		t.Fatalf("blobs differ: %d vs %d members", len(mb), len(ma))
	}
	if err := Repack(a, b, []string{"no-tag"}); err == nil {
		t.Fatal("name without tag accepted")
	}
}

func TestMerge(t *testing.T) {
	dir := t.TempDir()
	a, b, m := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar"), filepath.Join(dir, "m.tar")
	if err := Write(a, Image{Entries: []entry{{name: "/pause", mode: 0o755, content: []byte("p")}}}, []string{"docker.io/rancher/mirrored-pause:3.10.2"}); err != nil {
		t.Fatal(err)
	}
	if err := Write(b, Image{Entries: []entry{{name: "/bin/busybox", mode: 0o755, content: []byte("b")}}, Cmd: []string{"sh"}}, []string{"docker.io/rancher/mirrored-library-busybox:1.37.0"}); err != nil {
		t.Fatal(err)
	}
	if err := Merge([]string{a, b}, m); err != nil {
		t.Fatal(err)
	}
	ms, blobs, err := readLayout(m)
	if err != nil || len(ms) != 2 || ms[1].Annotations["io.containerd.image.name"] != "docker.io/rancher/mirrored-library-busybox:1.37.0" || len(blobs) != 6 {
		t.Fatalf("%v %d %v", ms, len(blobs), err)
	}
	if err := Merge([]string{a, a}, m); err == nil {
		t.Fatal("the same name twice accepted")
	}
}
