package main

// check-containerd: load a config.toml the way containerd 2 (the version K3s v1.36 bundles) does when it
// starts, with its own loader and its own CRI plugins' config migrations, then decode and validate the
// CRI runtime plugin's config with the plugin's own types and init function.
//
// Steps, as containerd's cmd/containerd/command/main.go and server.New do them:
//  1. srvconfig.LoadConfigWithPlugins(ctx, path, registry.Graph(...), &Config{Version: 3}): parses the TOML
//     (strictly, warning on unknown keys), follows imports, and migrates a version 1/2 config to version 3,
//     running every registered plugin's ConfigMigration (the CRI plugins move
//     plugins."io.containerd.grpc.v1.cri".containerd.runtimes.* to plugins."io.containerd.cri.v1.runtime").
//  2. config.Decode(ctx, "io.containerd.cri.v1.runtime", registration.Config): the plugin's section, decoded
//     into the plugin's own (internal) RuntimeConfig type, starting from the plugin's defaults.
//  3. registration.InitFn(ic): the plugin's init, which runs criconfig.ValidateRuntimeConfig.
// Then the runtime named on the command line must exist, and its options.BinaryName is printed.

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/containerd/v2/plugins"
	_ "github.com/containerd/containerd/v2/plugins/cri"         // io.containerd.grpc.v1.cri and its config migration
	_ "github.com/containerd/containerd/v2/plugins/cri/images"  // io.containerd.cri.v1.images and its config migration
	_ "github.com/containerd/containerd/v2/plugins/cri/runtime" // io.containerd.cri.v1.runtime and its config migration
	_ "github.com/containerd/containerd/v2/plugins/services/warning"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/sirupsen/logrus"
)

// RuntimeURI is the CRI runtime plugin of containerd 2.
const RuntimeURI = "io.containerd.cri.v1.runtime"

// ContainerdCheck is what check-containerd found.
type ContainerdCheck struct {
	FileVersion    int                       // version = N in the file
	Runtimes       map[string]CheckedRuntime // every runtime the CRI plugin will know
	DefaultRuntime string
	Warnings       []string // containerd's own warnings while loading (unknown keys, migration, deprecations)
}

// CheckedRuntime is one containerd.runtimes entry as the CRI runtime plugin decoded it.
type CheckedRuntime struct {
	Type       string
	BinaryName string
	Options    map[string]any
}

type warnHook struct{ lines []string }

func (h *warnHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h *warnHook) Fire(e *logrus.Entry) error {
	var kv []string
	for k, v := range e.Data {
		kv = append(kv, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(kv)
	line := e.Message
	if len(kv) > 0 {
		line += " (" + strings.Join(kv, " ") + ")"
	}
	h.lines = append(h.lines, line)
	return nil
}

// CheckContainerd loads path with containerd's loader and returns the CRI runtimes it configures.
func CheckContainerd(ctx context.Context, path string) (ContainerdCheck, error) {
	var res ContainerdCheck
	hook := &warnHook{}
	logger := logrus.New()
	logger.SetOutput(discard{})
	logger.SetLevel(logrus.WarnLevel)
	logger.AddHook(hook)
	ctx = log.WithLogger(ctx, logrus.NewEntry(logger))
	defer func() { res.Warnings = hook.lines }()

	// The file's own version, before migration (LoadConfigWithPlugins reports only the merged result).
	var raw srvconfig.Config
	if err := srvconfig.LoadConfig(ctx, path, &raw); err != nil {
		return res, fmt.Errorf("containerd cannot load %s: %w", path, err)
	}
	res.FileVersion = raw.Version
	hook.lines = nil

	g := registry.Graph(func(*plugin.Registration) bool { return false })
	pluginsFn := func() iter.Seq[plugin.Registration] { return slices.Values(g) }
	cfg := &srvconfig.Config{Version: version.ConfigVersion}
	if err := srvconfig.LoadConfigWithPlugins(ctx, path, pluginsFn, cfg); err != nil {
		return res, fmt.Errorf("containerd cannot load %s: %w", path, err)
	}

	var reg *plugin.Registration
	var warnReg *plugin.Registration
	for i := range g {
		switch g[i].URI() {
		case RuntimeURI:
			reg = &g[i]
		case string(plugins.WarningPlugin) + "." + plugins.DeprecationsPlugin:
			warnReg = &g[i]
		}
	}
	if reg == nil || warnReg == nil {
		return res, fmt.Errorf("containerd's %s plugin is not registered in this build", RuntimeURI)
	}
	// Decode into a deep copy of the plugin's defaults: Decode writes into what it is given, and the
	// registration's Config is shared by every call in this process.
	decoded, err := cfg.Decode(ctx, RuntimeURI, deepCopy(reflect.ValueOf(reg.Config)).Interface())
	if err != nil {
		return res, fmt.Errorf("containerd cannot decode plugins.%q of %s: %w", RuntimeURI, path, err)
	}

	// Run the plugin's init (its config validation) the way the server would, in a scratch root.
	tmp, err := os.MkdirTemp("", "checker-containerd-")
	if err != nil {
		return res, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	set := plugin.NewPluginSet()
	props := map[string]string{
		plugins.PropertyRootDir:  tmp + "/root/" + RuntimeURI,
		plugins.PropertyStateDir: tmp + "/state/" + RuntimeURI,
	}
	wic := plugin.NewContext(ctx, set, props)
	if err := set.Add(warnReg.Init(wic)); err != nil {
		return res, err
	}
	ic := plugin.NewContext(ctx, set, props)
	ic.Config = decoded
	if _, err := reg.InitFn(ic); err != nil {
		return res, fmt.Errorf("containerd's %s plugin refuses the config of %s: %w", RuntimeURI, path, err)
	}

	// The plugin's config type is internal to containerd; read it through its JSON form.
	b, err := json.Marshal(decoded)
	if err != nil {
		return res, err
	}
	var view struct {
		Containerd struct {
			DefaultRuntimeName string `json:"defaultRuntimeName"`
			Runtimes           map[string]struct {
				Type    string         `json:"runtimeType"`
				Options map[string]any `json:"options"`
			} `json:"runtimes"`
		} `json:"containerd"`
	}
	if err := json.Unmarshal(b, &view); err != nil {
		return res, err
	}
	res.DefaultRuntime = view.Containerd.DefaultRuntimeName
	res.Runtimes = map[string]CheckedRuntime{}
	for name, r := range view.Containerd.Runtimes {
		bn, _ := r.Options["BinaryName"].(string)
		res.Runtimes[name] = CheckedRuntime{Type: r.Type, BinaryName: bn, Options: r.Options}
	}
	return res, nil
}

// deepCopy copies v, following pointers, maps, slices and the exported fields of structs.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		c := reflect.New(v.Type().Elem())
		c.Elem().Set(deepCopy(v.Elem()))
		return c
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		c := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			c.SetMapIndex(it.Key(), deepCopy(it.Value()))
		}
		return c
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			c.Index(i).Set(deepCopy(v.Index(i)))
		}
		return c
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		c := reflect.New(v.Type()).Elem()
		c.Set(deepCopy(v.Elem()))
		return c
	case reflect.Struct:
		c := reflect.New(v.Type()).Elem()
		c.Set(v)
		for i := 0; i < v.NumField(); i++ {
			if c.Field(i).CanSet() {
				c.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return c
	default:
		return v
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
