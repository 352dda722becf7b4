// Command ocitar packs one static binary as a single-layer OCI image and writes it as an OCI image-layout
// tarball that `ctr images import` and K3s's images directory accept. Every -name becomes a manifest entry of
// index.json annotated with io.containerd.image.name (the name containerd's importer stores the image under),
// so one tarball can also carry the name the stacks use. Output is reproducible: fixed times, sorted entries.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path"
	"strings"
	"time"
)

type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

var epoch = time.Unix(0, 0).UTC()

func main() {
	var imageNames, env names
	bin := flag.String("bin", "", "static binary to put in the image")
	at := flag.String("path", "", "path of the binary inside the image (default /<basename>)")
	out := flag.String("o", "", "output tarball")
	flag.Var(&imageNames, "name", "full image name, e.g. docker.io/rancher/mirrored-pause:3.6 (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE for the image config (repeatable)")
	flag.Parse()
	if *bin == "" || *out == "" || len(imageNames) == 0 {
		log.Fatal("usage: ocitar -bin FILE -o OUT.tar -name IMAGE [-name IMAGE...] [-path /x] [-env K=V...]")
	}
	if *at == "" {
		*at = "/" + path.Base(*bin)
	}
	if err := run(*bin, *at, *out, imageNames, env); err != nil {
		log.Fatal(err)
	}
}

func run(bin, at, out string, imageNames, env []string) error {
	content, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	// The layer: the binary plus the directories a container runtime expects to mount over.
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, d := range []string{"dev/", "etc/", "proc/", "sys/", "tmp/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(at, "/"), Mode: 0o755, Size: int64(len(content)), ModTime: epoch}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}

	blobs := map[string][]byte{}
	add := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(b))}
		blobs[d.Digest] = b
		return d
	}
	diffID := sha256.Sum256(raw.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": []string{at}, "Env": env, "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	layer := add("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())
	cfg := add("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        cfg,
		"layers":        []descriptor{layer},
	})
	if err != nil {
		return err
	}
	man := add("application/vnd.oci.image.manifest.v1+json", manifest)
	man.Platform = &platform{Architecture: "amd64", OS: "linux"}

	index := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
	var entries []descriptor
	for _, n := range imageNames {
		d := man
		tag := n[strings.LastIndex(n, ":")+1:]
		if !strings.Contains(n, ":") || strings.Contains(tag, "/") {
			return fmt.Errorf("image name %q needs a tag", n)
		}
		d.Annotations = map[string]string{"io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag}
		entries = append(entries, d)
	}
	index["manifests"] = entries
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	ow := tar.NewWriter(f)
	file := func(name string, b []byte) error {
		if err := ow.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := ow.Write(b)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := file("index.json", indexJSON); err != nil {
		return err
	}
	for _, d := range []descriptor{cfg, layer, man} {
		if err := file("blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:"), blobs[d.Digest]); err != nil {
			return err
		}
	}
	if err := ow.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}
