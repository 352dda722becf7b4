// Command forge-edge-checker reads the files forge-edge writes for other programs with those programs'
// own code (see harness/README.md, "checker"):
//
//	render-containerd --k3s-version V --tmpl-dir DIR --out FILE [--nvidia-runtime PATH] [--no-detect]
//	                  [--systemd-cgroup=false]
//	    renders containerd's config.toml as the K3s agent of release V does (template choice, base template,
//	    data fields, runtime detection), failing as K3s does on a template error
//	check-containerd [--runtime nvidia] FILE
//	    loads FILE with containerd 2's config loader and CRI plugins (migrating a version 2 config) and
//	    asserts that the runtime exists; prints its BinaryName
//	check-timeslicing [--mps-root DIR] FILE
//	    parses a device plugin config with NVIDIA k8s-device-plugin v0.20.0's api/config/v1
//	version
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"forge-edge/harness/checker/internal/k3s/templates"
)

// Versions are stamped by harness/build-toolchain.sh (-X main.containerdVersion=... etc.).
var (
	containerdVersion   = "unknown"
	devicePluginVersion = "unknown"
	k3sSource           = "unknown"
)

func usage(w io.Writer) {
	_, _ = fmt.Fprint(w, `usage: forge-edge-checker COMMAND [flags] [FILE]
  render-containerd --k3s-version V --tmpl-dir DIR --out FILE [--nvidia-runtime PATH] [--no-detect] [--systemd-cgroup=false]
  check-containerd [--runtime NAME] FILE
  check-timeslicing [--mps-root DIR] FILE
  version
`)
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "render-containerd":
		err = renderCmd(args)
	case "check-containerd":
		err = checkContainerdCmd(args)
	case "check-timeslicing":
		err = checkTimeSlicingCmd(args)
	case "version", "--version":
		fmt.Printf("forge-edge-checker: containerd %s, k8s-device-plugin %s, K3s templates %s\n",
			containerdVersion, devicePluginVersion, k3sSource)
	case "-h", "--help", "help":
		usage(os.Stdout)
	default:
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func renderCmd(args []string) error {
	fs := flag.NewFlagSet("render-containerd", flag.ContinueOnError)
	version := fs.String("k3s-version", "", "installed K3s release, e.g. v1.36.4+k3s1")
	dir := fs.String("tmpl-dir", "/var/lib/rancher/k3s/agent/etc/containerd", "where K3s looks for config-v3.toml.tmpl / config.toml.tmpl")
	out := fs.String("out", "", "where to write config.toml (K3s: <tmpl-dir>/config.toml)")
	nvidia := fs.String("nvidia-runtime", "", "add the nvidia runtime with this BinaryName (as if K3s had found it there)")
	noDetect := fs.Bool("no-detect", false, "do not search PATH for runtimes (K3s always does)")
	systemd := fs.Bool("systemd-cgroup", true, "SystemdCgroup (K3s: true when started by systemd with the cpuset controller)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || *out == "" || fs.NArg() != 0 {
		return fmt.Errorf("need --k3s-version and --out (and no other arguments)")
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "level=info msg=%q\n", fmt.Sprintf(format, a...))
	}
	runtimes := map[string]templates.ContainerdRuntimeConfig{}
	if !*noDetect {
		runtimes = templates.FindContainerRuntimes(os.Getenv("PATH"), logf)
	}
	if *nvidia != "" {
		runtimes["nvidia"] = templates.ContainerdRuntimeConfig{RuntimeType: "io.containerd.runc.v2", BinaryName: *nvidia}
	}
	// A template that does not parse panics here, exactly as in K3s (template.Must): exit status 2 and
	// "panic: template: compiled_template:N: ..." on stderr.
	res, err := templates.Render(templates.RenderOptions{
		K3sVersion: *version, TemplateDir: *dir, ExtraRuntimes: runtimes, SystemdCgroup: *systemd, Logf: logf,
	})
	if err != nil {
		// K3s: SetupContainerdConfig's error ends the agent's start: `level=fatal msg="..."`.
		return fmt.Errorf("level=fatal msg=%q", err.Error())
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o700); err != nil {
		return err
	}
	tmp := *out + ".tmp"
	if err := os.WriteFile(tmp, []byte(res.Config), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	names := make([]string, 0, len(runtimes))
	for n := range runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	tmpl := res.TemplatePath
	if tmpl == "" {
		tmpl = "(base template)"
	}
	fmt.Printf("rendered %s: config version %d, containerd %s, template %s, extra runtimes [%s]\n",
		*out, res.ConfigVersion, map[bool]string{true: "2", false: "1.7"}[res.Containerd2], tmpl, strings.Join(names, " "))
	return nil
}

func checkContainerdCmd(args []string) error {
	fs := flag.NewFlagSet("check-containerd", flag.ContinueOnError)
	runtime := fs.String("runtime", "nvidia", "runtime that must be configured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("need exactly one FILE")
	}
	res, err := CheckContainerd(context.Background(), fs.Arg(0))
	for _, w := range res.Warnings {
		fmt.Fprintf(os.Stderr, "containerd warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	names := make([]string, 0, len(res.Runtimes))
	for n := range res.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	r, ok := res.Runtimes[*runtime]
	if !ok {
		return fmt.Errorf("%s (config version %d): containerd configures no %q runtime (runtimes: %s)",
			fs.Arg(0), res.FileVersion, *runtime, strings.Join(names, ", "))
	}
	if r.BinaryName == "" {
		return fmt.Errorf("%s: runtime %q has no options.BinaryName (type %s)", fs.Arg(0), *runtime, r.Type)
	}
	fmt.Printf("config version %d (migrated to %d): runtime %s type %s BinaryName %s (runtimes: %s; default %s)\n",
		res.FileVersion, 3, *runtime, r.Type, r.BinaryName, strings.Join(names, ", "), res.DefaultRuntime)
	return nil
}

func checkTimeSlicingCmd(args []string) error {
	fs := flag.NewFlagSet("check-timeslicing", flag.ContinueOnError)
	mpsRoot := fs.String("mps-root", "", "the plugin's --mps-root (needed for MPS configs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("need exactly one FILE")
	}
	var extra []string
	if *mpsRoot != "" {
		extra = append(extra, "--mps-root", *mpsRoot)
	}
	res, err := CheckTimeSlicing(fs.Arg(0), extra...)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	var parts []string
	for _, r := range res.Resources {
		s := fmt.Sprintf("%s replicas=%d", r.Name, r.Replicas)
		if r.Rename != "" {
			s += " rename=" + r.Rename
		}
		parts = append(parts, s)
	}
	fmt.Printf("sharing %s: %s", res.Strategy, strings.Join(parts, "; "))
	if res.Flags != "" {
		fmt.Printf(" (%s)", res.Flags)
	}
	fmt.Println()
	return nil
}
