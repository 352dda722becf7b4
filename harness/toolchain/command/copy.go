package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// copyToRemote implements command:remote:CopyToRemote's create/update: the source asset (FileAsset,
// StringAsset, other assets by their bytes) or a directory FileArchive is written to remotePath through a
// shell on the remote host (`cat` for files, `tar -x` for directories); parent directories are created.
// When remotePath is an existing directory, a file or directory source is copied into it.
func (p *commandProvider) copyToRemote(ctx context.Context, urn resource.URN, in resource.PropertyMap) error {
	conn, err := parseConnection(in)
	if err != nil {
		return err
	}
	remotePath, ok := getString(in, "remotePath")
	if !ok || remotePath == "" {
		return errors.New("missing required property 'remotePath'")
	}
	src, ok := in["source"]
	if !ok {
		return errNoSource
	}
	src = unwrap(src)

	var spec runSpec
	switch {
	case src.IsAsset():
		a := src.AssetValue()
		var data []byte
		mode := os.FileMode(0o644)
		base := ""
		if path, isPath := a.GetPath(); isPath {
			st, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("reading source %s: %w", path, err)
			}
			if st.IsDir() {
				return fmt.Errorf("source %s is a directory: use a FileArchive to copy a directory", path)
			}
			if st.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
			base = filepath.Base(path)
		}
		if data, err = a.Bytes(); err != nil {
			return fmt.Errorf("reading source asset: %w", err)
		}
		script := "p=" + shellQuote(remotePath) + "; "
		if base != "" {
			script += `if [ -d "$p" ]; then p="$p"/` + shellQuote(base) + "; fi; "
		}
		script += fmt.Sprintf(`mkdir -p -- "$(dirname -- "$p")" && cat > "$p" && chmod %o "$p"`, mode)
		spec = runSpec{cmd: script, stdin: bytes.NewReader(data)}
	case src.IsArchive():
		ar := src.ArchiveValue()
		path, isPath := ar.GetPath()
		if !isPath {
			return errors.New("forge-edge's stand-in for pulumi-command copies only directory FileArchives " +
				"(AssetArchive and RemoteArchive are not supported)")
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("reading source %s: %w", path, err)
		}
		if !st.IsDir() {
			return fmt.Errorf("forge-edge's stand-in for pulumi-command copies only directory FileArchives; %s is a file", path)
		}
		var buf bytes.Buffer
		if err := tarDir(path, &buf); err != nil {
			return fmt.Errorf("packing %s: %w", path, err)
		}
		script := "p=" + shellQuote(remotePath) + "; " +
			`if [ -d "$p" ]; then p="$p"/` + shellQuote(filepath.Base(filepath.Clean(path))) + "; fi; " +
			`mkdir -p -- "$p" && tar -x -f - -C "$p"`
		spec = runSpec{cmd: script, stdin: &buf}
	case src.ContainsUnknowns():
		return errors.New("source is unknown")
	default:
		return fmt.Errorf("source must be an asset or an archive, got %v", src.TypeString())
	}
	spec.logging = "stdoutAndStderr"
	spec.prevEnv = nil

	client, err := dial(ctx, conn, func(msg string) { p.log(ctx, diag.Info, urn, msg) })
	if err != nil {
		return err
	}
	defer client.Close()
	if _, _, err := runRemote(ctx, client, spec, func(sev diag.Severity, msg string) { p.log(ctx, sev, urn, msg) }); err != nil {
		return fmt.Errorf("copying to %s: %w", remotePath, err)
	}
	return nil
}

// tarDir writes the directory tree under root (relative names, regular files, dirs and symlinks).
func tarDir(root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
