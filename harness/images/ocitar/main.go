// Command ocitar writes single-layer OCI images as OCI image-layout tarballs that `ctr images import` and K3s's
// images directory accept. Every -name becomes a manifest entry of index.json annotated with
// io.containerd.image.name (the name containerd's importer stores the image under), so one tarball can carry
// several names. Output is reproducible: fixed times, sorted entries.
//
//	ocitar -bin FILE [-path /in/image] -name IMAGE... -o OUT.tar    one static binary (entrypoint = -path)
//	       [-file HOST=/in/image]... [-symlink /in/image=TARGET]... extra files and symlinks (busybox applets)
//	       [-entrypoint none] [-cmd ARG]... [-env K=V]...           image config
//	ocitar -from IN.tar -name IMAGE... -o OUT.tar                   the same image under other names (re-pack)
//	ocitar -merge A.tar -merge B.tar... -o OUT.tar                  several images, names kept, in one tarball
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type list []string

func (n *list) String() string     { return strings.Join(*n, ",") }
func (n *list) Set(v string) error { *n = append(*n, v); return nil }

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

// entry is one layer member: a regular file (content), a symlink (target) or a directory.
type entry struct {
	name    string
	mode    int64
	content []byte
	target  string
	dir     bool
}

// Image is what goes into the layer and the image config.
type Image struct {
	Entries    []entry
	Entrypoint []string
	Cmd        []string
	Env        []string
}

func main() {
	var imageNames, env, files, links, cmd, merge list
	bin := flag.String("bin", "", "static binary to put in the image")
	at := flag.String("path", "", "path of the binary inside the image (default /<basename>)")
	entrypoint := flag.String("entrypoint", "", "entrypoint (default: the binary's path; \"none\": no entrypoint)")
	from := flag.String("from", "", "re-pack this ocitar tarball under the -name(s)")
	out := flag.String("o", "", "output tarball")
	flag.Var(&imageNames, "name", "full image name, e.g. docker.io/rancher/mirrored-pause:3.10.2 (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE for the image config (repeatable)")
	flag.Var(&files, "file", "HOST=/path/in/image: another file, mode kept (repeatable)")
	flag.Var(&links, "symlink", "/path/in/image=TARGET (repeatable)")
	flag.Var(&cmd, "cmd", "image Cmd argument (repeatable)")
	flag.Var(&merge, "merge", "ocitar tarball to merge into -o (repeatable)")
	flag.Parse()
	modes := 0
	for _, set := range []bool{*bin != "", *from != "", len(merge) > 0} {
		if set {
			modes++
		}
	}
	if *out == "" || modes != 1 || (len(merge) == 0) == (len(imageNames) == 0) {
		log.Fatal("usage: ocitar (-bin FILE | -from IN.tar) -name IMAGE... -o OUT.tar | ocitar -merge A.tar... -o OUT.tar")
	}
	var err error
	if len(merge) > 0 {
		err = Merge(merge, *out)
	} else if *from != "" {
		err = Repack(*from, *out, imageNames)
	} else {
		var img Image
		img, err = build(*bin, *at, *entrypoint, files, links, cmd, env)
		if err == nil {
			err = Write(*out, img, imageNames)
		}
	}
	if err != nil {
		log.Fatal(err)
	}
}

func build(bin, at, entrypoint string, files, links, cmd, env []string) (Image, error) {
	img := Image{Cmd: cmd, Env: env}
	if at == "" {
		at = "/" + path.Base(bin)
	}
	add := func(host, in string) error {
		st, err := os.Stat(host)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		img.Entries = append(img.Entries, entry{name: in, mode: int64(st.Mode().Perm()), content: b})
		return nil
	}
	if err := add(bin, at); err != nil {
		return img, err
	}
	for _, f := range files {
		host, in, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(in, "/") {
			return img, fmt.Errorf("-file %q: want HOST=/path/in/image", f)
		}
		if err := add(host, in); err != nil {
			return img, err
		}
	}
	for _, l := range links {
		in, target, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(in, "/") || target == "" {
			return img, fmt.Errorf("-symlink %q: want /path/in/image=TARGET", l)
		}
		img.Entries = append(img.Entries, entry{name: in, target: target})
	}
	switch entrypoint {
	case "":
		img.Entrypoint = []string{at}
	case "none":
	default:
		img.Entrypoint = []string{entrypoint}
	}
	return img, nil
}

// Layer is the image's only layer as an uncompressed tar: the directories a runtime mounts over, every parent
// directory, then the entries, sorted by name.
func Layer(img Image) ([]byte, error) {
	all := map[string]entry{}
	for _, d := range []string{"dev", "etc", "proc", "sys"} {
		all[d] = entry{name: d, dir: true, mode: 0o755}
	}
	all["tmp"] = entry{name: "tmp", dir: true, mode: 0o1777}
	for _, e := range img.Entries {
		e.name = strings.TrimPrefix(path.Clean(e.name), "/")
		if e.name == "" || e.name == "." {
			return nil, errors.New("an entry needs a path below /")
		}
		if prev, dup := all[e.name]; dup && !prev.dir {
			return nil, fmt.Errorf("/%s is given twice", e.name)
		}
		all[e.name] = e
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if _, ok := all[d]; !ok {
				all[d] = entry{name: d, dir: true, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range names {
		e := all[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case e.target != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.target, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return raw.Bytes(), nil
}

type blobs map[string][]byte

func (b blobs) add(mediaType string, content []byte) descriptor {
	sum := sha256.Sum256(content)
	d := descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(content))}
	b[d.Digest] = content
	return d
}

// Write packs img as an OCI layout tarball at out, one index entry per name.
func Write(out string, img Image, imageNames []string) error {
	raw, err := Layer(img)
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	b := blobs{}
	diffID := sha256.Sum256(raw)
	cfg := map[string]any{"Env": img.Env, "WorkingDir": "/"}
	if img.Entrypoint != nil {
		cfg["Entrypoint"] = img.Entrypoint
	}
	if img.Cmd != nil {
		cfg["Cmd"] = img.Cmd
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return err
	}
	layer := b.add("application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes())
	cd := b.add("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        cd,
		"layers":        []descriptor{layer},
	})
	if err != nil {
		return err
	}
	man := b.add("application/vnd.oci.image.manifest.v1+json", manifest)
	var entries []descriptor
	for _, n := range imageNames {
		d, err := named(man, n)
		if err != nil {
			return err
		}
		entries = append(entries, d)
	}
	return writeLayout(out, b, entries)
}

// readLayout reads an ocitar tarball: its index entries and blobs.
func readLayout(in string) ([]descriptor, blobs, error) {
	f, err := os.Open(in)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b := blobs{}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", in, err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case h.Name == "index.json":
			if err := json.Unmarshal(content, &index); err != nil {
				return nil, nil, fmt.Errorf("%s: index.json: %w", in, err)
			}
		case strings.HasPrefix(h.Name, "blobs/sha256/"):
			b["sha256:"+strings.TrimPrefix(h.Name, "blobs/sha256/")] = content
		}
	}
	if len(index.Manifests) == 0 {
		return nil, nil, fmt.Errorf("%s: no manifest in index.json", in)
	}
	for _, m := range index.Manifests {
		if _, ok := b[m.Digest]; !ok {
			return nil, nil, fmt.Errorf("%s: manifest %s is missing", in, m.Digest)
		}
	}
	return index.Manifests, b, nil
}

// Repack writes the image of an ocitar tarball (its first manifest) under other names.
func Repack(in, out string, imageNames []string) error {
	ms, b, err := readLayout(in)
	if err != nil {
		return err
	}
	man := ms[0]
	man.Annotations = nil
	var entries []descriptor
	for _, n := range imageNames {
		d, err := named(man, n)
		if err != nil {
			return err
		}
		entries = append(entries, d)
	}
	return writeLayout(out, b, entries)
}

// Merge writes every image of the input tarballs, under their names, into one tarball.
func Merge(ins []string, out string) error {
	all := blobs{}
	var entries []descriptor
	seen := map[string]string{}
	for _, in := range ins {
		ms, b, err := readLayout(in)
		if err != nil {
			return err
		}
		for k, v := range b {
			all[k] = v
		}
		for _, m := range ms {
			n := m.Annotations["io.containerd.image.name"]
			if prev, dup := seen[n]; dup {
				return fmt.Errorf("image %q is in both %s and %s", n, prev, in)
			}
			seen[n] = in
			entries = append(entries, m)
		}
	}
	return writeLayout(out, all, entries)
}

// named is man's index entry for image name n.
func named(man descriptor, n string) (descriptor, error) {
	tag := n[strings.LastIndex(n, ":")+1:]
	if !strings.Contains(n, ":") || strings.Contains(tag, "/") {
		return man, fmt.Errorf("image name %q needs a tag", n)
	}
	man.Platform = &platform{Architecture: "amd64", OS: "linux"}
	man.Annotations = map[string]string{"io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag}
	return man, nil
}

func writeLayout(out string, b blobs, entries []descriptor) error {
	indexJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries,
	})
	if err != nil {
		return err
	}
	// A temp file of its own, renamed at the end: concurrent writers of one name never mix, readers never see half.
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	ow := tar.NewWriter(f)
	file := func(name string, c []byte) error {
		if err := ow.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(c)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := ow.Write(c)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := file("index.json", indexJSON); err != nil {
		return err
	}
	digests := make([]string, 0, len(b))
	for d := range b {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b[d]); err != nil {
			return err
		}
	}
	if err := ow.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
